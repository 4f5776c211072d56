//! The `qcyn` binary: parse arguments, run the command, print the whole error chain with hints.
use std::process::ExitCode;

use clap::Parser;

mod args;
mod commands;
mod outcome;
mod reporter;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            for cause in err.chain() {
                if let Some(hint) = cause.downcast_ref::<qcyn::Error>().and_then(|e| e.hint()) {
                    eprintln!("hint: {hint}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
