//! The `wharf` command: `serve` runs the registry, `migrate` applies database migrations,
//! `check-config` checks a configuration, `gc` collects garbage once, `events` lists
//! pending notification events and dead letters and replays them, `import` adopts a
//! distribution registry's storage in place, `quota recompute` checks (and fixes) the
//! storage quotas' counters.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use wharf::config::Config;

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "A container registry (OCI Distribution Spec v1.1)",
    // Bare `wharf`: the help, on stderr, exit status 2 (clap's convention for a usage
    // error); `wharf --help`: the help on stdout, status 0.
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry. Without --config: 127.0.0.1:5000, data under ./wharf-data.
    Serve {
        /// YAML configuration (distribution-compatible keys); REGISTRY_* variables override it.
        #[arg(long, short, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Apply the metadata database's migrations and exit.
    Migrate {
        #[arg(long, short, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a configuration file and exit.
    CheckConfig {
        #[arg(long, short, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Collect garbage once now (retention, due reviews, orphan sweep), printing what
    /// went; safe while instances serve.
    Gc {
        #[arg(long, short, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
        /// Print what would go, with sizes, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Import a distribution registry's storage (its `docker/registry/v2` layout under
    /// the configured store's root) in place: records repositories, tags, manifests and
    /// blobs in the metadata store; copies no blob. Resumes where it stopped.
    Import {
        #[arg(long, short, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
        /// Read and validate everything, report what would be imported, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Repositories imported at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: u16,
        /// Forget this store's checkpoints and read every repository again.
        #[arg(long)]
        restart: bool,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// No progress bar or progress lines.
        #[arg(long)]
        quiet: bool,
        /// Write the import's metrics (Prometheus text format) to this file at the end.
        #[arg(long)]
        metrics_file: Option<PathBuf>,
        /// Stop as if interrupted once N repositories are done (for testing resumes).
        #[arg(long, hide = true)]
        stop_after: Option<u64>,
    },
    /// Notification events: what is pending, the dead letters, replays.
    Events {
        #[arg(long, short, env = "WHARF_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Storage quotas.
    Quota {
        #[arg(long, short, env = "WHARF_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: QuotaCommand,
    },
}

#[derive(Subcommand)]
enum QuotaCommand {
    /// Recompute every usage counter from the stored rows, print each that differed and
    /// set it right. Exit status 0: the counters were right; 3: some were not (fixed,
    /// unless --check).
    Recompute {
        /// Report only; change nothing.
        #[arg(long)]
        check: bool,
    },
}

/// Exit status of `wharf quota recompute` when a counter was wrong.
const DRIFT_FOUND: u8 = 3;

#[derive(Subcommand)]
enum EventsCommand {
    /// Events not yet delivered (per endpoint), or with --dead the dead letters.
    List {
        #[arg(long)]
        dead: bool,
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Put dead letters back for delivery (to the endpoint that gave up on them).
    Replay {
        #[arg(long, conflicts_with_all = ["endpoint", "id"])]
        all: bool,
        #[arg(long, conflicts_with = "id")]
        endpoint: Option<String>,
        /// One event, by the id receivers see.
        #[arg(long)]
        id: Option<String>,
    },
}

/// `wharf events …` on the configured database.
async fn events(config: &Config, command: EventsCommand) -> Result<(), String> {
    let meta = wharf::metadata::open(&config.database.url, 2)
        .await
        .map_err(|e| e.to_string())?;
    match command {
        EventsCommand::List {
            dead,
            endpoint,
            limit,
        } => {
            let lines = wharf::notify::list(meta.events.as_ref(), dead, endpoint.as_deref(), limit)
                .await
                .map_err(|e| e.to_string())?;
            let mut out = std::io::stdout().lock();
            for line in &lines {
                let _ = writeln!(out, "{line}");
            }
            eprintln!(
                "wharf: {} {}",
                lines.len(),
                if dead {
                    "dead letters"
                } else {
                    "pending events"
                }
            );
        }
        EventsCommand::Replay { all, endpoint, id } => {
            use wharf::metadata::ReplayFilter;
            let filter = match (all, endpoint, id) {
                (_, Some(e), None) => ReplayFilter::Endpoint(e),
                (_, None, Some(i)) => ReplayFilter::Event(i),
                (true, None, None) => ReplayFilter::All,
                _ => return Err("say what to replay: --all, --endpoint NAME or --id UUID".into()),
            };
            let n = wharf::notify::replay(meta.events.as_ref(), &filter)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!("wharf: {n} dead letters queued for delivery again");
        }
    }
    Ok(())
}

/// `wharf import`: the summary on stdout (exit 1 if the import failed, 3 if it was
/// stopped by `--stop-after`).
#[allow(clippy::print_stdout)]
async fn import(
    config: &Config,
    options: wharf::import::ImportOptions,
    json: bool,
    metrics_file: Option<PathBuf>,
) -> Result<(), wharf::server::StartError> {
    let registry = wharf::server::registry(config).await?;
    let source = wharf::import::source_name(config);
    let print = |summary: &wharf::import::Summary| {
        if let Some(path) = &metrics_file {
            if let Err(e) = std::fs::write(path, wharf::import::metrics_text()) {
                eprintln!("wharf import: cannot write {}: {e}", path.display());
            }
        }
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(summary).unwrap_or_default()
            );
        } else {
            summary.lines().iter().for_each(|l| println!("{l}"));
        }
    };
    match wharf::import::run(&registry, &source, &options).await {
        Ok(summary) => {
            print(&summary);
            Ok(())
        }
        Err(wharf::import::ImportError::Stopped(n, summary)) => {
            print(&summary);
            eprintln!("wharf import: stopped after {n} repositories (--stop-after); run it again to resume");
            std::process::exit(3);
        }
        Err(e) => {
            eprintln!("wharf import: {e}");
            std::process::exit(1);
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (Command::Serve { config }
    | Command::Migrate { config }
    | Command::CheckConfig { config }
    | Command::Gc { config, .. }
    | Command::Import { config, .. }
    | Command::Events { config, .. }
    | Command::Quota { config, .. }) = &cli.command;
    let config = match Config::load(config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            // Before logging is set up (the configuration says how): plain stderr.
            eprintln!("wharf: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let fields = config
        .log
        .fields
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
        .collect();
    // Held to the end: the server's log lines still queued are written when it drops.
    let _log = wharf::telemetry::init_tracing(
        config.log.level.as_str(),
        config.log.formatter.is_json(),
        fields,
        !config.log.accesslog.disabled,
        matches!(cli.command, Command::Serve { .. }),
    );
    for v in &config.ignored_variables {
        tracing::warn!("ignoring {}: {}", v.name, v.reason);
    }
    let result = match cli.command {
        Command::Serve { .. } => {
            actix_web::rt::System::new().block_on(wharf::server::serve(config))
        }
        Command::Migrate { .. } => block_on(async {
            wharf::metadata::open(&config.database.url, 1)
                .await
                .map(|_| eprintln!("wharf: migrations applied"))
                .map_err(wharf::server::StartError::from)
        }),
        // The report is the command's output: stdout, one line per thing collected.
        #[allow(clippy::print_stdout)]
        Command::Gc { dry_run, .. } => block_on(async {
            let registry = wharf::server::registry(&config).await?;
            match wharf::maintenance::gc_command(&registry, &config, dry_run).await {
                Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
                Err(e) => {
                    eprintln!("wharf gc: {e}");
                    std::process::exit(1);
                }
            }
            Ok(())
        }),
        Command::Import {
            dry_run,
            jobs,
            restart,
            json,
            quiet,
            stop_after,
            metrics_file,
            ..
        } => {
            let options = wharf::import::ImportOptions {
                dry_run,
                jobs: usize::from(jobs),
                restart,
                stop_after,
                progress: !quiet,
            };
            block_on(import(&config, options, json, metrics_file))
        }
        Command::Events { command, .. } => block_on(async {
            events(&config, command)
                .await
                .map_err(|e| wharf::server::StartError::Notify(wharf::notify::NotifyError(e)))
        }),
        // The report is the command's output: one line per counter that was wrong.
        #[allow(clippy::print_stdout)]
        Command::Quota {
            command: QuotaCommand::Recompute { check },
            ..
        } => block_on(async {
            let meta = wharf::metadata::open(&config.database.url, 2).await?;
            let drifts = meta.quotas.recompute(!check).await?;
            drifts.iter().for_each(|d| println!("{d}"));
            if drifts.is_empty() {
                eprintln!("wharf: quota counters are right");
                Ok(())
            } else {
                eprintln!(
                    "wharf: {} quota counters were wrong{}",
                    drifts.len(),
                    if check { "" } else { "; fixed" }
                );
                std::process::exit(i32::from(DRIFT_FOUND));
            }
        }),
        Command::CheckConfig { .. } => match wharf::trust::load_policies(&config.trust) {
            Ok(_) => {
                eprintln!("wharf: configuration is valid");
                Ok(())
            }
            Err(e) => Err(wharf::server::StartError::Trust(e)),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, through the log (JSON when log.formatter says so).
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a one-shot command (`migrate`, `gc`) on a fresh Tokio runtime.
fn block_on(
    command: impl std::future::Future<Output = Result<(), wharf::server::StartError>>,
) -> Result<(), wharf::server::StartError> {
    tokio::runtime::Runtime::new()
        .map_err(wharf::server::StartError::Runtime)?
        .block_on(command)
}
