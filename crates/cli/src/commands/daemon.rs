//! `leakwatch daemon`: the engine headless, for a Mac mini with no GUI login and
//! for Linux servers. Logs go to stderr through `tracing` (launchd and systemd
//! collect them); SIGHUP reloads the config; SIGTERM and SIGINT stop it cleanly,
//! after the tick in flight is written to the store.

mod service;

use super::{EngineArgs, runtime};
use leakwatch_core::engine::{Command, Engine};
use leakwatch_core::metrics;
use leakwatch_core::model::EventKind;
use leakwatch_core::notifier::{self, DesktopNotifier, Notifier};
use leakwatch_core::owner::Face;
use std::sync::Arc;

/// Run the engine headless: history, notifications, metrics, and logs on stderr.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Signals: SIGHUP reloads the config (it is also reloaded when \
    the file changes); SIGTERM or SIGINT stop the daemon after writing the last tick.\n\n\
    Logging: LEAKWATCH_LOG (or RUST_LOG) sets the level, e.g. LEAKWATCH_LOG=debug.\n\n\
    Failures: a tick that fails is logged and the next one runs; a history that cannot be \
    opened or written (read-only data directory, full disk) is warned about and the daemon \
    runs on without it. If 20 ticks in a row fail, the daemon exits 1, so that launchd or \
    systemd starts it afresh.\n\n\
    Metrics: with `[metrics] listen = \"127.0.0.1:9464\"` in the config, Prometheus text is \
    served at http://127.0.0.1:9464/metrics; a reload that changes the address moves it (or \
    logs an error and keeps the old one if the new one cannot be bound).\n\n\
    One engine per data directory: while another engine (a daemon, `watch`, the app) \
    holds the data directory's lock, the daemon logs which one and waits, then takes over \
    within a fraction of a second when it stops or dies.\n\n\
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

/// Names the application macOS shows the daemon's notifications as, before the
/// first one: the menubar app if installed, else Terminal (README, "Running
/// headless"). Elsewhere it does nothing.
pub(crate) fn set_notification_application() {
    let bundle_id = notifier::cli_notification_application(notifier::app_installed());
    if let Err(e) = notifier::set_notification_application(bundle_id) {
        tracing::warn!("{e}");
    }
}

/// The daemon itself, in the foreground until SIGTERM.
fn run_engine(args: &Args) -> anyhow::Result<String> {
    init_logging();
    set_notification_application();
    let notifier: Arc<dyn Notifier> = Arc::new(DesktopNotifier);
    runtime()?.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let options = args.engine.options(notifier, None)?;
        let Some(engine) = owner_or_wait(options, &mut terminate, &mut interrupt).await? else {
            return anyhow::Ok(String::new());
        };
        let metrics_listen = engine.config().metrics.listen;
        let notify_enabled = engine.config().notify.enabled;
        let handle = engine.spawn();
        let first = match metrics_listen {
            Some(address) => {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|e| anyhow::anyhow!("metrics: cannot listen on {address}: {e}"))?;
                tracing::info!("serving metrics at http://{address}/metrics");
                Some(MetricsServer::serve(listener, handle.status()))
            }
            None => None,
        };
        let server =
            tokio::spawn(follow_metrics_listen(first, handle.metrics_listen(), handle.status()));
        tracing::info!(
            "leakwatch daemon started (pid {}, notifications {})",
            std::process::id(),
            if notify_enabled { "on" } else { "off" }
        );
        let mut events = handle.events();
        let mut failure = handle.failure();
        let mut failed = None;
        loop {
            tokio::select! {
                raised = events.recv() => match raised {
                    Ok(raised) => for event in raised.iter() {
                        match event.kind {
                            EventKind::ConfigError => tracing::warn!("{}", event.message),
                            _ => tracing::info!(target: "leakwatch::event", "{}", event.message),
                        }
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("{n} ticks' events were not logged (logging fell behind)");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    handle.send(Command::Reload);
                }
                // The engine gave up: exit non-zero, so that launchd or systemd
                // starts a fresh process, rather than serve frozen metrics.
                _ = failure.changed() => {
                    failed = failure.borrow().clone();
                    break;
                }
                _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); break; }
            }
        }
        server.abort();
        handle.shutdown().await;
        if let Some(reason) = failed {
            anyhow::bail!("{reason}");
        }
        tracing::info!("stopped");
        anyhow::Ok(String::new())
    })
}

