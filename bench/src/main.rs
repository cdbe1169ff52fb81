//! `wharf-bench`: runs one registry/2.0 workload against one server and reports it, or
//! compares two such reports side by side. See `bench/README.md` for what is measured.

mod client;
mod data;
mod monitor;
mod report;
mod scenarios;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::client::Target;
use crate::monitor::{status_kib, Monitor};
use crate::report::{run_row, Report, RUN_HEADER};
use crate::scenarios::{Bench, Params, ALL};

#[derive(Parser)]
#[command(
    name = "wharf-bench",
    version,
    about = "Registry (OCI distribution / Docker registry v2) benchmark",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the side-by-side Markdown table of two JSON reports (the second may be absent).
    Compare {
        /// Report of the reference server (first column).
        baseline: PathBuf,
        /// Report of the server compared with it (second column).
        candidate: Option<PathBuf>,
        /// Column name to show when the candidate report is absent.
        #[arg(long, default_value = "Wharf")]
        missing_label: String,
    },
    /// Print a TCP port on 127.0.0.1 that is free right now.
    FreePort,
}

#[derive(Args)]
struct RunArgs {
    /// Base URL of the registry, e.g. http://127.0.0.1:5000 (plain HTTP/1.1 only).
    #[arg(long, required = true)]
    url: Option<String>,
    /// PID of the server process, for its peak RSS and CPU time.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Name of the server in the output.
    #[arg(long, default_value = "server")]
    label: String,
    /// `all` or a comma-separated list of: push, chunked, pull, range, small, manifest-get,
    /// manifest-head, blob-head, ping (GET /v2/: the HTTP stack alone).
    #[arg(long, default_value = "all")]
    scenarios: String,
    /// Size of the big blob (push, chunked, pull, range), MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Chunk size of the chunked push, MiB.
    #[arg(long, default_value_t = 16)]
    chunk_mib: u64,
    /// Number of ranged GETs.
    #[arg(long, default_value_t = 2000)]
    range_requests: usize,
    /// Length of each ranged GET, KiB.
    #[arg(long, default_value_t = 1024)]
    range_kib: u64,
    /// Connections for the ranged GETs.
    #[arg(long, default_value_t = 16)]
    range_concurrency: usize,
    /// Compare the bytes of every Nth ranged response with the expected data (0: never).
    #[arg(long, default_value_t = 8)]
    range_verify_every: usize,
    /// Number of small blobs pushed.
    #[arg(long, default_value_t = 2000)]
    small_count: usize,
    /// Size of each small blob, KiB.
    #[arg(long, default_value_t = 4)]
    small_kib: u64,
    /// Connections for the small pushes.
    #[arg(long, default_value_t = 32)]
    small_concurrency: usize,
    /// Requests per manifest GET / manifest HEAD / blob HEAD scenario.
    #[arg(long, default_value_t = 20000)]
    requests: usize,
    /// Run each manifest/HEAD scenario for this many seconds instead of --requests.
    #[arg(long)]
    duration_secs: Option<f64>,
    /// Connections for the manifest/HEAD scenarios.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seed of the generated data (same seed, same blobs and digests).
    #[arg(long, default_value_t = 0x00c0_ffee)]
    seed: u64,
    /// Repositories used are <prefix>/big, <prefix>/chunked, <prefix>/small, <prefix>/image.
    #[arg(long, default_value = "wharf-bench")]
    repo_prefix: String,
    /// Client runtime threads (the client shares the machine with the server; 1 leaves it
    /// the most CPU).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// RSS sampling interval, ms.
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// Write the full results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.cmd {
        Some(Cmd::Compare {
            baseline,
            candidate,
            missing_label,
        }) => compare(&baseline, candidate.as_deref(), &missing_label).map(|()| true),
        Some(Cmd::FreePort) => free_port().map(|()| true),
        None => run(cli.run),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("wharf-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn compare(
    baseline: &std::path::Path,
    candidate: Option<&std::path::Path>,
    missing: &str,
) -> Result<()> {
    let base = Report::load(baseline)?;
    let cand = candidate.map(Report::load).transpose()?;
    print!("{}", report::compare(&base, cand.as_ref(), missing));
    Ok(())
}

fn free_port() -> Result<()> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    println!("{}", l.local_addr()?.port());
    Ok(())
}

