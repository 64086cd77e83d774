//! `ueb`: the uncertainty-estimation bench command line.

mod data_cmd;
mod eval;
mod input;

use clap::{Parser, Subcommand};

/// Uncertainty-estimation bench for language-model classifiers.
#[derive(Debug, Parser)]
#[command(name = "ueb", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Metric report (calibration and error detection) for predictions in a file.
    Eval(eval::EvalArgs),
    /// Datasets: list the registry, or print a dataset's split statistics.
    Data(data_cmd::DataArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Eval(args) => eval::run(&args),
        Command::Data(args) => data_cmd::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
