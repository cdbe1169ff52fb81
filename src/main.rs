//! The `wharf` command: `serve` runs the registry, `migrate` applies database migrations,
//! `events` lists pending notification events and dead letters and replays them.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use wharf::config::Config;

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "A container registry (OCI Distribution Spec v1.1)"
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
    /// Notification events: what is pending, the dead letters, replays.
    Events {
        #[arg(long, short, env = "WHARF_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: EventsCommand,
    },
}

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

fn load(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    Config::load(path.map(|p| p.as_path()), std::env::vars()).map_err(|e| {
        eprintln!("wharf: configuration error: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (Command::Serve { config }
    | Command::Migrate { config }
    | Command::CheckConfig { config }
    | Command::Events { config, .. }) = &cli.command;
    let config = match load(config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    wharf::telemetry::init_tracing(&config.log.level, config.log.formatter == "json");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wharf: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve { .. } => {
            actix_web::rt::System::new().block_on(wharf::server::serve(config))
        }
        Command::Migrate { .. } => runtime.block_on(async {
            wharf::metadata::open(&config.database.url, 1)
                .await
                .map(|_| eprintln!("wharf: migrations applied"))
                .map_err(wharf::server::StartError::from)
        }),
        Command::Events { command, .. } => runtime.block_on(async {
            events(&config, command)
                .await
                .map_err(|e| wharf::server::StartError::Notify(wharf::notify::NotifyError(e)))
        }),
        Command::CheckConfig { .. } => {
            eprintln!("wharf: configuration is valid");
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "wharf stopped");
            eprintln!("wharf: {e}");
            ExitCode::FAILURE
        }
    }
}
