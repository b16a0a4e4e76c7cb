//! The `neutrino` binary: one command per component.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
