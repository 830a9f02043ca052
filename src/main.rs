//! The `blindpass` binary: a thin face over the library (see `blindpass::cli`),
//! plus the load generator behind `blindpass bench`, which is part of the
//! binary and not of the library: the product library holds only what the
//! service and its clients run.

use std::alloc::System;

use secmem_alloc::zeroizing_alloc::ZeroizeAlloc;

/// Every heap block is wiped when it is freed, so that what a request, a
/// serializer or a decrypted record left behind does not outlive its use
/// (see "Secrets in memory" in docs/architecture.md). Set here, in the
/// binary, so that the library stays neutral about allocators.
#[global_allocator]
static ALLOCATOR: ZeroizeAlloc<System> = ZeroizeAlloc::new(System);

/// The load generator (`src/bench/`).
mod bench;

/// The binary's own command line: `blindpass bench` (`src/cli/bench.rs`).
mod cli {
    pub mod bench;
}

fn main() -> std::process::ExitCode {
    blindpass::cli::main_with(cli::bench::run_command)
}
