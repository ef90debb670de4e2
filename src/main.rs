//! The `switchyard` command line.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use switchyard::admin::client::{render_status, AdminClient, ClientError};
use switchyard::rollout::Action;
use switchyard::{app, config, demo, monitor};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A traffic router for model servers: shadow, canary, blue-green, automatic analysis and atomic rollback"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the proxy.
    Run {
        #[arg(short, long, default_value = "config/switchyard.yaml")]
        config: PathBuf,
    },
    /// Parse and validate a config: prints `ok`, or every problem with its field and line.
    Validate {
        #[arg(short, long, default_value = "config/switchyard.yaml")]
        config: PathBuf,
    },
    /// Play a whole rollout with built-in demo model servers and traffic.
    Demo {
        /// Stay up after the rollout instead of exiting.
        #[arg(long)]
        keep: bool,
    },
    /// Print a route's rollout state; without --route and with several routes, list them.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// List every route: phase, step, weight, stable → candidate.
    Routes {
        #[command(flatten)]
        api: AdminApi,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pass the current gate or hold.
    Promote {
        #[command(flatten)]
        admin: AdminArgs,
        /// Skip straight to 100 %.
        #[arg(long)]
        full: bool,
    },
    /// Freeze the rollout where it is (the traffic split stays).
    Pause {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Unfreeze the rollout.
    Resume {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// All traffic to stable now, mirroring off.
    Rollback {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Start the same rollout again from step 0 after a rollback.
    Retry {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Write a drift reference (what `monitor.reference.file` reads) from a capture file
    /// (JSON Lines), a CSV table with a header row, or the reference a running switchyard
    /// uses (--from-live).
    Baseline {
        /// The capture file or CSV table to read.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "from_live",
            conflicts_with = "from_live"
        )]
        from: Option<PathBuf>,
        /// Export the reference a running switchyard uses, from its admin API.
        #[arg(long)]
        from_live: bool,
        /// Admin API base URL (with --from-live).
        #[arg(
            long,
            value_name = "URL",
            env = "SWITCHYARD_ADMIN",
            default_value = "http://127.0.0.1:9901"
        )]
        admin: String,
        /// Where to write the reference.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Only a capture's records of this route; with --from-live, the route whose
        /// reference is exported (without it: the route named `default` or the only one).
        #[arg(long, value_name = "NAME")]
        route: Option<String>,
    },
}

/// Where the admin API is, and the route a command addresses.
#[derive(Args)]
struct AdminArgs {
    #[command(flatten)]
    api: AdminApi,
    /// The route to address, by its name in the config's `routes:`. Without it: the route
    /// named `default` or the only one (`status` lists several).
    #[arg(long, env = "SWITCHYARD_ROUTE", value_name = "NAME")]
    route: Option<String>,
}

/// Where the admin API is and how to authorize.
#[derive(Args)]
struct AdminApi {
    /// Admin API base URL.
    #[arg(
        long,
        env = "SWITCHYARD_ADMIN",
        default_value = "http://127.0.0.1:9901"
    )]
    admin: String,
    /// Bearer token for mutating calls.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl AdminArgs {
    fn client(self) -> AdminClient {
        AdminClient {
            // An empty name (`SWITCHYARD_ROUTE=`) names no route.
            route: self.route.filter(|r| !r.is_empty()),
            ..self.api.client()
        }
    }
}

impl AdminApi {
    fn client(self) -> AdminClient {
        AdminClient {
            base: self.admin,
            token: self.token,
            route: None,
        }
    }
}

/// jemalloc rather than the system's allocator: memory a reload frees (the windows,
/// pools and diffs of removed routes and backends) goes back to the system within
/// seconds, where glibc's per-thread arenas keep it for good.
#[cfg(all(unix, feature = "jemalloc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // A background thread returns freed pages after jemalloc's decay time (10 s) even
    // when nothing allocates meanwhile; without it they wait for the next allocations.
    #[cfg(all(unix, feature = "jemalloc"))]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("switchyard: jemalloc background thread not started: {e}");
    }
    let cli = Cli::parse();
    match runtime() {
        Ok(runtime) => runtime.block_on(dispatch(cli.command)),
        Err(e) => {
            eprintln!("switchyard: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime every command runs on, sized for the CPUs this process may use.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // One CPU (a pinned process, a container limited to one core): a current-thread
    // runtime, without the work-stealing machinery that has nothing to steal from.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()
}

/// Runs one command to its exit code.
async fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Run { config } => run(config).await,
        Command::Validate { config } => validate(&config),
        Command::Demo { keep } => play_demo(keep).await,
        Command::Status { admin, json } => print(admin.client().show_status(json).await),
        Command::Routes { api, json } => print(api.client().show_routes(json).await),
        Command::Promote { admin, full } => control(admin, Action::Promote { full }).await,
        Command::Pause { admin, reason } => control(admin, Action::Pause { reason }).await,
        Command::Resume { admin } => control(admin, Action::Resume).await,
        Command::Rollback { admin, reason } => control(admin, Action::Rollback { reason }).await,
        Command::Retry { admin } => control(admin, Action::Retry).await,
        Command::Baseline {
            from,
            from_live,
            admin,
            out,
            route,
        } => match from {
            Some(from) if !from_live => baseline(&from, &out, route.as_deref()),
            _ => baseline_live(admin, route, &out).await,
        },
    }
}

