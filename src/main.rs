//! The `blindpass` binary: a thin face over the library (see `blindpass::cli`).

use std::alloc::System;

use secmem_alloc::zeroizing_alloc::ZeroizeAlloc;

/// Every heap block is wiped when it is freed, so that what a request, a
/// serializer or a decrypted record left behind does not outlive its use
/// (see "Secrets in memory" in docs/architecture.md). Set here, in the
/// binary, so that the library stays neutral about allocators.
#[global_allocator]
static ALLOCATOR: ZeroizeAlloc<System> = ZeroizeAlloc::new(System);

fn main() -> std::process::ExitCode {
    blindpass::cli::main()
}