/// How often a waiting daemon tries the data directory's lock again: the
/// takeover delay after the owner dies.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// The engine, once this daemon owns the data directory. While another engine
/// (the app, `watch`, another daemon) owns it, the daemon waits rather than
/// doubling every sample and alert, and takes over when that engine exits or
/// dies. `None` when stopped by a signal while waiting.
async fn owner_or_wait(
    options: leakwatch_core::engine::EngineOptions,
    terminate: &mut tokio::signal::unix::Signal,
    interrupt: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<Option<Engine>> {
    use leakwatch_core::engine::EngineError;
    use leakwatch_core::owner::LockError;
    let mut waiting = false;
    loop {
        match Engine::new_as(options.clone(), Face::Daemon) {
            Err(EngineError::Locked(LockError::Held { dir, owner })) => {
                if !waiting {
                    let owner = owner.map_or_else(|| "owner unknown".to_owned(), |o| o.to_string());
                    tracing::info!(
                        "another engine owns the data directory {}: {owner}; waiting to take \
                         over when it stops (`leakwatch status` shows its state)",
                        dir.display()
                    );
                    waiting = true;
                }
            }
            Ok(engine) => {
                if waiting {
                    tracing::info!("the previous engine stopped: taking over");
                }
                return Ok(Some(engine));
            }
            Err(error) => return Err(error.into()),
        }
        tokio::select! {
            () = tokio::time::sleep(LOCK_RETRY) => {}
            _ = terminate.recv() => { tracing::info!("SIGTERM while waiting: stopping"); return Ok(None); }
            _ = interrupt.recv() => { tracing::info!("SIGINT while waiting: stopping"); return Ok(None); }
        }
    }
}

/// The `/metrics` server running now, and where.
struct MetricsServer {
    address: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    fn serve(
        listener: tokio::net::TcpListener,
        status: tokio::sync::watch::Receiver<Arc<leakwatch_core::status::Status>>,
    ) -> Self {
        let address = listener.local_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        Self { address, task: tokio::spawn(metrics::serve(listener, status)) }
    }

    /// Stops it and waits until its socket is closed, so the port can be reused.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Moves `/metrics` when a reload changes `[metrics] listen`: binds the new
/// address, then stops the old server. A new address that cannot be bound
/// keeps the old one serving and says so loudly (at error level, naming both),
/// so a typo in a reload never silently leaves Prometheus scraping nothing.
async fn follow_metrics_listen(
    mut current: Option<MetricsServer>,
    mut listen: tokio::sync::watch::Receiver<Option<std::net::SocketAddr>>,
    status: tokio::sync::watch::Receiver<Arc<leakwatch_core::status::Status>>,
) {
    while listen.changed().await.is_ok() {
        let wanted = *listen.borrow_and_update();
        match (wanted, current.take()) {
            (None, None) => {}
            (None, Some(old)) => {
                tracing::info!("metrics: no longer serving at http://{}/metrics", old.address);
                old.stop().await;
            }
            (Some(address), Some(old)) if old.address == address => current = Some(old),
            (Some(address), old) => {
                let mut bound = tokio::net::TcpListener::bind(address).await;
                // The same port on another address of this host is only free
                // once the old socket is closed.
                let old = match (bound.is_err(), old) {
                    (true, Some(old)) if old.address.port() == address.port() => {
                        let previous = old.address;
                        old.stop().await;
                        bound = tokio::net::TcpListener::bind(address).await;
                        if bound.is_err() {
                            // Back where it was, if that is still free.
                            tokio::net::TcpListener::bind(previous)
                                .await
                                .ok()
                                .map(|l| MetricsServer::serve(l, status.clone()))
                        } else {
                            None
                        }
                    }
                    (_, old) => old,
                };
                match bound {
                    Ok(listener) => {
                        if let Some(old) = old {
                            old.stop().await;
                        }
                        tracing::info!("metrics: now serving at http://{address}/metrics");
                        current = Some(MetricsServer::serve(listener, status.clone()));
                    }
                    Err(error) => {
                        match &old {
                            Some(old) => tracing::error!(
                                "metrics: the configuration moved [metrics] listen to {address}, \
                                 but it cannot be bound ({error}); still serving at \
                                 http://{}/metrics until it can (fix it and reload, or restart)",
                                old.address
                            ),
                            None => tracing::error!(
                                "metrics: cannot listen on {address} ({error}); /metrics is \
                                 not served (fix [metrics] listen and reload, or restart)"
                            ),
                        }
                        current = old;
                    }
                }
            }
        }
    }
    if let Some(server) = current {
        server.stop().await;
    }
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
