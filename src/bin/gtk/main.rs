//! `gtk`: the gatekit command line. It parses arguments, calls the library and reports; all
//! the work happens in the `gatekit` crate.

mod adapt;
mod cli;
mod data;
mod eval;
mod export;
mod launch;
mod progress;
mod report;
mod results;
mod runs;
mod serve;
mod stop;
mod sweep;
mod sweep_cmd;
mod tasks;
mod train;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Train(args) => train::run(args),
        cli::Command::Eval(args) => eval::run(args),
        cli::Command::Tasks(args) => tasks::run(args),
        cli::Command::Data(args) => data::run(args),
        cli::Command::Export(args) => export::run(args),
        cli::Command::Report(args) => report::run(args),
        cli::Command::Adapt(args) => adapt::run(args),
        cli::Command::Serve(args) => serve::run(args),
        cli::Command::Sweep(args) => sweep_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            if let Some(stopped) = err.downcast_ref::<stop::Stopped>() {
                eprintln!("{stopped}");
                return ExitCode::from(gatekit::sweep::slurm::STOPPED_EXIT as u8);
            }
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
