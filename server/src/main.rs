//! The `sesame` binary: see `sesame --help`.

fn main() -> std::process::ExitCode {
    sesame_server::cli::main()
}
