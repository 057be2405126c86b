//! The `levee` binary: process wiring only (see `cli.rs`).

fn main() {
    std::process::exit(levee::cli::main());
}