/// `switchyard validate`: `ok`, or every problem with its field and line.
fn validate(path: &Path) -> ExitCode {
    let refused = match app::check_file(path) {
        Ok(config) => {
            print_warnings(&config);
            println!("ok");
            return ExitCode::SUCCESS;
        }
        Err(refused) => refused,
    };
    let n = refused.problems.0.len();
    let plural = if n == 1 { "" } else { "s" };
    println!("{}: {n} problem{plural}", path.display());
    for p in &refused.problems.0 {
        println!("  {p}");
    }
    if let Some(note) = refused.reach.note() {
        println!("({note})");
    }
    ExitCode::FAILURE
}

/// What a valid config may still get wrong, on stderr, one `warning:` line each (the
/// config is valid all the same): a monitor's reference file of no features, or of none
/// of the configured ones.
fn print_warnings(config: &config::Config) {
    let mut printed = Vec::new();
    for route in config.routes() {
        for w in route.monitor.reference_warnings() {
            let line = if route.name == config::DEFAULT_ROUTE {
                format!("warning: monitor.{w}")
            } else {
                format!("warning: route {}: monitor.{w}", route.name)
            };
            if !printed.contains(&line) {
                eprintln!("{line}");
                printed.push(line);
            }
        }
    }
}

/// `switchyard baseline`: a reference from a file, a line saying what went into it, and
/// the lines or rows that could not be read.
fn baseline(from: &Path, out: &Path, route: Option<&str>) -> ExitCode {
    let (reference, summary) = match monitor::baseline::from_file(from, route) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("switchyard baseline: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (line, why) in &summary.problems {
        eprintln!(
            "switchyard baseline: {}:{line}: skipped: {why}",
            from.display()
        );
    }
    if let Err(e) = monitor::baseline::write(&reference, out) {
        eprintln!("switchyard baseline: {e}");
        return ExitCode::FAILURE;
    }
    println!("{}", summary.line(out, &reference));
    ExitCode::SUCCESS
}

/// `switchyard baseline --from-live`: the reference a running switchyard uses, exported
/// from its admin API and checked as `monitor.reference.file` reads it, written as sent.
async fn baseline_live(admin: String, route: Option<String>, out: &Path) -> ExitCode {
    let client = AdminClient {
        base: admin,
        token: None,
        route: route.filter(|r| !r.is_empty()),
    };
    let json = match client.monitor_reference().await {
        Ok(json) => json,
        Err(e) => {
            eprintln!("switchyard baseline: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reference = match monitor::Reference::from_json(json.as_bytes()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard baseline: the admin API's reference does not read: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut text = json.trim_end().to_owned();
    text.push('\n');
    if let Err(e) = std::fs::write(out, text) {
        eprintln!("switchyard baseline: {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    if reference.features.is_empty() {
        eprintln!(
            "switchyard baseline: warning: the reference in use has no input features: \
             it measures output drift only"
        );
    }
    let summary = monitor::baseline::Summary::default();
    println!("{}", summary.line(out, &reference));
    ExitCode::SUCCESS
}

/// `switchyard demo`: a whole rollout with built-in model servers and traffic.
async fn play_demo(keep: bool) -> ExitCode {
    // The demo tells what happens in its own lines; a failing candidate's warnings would
    // only interleave with them.
    init_tracing("error");
    match demo::run(demo::Options { keep, quick: false }).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A control command: asks for `action` and shows the status after it.
async fn control(admin: AdminArgs, action: Action) -> ExitCode {
    let answer = admin.client().control(&action).await;
    print(answer.map(|s| render_status(&s)))
}

/// Prints an admin call's answer, or why it failed.
fn print(answer: Result<String, ClientError>) -> ExitCode {
    match answer {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to standard output, in colour only when it is a terminal: a log file or journal
/// gets plain text.
fn init_tracing(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .try_init();
}

async fn run(path: PathBuf) -> ExitCode {
    init_tracing("info");
    let cfg = match app::load_file(&path) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("switchyard: {} is not valid:\n{problems}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let running = match app::start(cfg, Some(path)).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard: {e}");
            return ExitCode::FAILURE;
        }
    };
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    running.shutdown().await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
