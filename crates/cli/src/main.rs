//! `ueb`: the uncertainty-estimation bench command line.

mod data_cmd;
mod device;
mod eval;
mod extract;
#[cfg(test)]
mod fuzz;
mod input;
mod output;
mod report_cmd;
mod run;
mod score;
mod stdio;

use clap::{Parser, Subcommand};

// Metrics allocate and free large scratch buffers (sort keys, histograms) per score and class;
// glibc hands such blocks back to the kernel and pays page faults again on the next one
// (decision B13). mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Uncertainty-estimation bench for language-model classifiers.
#[derive(Debug, Parser)]
#[command(
    name = "ueb",
    version,
    about = "Uncertainty-estimation bench for language-model classifiers: experiments (fine-tuning, \
             feature caches, uncertainty heads, metrics), metric reports of predictions, tables and figures",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Metric report (calibration and error detection) for predictions in a file.
    Eval(eval::EvalArgs),
    /// Fit an uncertainty head on a feature cache and write its scores.
    Score(score::ScoreArgs),
    /// Datasets: list the registry, or print a dataset's split statistics.
    Data(data_cmd::DataArgs),
    /// Features (and logits) of an encoder for the texts of a file.
    Extract(extract::ExtractArgs),
    /// Run an experiment: caches, head scores and metrics (resumable, shardable).
    Run(run::RunArgs),
    /// Tables, figures and index.html of a results directory (merges every shard present).
    Report(report_cmd::ReportArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(after_help = "\
Install, e.g.:
  bash: ueb completions bash > ~/.local/share/bash-completion/completions/ueb
  zsh:  ueb completions zsh > ~/.zfunc/_ueb   (with `fpath+=~/.zfunc` before compinit)
  fish: ueb completions fish > ~/.config/fish/completions/ueb.fish")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Writes the completion script of `shell` for the whole command tree to stdout.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ueb", &mut script);
    stdio::out!("{}", String::from_utf8_lossy(&script));
    Ok(())
}

fn main() -> std::process::ExitCode {
    ueb_data::untrusted::install_quiet_hook();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Eval(args) => eval::run(&args),
        Command::Score(args) => score::run(&args),
        Command::Data(args) => data_cmd::run(&args),
        Command::Extract(args) => extract::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Report(args) => report_cmd::run(&args),
        Command::Completions { shell } => completions(shell),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A reader that went away early (`| head`) asked for no more: end quietly, with the
        // status a shell reports for SIGPIPE.
        Err(err)
            if err
                .downcast_ref::<stdio::StdoutFailed>()
                .is_some_and(stdio::StdoutFailed::is_closed_pipe) =>
        {
            std::process::ExitCode::from(141)
        }
        Err(err) => {
            stdio::write_err(&format!("error: {}\n", bounded(&chain_message(&err))));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: `, each cause once: many error types already put their
/// source's text into their own message, and printing the chain would repeat it.
fn chain_message(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// The longest error message printed whole; longer ones (a huge field echoed back, thousands
/// of column names) keep their start and end.
const MAX_MESSAGE: usize = 4000;

/// `message`, shortened in the middle to about [`MAX_MESSAGE`] characters.
fn bounded(message: &str) -> String {
    let chars = message.chars().count();
    if chars <= MAX_MESSAGE {
        return message.to_string();
    }
    let keep = MAX_MESSAGE / 2;
    let head: String = message.chars().take(keep).collect();
    let tail: String = message.chars().skip(chars - keep).collect();
    format!("{head} … ({} characters left out) … {tail}", chars - 2 * keep)
}
