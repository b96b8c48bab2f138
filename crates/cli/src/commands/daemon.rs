//! `leakwatch daemon`: the engine headless, for a Mac mini with no GUI login and
//! for Linux servers. Logs go to stderr through `tracing` (launchd and systemd
//! collect them); SIGHUP reloads the config; SIGTERM and SIGINT stop it cleanly,
//! after the tick in flight is written to the store.

mod service;

use super::{EngineArgs, runtime};
use leakwatch_core::engine::{Command, Engine};
use leakwatch_core::metrics;
use leakwatch_core::model::EventKind;
use leakwatch_core::notifier::{DesktopNotifier, Notifier};
use std::sync::{Arc, Mutex};

/// Run the engine headless: history, notifications, metrics, and logs on stderr.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Signals: SIGHUP reloads the config (it is also reloaded when \
    the file changes); SIGTERM or SIGINT stop the daemon after writing the last tick.\n\n\
    Logging: LEAKWATCH_LOG (or RUST_LOG) sets the level, e.g. LEAKWATCH_LOG=debug.\n\n\
    Metrics: with `[metrics] listen = \"127.0.0.1:9464\"` in the config, Prometheus text is \
    served at http://127.0.0.1:9464/metrics.\n\n\
    As a service: `leakwatch daemon install` runs it at every login under launchd (macOS) or \
    systemd --user (Linux); `leakwatch daemon uninstall` removes it.")]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    #[command(flatten)]
    engine: EngineArgs,
    #[command(subcommand)]
    action: Option<Action>,
}

/// Installing the daemon as a user service.
#[derive(Debug, clap::Subcommand)]
enum Action {
    Install(service::InstallArgs),
    Uninstall(service::UninstallArgs),
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<String> {
    match &args.action {
        Some(Action::Install(install)) => service::install(install, json),
        Some(Action::Uninstall(uninstall)) => service::uninstall(uninstall, json),
        None => run_engine(args),
    }
}

/// The daemon itself, in the foreground until SIGTERM.
fn run_engine(args: &Args) -> anyhow::Result<String> {
    init_logging();
    let notifier: Arc<dyn Notifier> = Arc::new(DesktopNotifier);
    let engine = Engine::new(args.engine.options(notifier, None)?)?;
    let metrics_listen = engine.config().metrics.listen;
    let notify_enabled = engine.config().notify.enabled;
    runtime()?.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let handle = engine.spawn();
        let server = match metrics_listen {
            Some(address) => {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|e| anyhow::anyhow!("metrics: cannot listen on {address}: {e}"))?;
                tracing::info!("serving metrics at http://{address}/metrics");
                let extra = Arc::new(Mutex::new(metrics::Extra::default()));
                Some(tokio::spawn(metrics::serve(listener, handle.status(), extra)))
            }
            None => None,
        };
        tracing::info!(
            "leakwatch daemon started (pid {}, notifications {})",
            std::process::id(),
            if notify_enabled { "on" } else { "off" }
        );
        let mut events = handle.events();
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => match event.kind {
                        EventKind::ConfigError => tracing::warn!("{}", event.message),
                        _ => tracing::info!(target: "leakwatch::event", "{}", event.message),
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("{n} events were not logged (logging fell behind)");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    handle.send(Command::Reload);
                }
                _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); break; }
            }
        }
        if let Some(server) = server {
            server.abort();
        }
        handle.shutdown().await;
        tracing::info!("stopped");
        anyhow::Ok(String::new())
    })
}

/// Logs to stderr, plain text, level from LEAKWATCH_LOG or RUST_LOG (default info).
fn init_logging() {
    let filter = std::env::var("LEAKWATCH_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        // Its report of a failed write goes through eprintln!, which panics when
        // stderr is a closed pipe (`leakwatch daemon 2>&1 | head`): a log line
        // that cannot be written is dropped instead.
        .log_internal_errors(false)
        .with_ansi(false)
        .try_init();
}
