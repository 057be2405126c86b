//! The `levee` binary: process wiring only (see `cli.rs`), and the allocator.

/// mimalloc rather than glibc malloc: Pingora allocates ~75 times per request, and glibc's
/// arenas fragment under that (`malloc_consolidate` in every profile). About 8% less CPU per
/// proxied request in the load bench (benches/RESULTS.md, session 7); the bare Pingora
/// baseline there uses it too, so the comparison stays like for like.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(levee::cli::main());
}
