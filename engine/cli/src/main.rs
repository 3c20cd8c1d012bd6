//! The `torchfit` command line: its commands are [`torchfit::commands`].

use clap::Parser;
use std::process::ExitCode;
use torchfit::commands::signals::signal_exit_code;
use torchfit::commands::{execute, Command, Ended};

/// torchfit trains neural networks on libtorch from a TOML config, with skorch's semantics
/// (validation split, callbacks, checkpoints, exact resume), and predicts with the trained model.
/// Its components come from plugins: `torchfit plugins` lists them.
#[derive(Parser)]
#[command(name = "torchfit", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Log lines on standard error; a worker of a distributed job other than rank 0 names its rank.
struct StderrLogger {
    level: log::LevelFilter,
    rank: Option<String>,
}

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let level = r.level().as_str().to_lowercase();
            match &self.rank {
                Some(rank) => eprintln!("[{level} rank {rank}] {}", r.args()),
                None => eprintln!("[{level}] {}", r.args()),
            }
        }
    }
    fn flush(&self) {}
}

fn main() -> ExitCode {
    // Workers of a distributed job other than rank 0 log warnings and errors only, by default.
    let rank = std::env::var("RANK").ok().filter(|r| r != "0" && std::env::var_os("WORLD_SIZE").is_some());
    let quiet = if rank.is_some() { log::LevelFilter::Warn } else { log::LevelFilter::Info };
    let level = std::env::var("TORCHFIT_LOG").ok().and_then(|l| l.parse().ok()).unwrap_or(quiet);
    let _ = log::set_boxed_logger(Box::new(StderrLogger { level, rank })).map(|()| log::set_max_level(level));
    // Panics are caught where they can happen (components linked in-process, reader threads,
    // and here) and reported as one error line; their whole text goes to the debug log.
    std::panic::set_hook(Box::new(|info| log::debug!("{info}")));
    let command = Cli::parse().command;
    let executed = std::panic::catch_unwind(|| execute(command)).unwrap_or_else(|payload| {
        eprintln!("error: internal error (please report it): {}", torchfit_engine::panic_summary(&*payload));
        std::process::exit(101)
    });
    match executed {
        Ok(Ended::Completed) => ExitCode::SUCCESS,
        Ok(Ended::Interrupted(signal)) => ExitCode::from(signal_exit_code(signal)),
        Ok(Ended::WorkersFailed(code)) => ExitCode::from(code),
        Err(e) => {
            log::debug!("{}", e.detail());
            eprintln!("error: {e}");
            ExitCode::from(e.class().exit_code())
        }
    }
}
