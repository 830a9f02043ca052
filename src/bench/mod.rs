//! Load generation and measurement (the `blindpass bench` command).
