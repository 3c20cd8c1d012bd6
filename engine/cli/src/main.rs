//! The `torchfit` command line.

use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use torchfit::{launch, run, search};
use torchfit_engine::net::{Interruption, StopFlag};
use torchfit_engine::{plugins, Error};

/// torchfit trains neural networks on libtorch from a TOML config, with skorch's semantics
/// (validation split, callbacks, checkpoints, exact resume), and predicts with the trained model.
/// Its components come from plugins: `torchfit plugins` lists them.
#[derive(Parser)]
#[command(name = "torchfit", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the model a config describes.
    Train {
        /// The TOML config.
        config: PathBuf,
        /// Override a config key, with skorch's routing: `optimizer__lr=0.05` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Write the run directory here (config.toml, history.json, summary.json, model, and a
        /// train_end_ checkpoint). An existing non-empty directory is refused without --resume.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in --out DIR from its train_end_ checkpoint, up to max_epochs in all.
        #[arg(long, requires = "out")]
        resume: bool,
        /// Train data-parallel in N worker processes on this machine (as `torchrun --standalone
        /// --nproc-per-node N`); `batch_size` is per process. Under torchrun, leave it out.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        nproc: Option<u16>,
    },
    /// Predict with the model of a run directory.
    Predict {
        /// A run directory written by `torchfit train --out`.
        run: PathBuf,
        /// Predict on this file (read by the run's dataset reader) instead of the run's data set.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Override a config key (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Write predictions here instead of standard output: NumPy's format for a `.npy` file,
        /// CSV otherwise.
        #[arg(long)]
        out: Option<PathBuf>,
        /// A classifier's class probabilities beside its label (skorch's `predict_proba`); in a
        /// `.npy` file, the probabilities alone.
        #[arg(long, conflicts_with = "logits")]
        proba: bool,
        /// The model's raw outputs (logits), in their shape in a `.npy` file.
        #[arg(long)]
        logits: bool,
    },
    /// Search hyper-parameters: cross-validate every candidate (scikit-learn's GridSearchCV,
    /// RandomizedSearchCV, HalvingGridSearchCV), rank them, refit the best on all the samples.
    Search {
        /// The TOML config.
        config: PathBuf,
        /// Values to try, KEY=V1,V2,... with skorch's routing: `module__dropout=0.2,0.5,0.8`
        /// (repeatable; every combination is a candidate). With --random, also `uniform(a,b)`,
        /// `loguniform(a,b)`, `randint(a,b)`.
        #[arg(long = "grid", value_name = "KEY=VALUES", required = true)]
        grid: Vec<String>,
        /// Override a config key for every candidate (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Folds of the cross-validation (stratified for classification).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..))]
        cv: u16,
        /// Draw N candidates from the --grid values and distributions instead of taking them all.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        random: Option<u32>,
        /// Successive halving with epochs as the resource: few epochs for all candidates, the
        /// best 1/factor go on with factor times more, up to max_epochs.
        #[arg(long)]
        halving: bool,
        /// Halving's factor.
        #[arg(long, default_value_t = 3.0, requires = "halving")]
        factor: f64,
        /// Epochs of halving's first iteration (default: as many as reach max_epochs in the last).
        #[arg(long, value_name = "EPOCHS", requires = "halving")]
        min_epochs: Option<i64>,
        /// Score with this scorer component (`f1_macro`, `log_loss`, ...; default: accuracy or r2).
        #[arg(long)]
        scoring: Option<String>,
        /// Fits running at once, each a worker process.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        jobs: u16,
        /// Intra-op threads of each fit (default: cores / jobs). Scores are bit-identical for
        /// the same threads, whatever --jobs.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        /// The search folder: search.json, each fit, and the refitted best run (refit/).
        #[arg(long)]
        out: PathBuf,
        /// Continue the search in --out DIR: finished fits are kept.
        #[arg(long)]
        resume: bool,
    },
    /// One fit of a search (run by `torchfit search` in its workers).
    #[command(hide = true)]
    SearchFold {
        config: PathBuf,
        #[arg(long = "set")]
        sets: Vec<String>,
        #[arg(long = "candidate")]
        candidate: Vec<String>,
        #[arg(long)]
        cv: usize,
        #[arg(long)]
        fold: usize,
        #[arg(long)]
        scoring: Option<String>,
        #[arg(long)]
        result: PathBuf,
    },
    /// Show the model a config builds for its data set: each parameter's name, shape and count,
    /// and the total (as torchinfo).
    Summary {
        /// The TOML config.
        config: PathBuf,
        /// Override a config key (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// List every component torchfit can use (builtin, and plugins on the search path).
    Plugins {
        /// Also search the plugin folders and files of this config.
        #[arg(long)]
        config: Option<PathBuf>,
    },
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

/// Exit code of a run stopped by signal `signal`: the shell's 128 + its number (130 for
/// SIGINT, 143 for SIGTERM).
fn signal_exit_code(signal: i32) -> u8 {
    (128 + signal) as u8
}

/// The first SIGINT or SIGTERM raises `stop` (the run ends after its batch, see
/// [`run::train_until`]) and is remembered in the returned cell; a second one ends the process
/// at once, with the signal's exit code.
fn stop_on_signals(stop: &StopFlag) -> std::io::Result<Arc<AtomicUsize>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let received = Arc::new(AtomicUsize::new(0));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, signal_exit_code(signal).into(), stop.shared())?;
        signal_hook::flag::register_usize(signal, Arc::clone(&received), signal as usize)?;
        signal_hook::flag::register(signal, stop.shared())?;
    }
    Ok(received)
}

