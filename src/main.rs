//! The `switchyard` command line.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use http::Method;
use serde_json::json;

use switchyard::cli::{render_status, AdminClient};
use switchyard::{config, demo, server};

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
    /// Print the rollout state.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
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
}

#[derive(Args)]
struct AdminArgs {
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
            base: self.admin,
            token: self.token,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One CPU (a pinned process, a container limited to one core): a current-thread
    // runtime, without the work-stealing machinery that has nothing to steal from.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Run { config } => run(config).await,
            Command::Validate { config } => match config::load_file(&config) {
                Ok(_) => {
                    println!("ok");
                    ExitCode::SUCCESS
                }
                Err(problems) => {
                    println!(
                        "{}: {} problem{}",
                        config.display(),
                        problems.0.len(),
                        if problems.0.len() == 1 { "" } else { "s" }
                    );
                    for p in &problems.0 {
                        println!("  {p}");
                    }
                    ExitCode::FAILURE
                }
            },
            Command::Demo { keep } => {
                init_tracing("warn");
                match demo::run(demo::Options { keep }).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("switchyard demo: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Status { admin, json } => {
                control(admin, Method::GET, "/api/v1/status", None, |s| {
                    if json {
                        serde_json::to_string_pretty(s).unwrap_or_default()
                    } else {
                        render_status(s)
                    }
                })
                .await
            }
            Command::Promote { admin, full } => {
                control(
                    admin,
                    Method::POST,
                    "/api/v1/promote",
                    Some(json!({ "full": full })),
                    render_status,
                )
                .await
            }
            Command::Pause { admin, reason } => {
                control(
                    admin,
                    Method::POST,
                    "/api/v1/pause",
                    Some(json!({ "reason": reason })),
                    render_status,
                )
                .await
            }
            Command::Resume { admin } => {
                control(admin, Method::POST, "/api/v1/resume", None, render_status).await
            }
            Command::Rollback { admin, reason } => {
                control(
                    admin,
                    Method::POST,
                    "/api/v1/rollback",
                    Some(json!({ "reason": reason })),
                    render_status,
                )
                .await
            }
            Command::Retry { admin } => {
                control(admin, Method::POST, "/api/v1/retry", None, render_status).await
            }
        }
    })
}

async fn control(
    admin: AdminArgs,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    show: impl Fn(&serde_json::Value) -> String,
) -> ExitCode {
    match admin.client().call(method, path, body).await {
        Ok(v) => {
            println!("{}", show(&v).trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

async fn run(path: PathBuf) -> ExitCode {
    init_tracing("info");
    let cfg = match config::load_file(&path) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("switchyard: {} is not valid:\n{problems}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let running = match server::start(cfg, Some(path)).await {
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
