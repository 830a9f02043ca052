//! The `blindpass` binary: a thin face over the library (see `blindpass::cli`).

fn main() -> std::process::ExitCode {
    blindpass::cli::main()
}