/// The signal `stop_on_signals` recorded, and its name. A worker of a distributed job stops with
/// the others when a signal reached any of them: SIGINT then, when none reached this one.
fn received_signal(received: &AtomicUsize) -> (i32, &'static str) {
    match received.load(Ordering::SeqCst) as i32 {
        signal_hook::consts::SIGTERM => (signal_hook::consts::SIGTERM, "SIGTERM"),
        _ => (signal_hook::consts::SIGINT, "SIGINT"),
    }
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

/// How a command ended without an error.
enum Ended {
    Completed,
    /// Stopped by this signal (the run directory written).
    Interrupted(i32),
    /// The workers of `--nproc` ended; the first that failed exited with this code.
    WorkersFailed(u8),
}

/// `train --nproc N`: the workers run this command without `--nproc` (see [`launch`]);
/// `received` is the signal this process got, passed on to them.
fn launch_workers(nproc: usize, received: Arc<AtomicUsize>) -> Result<Ended, Error> {
    if std::env::var_os("WORLD_SIZE").is_some() {
        let message = "--nproc starts workers itself; under torchrun (WORLD_SIZE is set) leave it out".into();
        return Err(Error::Config { origin: "--nproc".into(), key: "nproc".into(), message });
    }
    let args = launch::worker_args(std::env::args_os().skip(1));
    match launch::run(nproc, args, received)? {
        launch::JobEnd::Completed => Ok(Ended::Completed),
        launch::JobEnd::Interrupted(signal) => Ok(Ended::Interrupted(signal)),
        launch::JobEnd::Failed { code, .. } => Ok(Ended::WorkersFailed(code.clamp(1, 255) as u8)),
    }
}

fn execute(command: Command) -> Result<Ended, Error> {
    match command {
        Command::Train { config, sets, out, resume, nproc } => {
            let params = run::load_params(&config, &sets)?;
            let stop = StopFlag::new();
            let received = stop_on_signals(&stop).map_err(|e| Error::io(Path::new("<signal handlers>"), e))?;
            if let Some(n) = nproc {
                return launch_workers(n.into(), received);
            }
            let outcome = run::train_until(params, out.as_deref(), resume, &stop)?;
            let (signal, name) = received_signal(&received);
            if !outcome.reports {
                return Ok(if outcome.interrupted.is_some() { Ended::Interrupted(signal) } else { Ended::Completed });
            }
            if let Some(interrupted) = outcome.interrupted {
                eprintln!("{}", interrupted_line(name, interrupted, &config, out.as_deref()));
                return Ok(Ended::Interrupted(signal));
            }
            if let Some(dir) = &out {
                log::info!("run written to {}", dir.display());
            }
            if let Some(test) = outcome.test {
                let mut text = format!("test_loss={:.6}\n", test.loss);
                if let Some(acc) = test.accuracy {
                    text += &format!("test_accuracy={acc:.6}\n");
                }
                // A closed stdout (`| head`) is not an error of the run, which is complete.
                let _ = std::io::stdout().write_all(text.as_bytes());
            }
            Ok(Ended::Completed)
        }
        Command::Search {
            config,
            grid,
            sets,
            cv,
            random,
            halving,
            factor,
            min_epochs,
            scoring,
            jobs,
            threads,
            out,
            resume,
        } => {
            let halving = halving.then_some(search::HalvingRequest { factor, min_epochs });
            let request = search::Request {
                config: config.clone(),
                sets,
                space: grid,
                cv: cv.into(),
                random: random.map(|n| n as usize),
                halving,
                scoring,
                jobs: jobs.into(),
                threads: threads.map(usize::from),
                out: out.clone(),
                resume,
            };
            let stop = StopFlag::new();
            let received = stop_on_signals(&stop).map_err(|e| Error::io(Path::new("<signal handlers>"), e))?;
            match search::search(&request, &stop)? {
                search::Ended::Completed(_, table) => {
                    log::info!(
                        "search written to {}; the best refitted in {}",
                        out.display(),
                        out.join("refit").display()
                    );
                    // A closed stdout (`| head`) is not an error of the search, which is complete.
                    let _ = std::io::stdout().write_all(table.as_bytes());
                    Ok(Ended::Completed)
                }
                search::Ended::Interrupted(kept) => {
                    let (signal, name) = received_signal(&received);
                    eprintln!(
                        "interrupted by {name}; {} keeps {kept} finished fits: continue with the same command and --resume",
                        out.display()
                    );
                    Ok(Ended::Interrupted(signal))
                }
            }
        }
        Command::SearchFold { config, sets, candidate, cv, fold, scoring, result } => {
            let mut params = run::load_params(&config, &sets)?;
            for c in &candidate {
                params.set_assignment(c)?;
            }
            let cv = torchfit::net::Cv { n_splits: cv, scoring, ..Default::default() };
            search::fit_fold(params, candidate, &cv, fold, &result)?;
            Ok(Ended::Completed)
        }
        Command::Predict { run, data, sets, out, proba, logits } => {
            let what = match (proba, logits) {
                (true, _) => run::Predicted::Proba,
                (_, true) => run::Predicted::Logits,
                _ => run::Predicted::Labels,
            };
            let predictions = run::predict(&run, data.as_deref(), &sets, what)?;
            match out {
                Some(path) => predictions.write(&path)?,
                // A reader that closed its end (`| head`) took what it wanted.
                None => match std::io::stdout().write_all(predictions.csv().as_bytes()) {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                        return Err(Error::io(Path::new("<stdout>"), e))
                    }
                    _ => {}
                },
            }
            Ok(Ended::Completed)
        }
        Command::Summary { config, sets } => {
            let text = run::model_summary(run::load_params(&config, &sets)?)?;
            let _ = std::io::stdout().write_all(text.as_bytes());
            Ok(Ended::Completed)
        }
        Command::Plugins { config } => {
            let registry = match config {
                Some(c) => plugins::registry_for(&run::load_params(&c, &[])?)?,
                None => plugins::registry(&[], &[])?,
            };
            let text = run::component_table(registry.components());
            let _ = std::io::stdout().write_all(text.as_bytes());
            Ok(Ended::Completed)
        }
    }
}

/// The one line an interrupted `train` ends with: where it stopped and how to go on.
fn interrupted_line(signal: &str, at: Interruption, config: &Path, out: Option<&Path>) -> String {
    match out {
        Some(dir) => format!(
            "interrupted by {signal} {at}; {} keeps the run after epoch {}: continue with `torchfit train {} --out {} --resume`",
            dir.display(),
            at.epochs,
            config.display(),
            dir.display()
        ),
        None => format!("interrupted by {signal} {at} (nothing kept: train with --out DIR to resume later)"),
    }
}