fn parse_scenarios(spec: &str) -> Result<Vec<&'static str>> {
    let wanted: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if wanted.contains(&"all") {
        return Ok(ALL.to_vec());
    }
    for w in &wanted {
        if !ALL.contains(w) {
            bail!("unknown scenario {w:?}; known: all, {}", ALL.join(", "));
        }
    }
    if wanted.is_empty() {
        bail!("no scenario given");
    }
    Ok(ALL.iter().copied().filter(|s| wanted.contains(s)).collect())
}

/// Returns whether every scenario succeeded.
fn run(args: RunArgs) -> Result<bool> {
    let Some(url) = args.url.clone() else {
        bail!("--url is required");
    };
    let target = Arc::new(Target::parse(&url)?);
    let names = parse_scenarios(&args.scenarios)?;
    if args.size_mib == 0 {
        bail!("--size-mib must be at least 1");
    }
    if args.range_kib << 10 > args.size_mib << 20 {
        bail!("--range-kib is larger than the blob");
    }
    if let Some(pid) = args.server_pid {
        if status_kib(pid, "VmRSS").is_none() {
            bail!("--server-pid {pid}: no such process (or no access to /proc/{pid}/status)");
        }
    }
    let threads = args.client_threads.max(1);
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    rt.block_on(run_all(args, url, target, names, threads))
}

async fn run_all(
    args: RunArgs,
    url: String,
    target: Arc<Target>,
    names: Vec<&'static str>,
    threads: usize,
) -> Result<bool> {
    let params = Params {
        size_mib: args.size_mib,
        chunk_mib: args.chunk_mib.max(1),
        range_requests: args.range_requests,
        range_kib: args.range_kib,
        range_concurrency: args.range_concurrency,
        range_verify_every: args.range_verify_every,
        small_count: args.small_count,
        small_kib: args.small_kib,
        small_concurrency: args.small_concurrency,
        requests: args.requests,
        concurrency: args.concurrency,
        duration_secs: args.duration_secs,
        seed: args.seed,
        repo_prefix: args.repo_prefix.clone(),
    };
    let monitor = Monitor::start(args.server_pid, Duration::from_millis(args.poll_ms.max(1)));
    let mut bench = Bench::new(Arc::clone(&target), params.clone(), monitor);
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let info = bench.check_api().await.context(url.clone())?;

    println!("\n### {} — {url}\n", args.label);
    println!(
        "client: {threads} runtime thread(s), {} CPUs on the machine, load average at start {}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg.as_deref().unwrap_or("?")
    );
    println!("{RUN_HEADER}");
    let mut results = Vec::new();
    for name in names {
        if !bench.monitor().alive() {
            eprintln!("wharf-bench: server process is gone; stopping");
            break;
        }
        let r = bench.run(name).await;
        println!("{}", run_row(&r));
        results.push(r);
    }
    let all_ok = results.iter().all(|r| r.ok);
    let report = Report {
        label: args.label.clone(),
        url,
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        server_pid: args.server_pid,
        client_threads: threads,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg_at_start: loadavg,
        server_vmhwm_kib_at_end: args.server_pid.and_then(|p| status_kib(p, "VmHWM")),
        info,
        params,
        scenarios: results,
    };
    if let Some(path) = &args.json {
        report.save(path)?;
    }
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_lists() {
        assert_eq!(parse_scenarios("all").unwrap(), ALL.to_vec());
        assert_eq!(parse_scenarios("pull, push").unwrap(), vec!["push", "pull"]);
        assert!(parse_scenarios("push,nope").is_err());
        assert!(parse_scenarios("").is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["wharf-bench", "compare", "a.json"]).unwrap();
        assert!(matches!(cli.cmd, Some(Cmd::Compare { .. })));
        assert!(Cli::try_parse_from(["wharf-bench"]).is_err());
        let cli =
            Cli::try_parse_from(["wharf-bench", "--url", "http://127.0.0.1:1", "--json", "x"])
                .unwrap();
        assert_eq!(cli.run.url.as_deref(), Some("http://127.0.0.1:1"));
    }
}
