//! Command-line faces of blindpass.
