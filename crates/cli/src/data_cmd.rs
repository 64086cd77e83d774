//! `ueb data list` and `ueb data stats`.

use clap::{Args, Subcommand};

/// Arguments of `ueb data`.
#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// List the datasets of the registry.
    List,
}

/// Runs `ueb data`.
pub fn run(args: &DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::List => anyhow::bail!("the dataset registry is not built yet"),
    }
}
