//! The `wharf` command: `serve` runs the registry, `migrate` applies database migrations,
//! `gc` collects garbage once.

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
    /// Collect garbage once now (retention, due reviews, orphan sweep), printing what
    /// went; safe while instances serve.
    Gc {
        #[arg(long, short, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
        /// Print what would go, with sizes, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
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
    | Command::Gc { config, .. }) = &cli.command;
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
        Command::Gc { dry_run, .. } => runtime.block_on(async {
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
