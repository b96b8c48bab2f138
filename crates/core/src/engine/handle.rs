//! The faces' handle on an engine: its own, or the one it follows while
//! another process owns the data directory.

use super::{Command, Engine, EngineError};
use crate::config::Config;
use crate::model::{Event, unix_millis};
use crate::owner::LockError;
use crate::relay::Update;
use crate::status::{Affected, Problem, Status};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, mpsc, watch};

/// The faces' handle on a running engine.
#[derive(Debug)]
pub struct EngineHandle {
    pub(super) status: watch::Receiver<Arc<Status>>,
    pub(super) events: broadcast::Sender<Arc<[Event]>>,
    pub(super) commands: mpsc::UnboundedSender<Command>,
    pub(super) shutdown: watch::Sender<bool>,
    pub(super) metrics_listen: watch::Receiver<Option<std::net::SocketAddr>>,
    pub(super) config: watch::Receiver<Option<Arc<Config>>>,
    pub(super) failure: watch::Receiver<Option<String>>,
    /// The engine this handle follows, when another owns the data directory.
    pub(super) owner: watch::Receiver<Option<crate::owner::Owner>>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl EngineHandle {
    /// The engine whose state this handle shows when it is another process's
    /// (the daemon's, say): `None` while it runs its own engine (or none yet).
    /// Changes when it attaches and when it takes over.
    pub fn attached_to(&self) -> watch::Receiver<Option<crate::owner::Owner>> {
        self.owner.clone()
    }

    /// The latest status, updated after every tick.
    pub fn status(&self) -> watch::Receiver<Arc<Status>> {
        self.status.clone()
    }

    /// Each tick's events, all of them and each once, published before that
    /// tick's status (the status keeps only the last few, for display). A
    /// receiver lags only when it falls hundreds of ticks behind.
    pub fn events(&self) -> broadcast::Receiver<Arc<[Event]>> {
        self.events.subscribe()
    }

    /// The config's `[metrics] listen`, changed when a reload changes it, so the
    /// face serving `/metrics` can move there.
    pub fn metrics_listen(&self) -> watch::Receiver<Option<std::net::SocketAddr>> {
        self.metrics_listen.clone()
    }

    /// The config in force in the engine this handle shows, updated when a
    /// reload takes a new one (a broken file keeps the last good one in force):
    /// faces act on it instead of reading and parsing the file again, so their
    /// actions work while the file is broken. Attached to another process's
    /// engine, it is that engine's, as its local API serves it. `None` while
    /// there is no engine (still starting), while the engine has no config in
    /// force (it started on a broken file and runs on the built-in defaults,
    /// which no action may use: [`Engine::config_in_force`]), or when the owner
    /// serves none (the same, or an engine from before `/v1/config`).
    pub fn config(&self) -> watch::Receiver<Option<Arc<Config>>> {
        self.config.clone()
    }

    /// Sends a command; it is applied before the next tick.
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// Becomes `Some(why)` when the engine stopped by itself because it cannot go
    /// on ([`super::GIVE_UP_AFTER_FAILED_TICKS`]). A face should then exit non-zero, so
    /// that launchd or systemd restarts it, rather than live on without an engine.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.clone()
    }

    /// Stops the loop, waiting for a running tick to be written.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Runs the engine `open` returns on the current tokio runtime, calling it
    /// again every `retry` while it fails: the menubar app must come up whatever
    /// the machine's state. Meanwhile the status says why nothing is watched (a
    /// [`Problem`] named after what failed), and commands other than shutdown are dropped
    /// (the next attempt reads the config afresh anyway).
    ///
    /// While another engine owns the data directory ([`EngineError::Locked`]),
    /// the handle attaches to it instead ([`crate::attach`]): its statuses and
    /// events are this handle's, commands go to it through the local API, and
    /// [`EngineHandle::attached_to`] names it. When it goes away, `open` is
    /// called at once and this handle's own engine takes over.
    pub fn spawn_retrying<F>(open: F, retry: Duration) -> EngineHandle
    where
        F: Fn() -> Result<Engine, EngineError> + Send + Sync + 'static,
    {
        let (status_tx, status_rx) = watch::channel(Arc::new(Status::default()));
        let (events_tx, _) = broadcast::channel(256);
        let (command_tx, mut command_rx) = mpsc::unbounded_channel::<Command>();
        let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
        let (listen_tx, listen_rx) = watch::channel(None);
        let (config_tx, config_rx) = watch::channel(None::<Arc<Config>>);
        let (failure_tx, failure_rx) = watch::channel(None::<String>);
        let (owner_tx, owner_rx) = watch::channel(None::<crate::owner::Owner>);
        let events = events_tx.clone();
        let open = Arc::new(open);
        let task = tokio::spawn(async move {
            let engine = loop {
                let attempt = Arc::clone(&open);
                let (what, error) = match tokio::task::spawn_blocking(move || attempt()).await {
                    Ok(Ok(engine)) => {
                        owner_tx.send_replace(None);
                        break engine;
                    }
                    Ok(Err(EngineError::Locked(LockError::Held { dir, owner }))) => {
                        let out = crate::attach::Outputs {
                            status: &status_tx,
                            events: &events,
                            owner: &owner_tx,
                            config: &config_tx,
                        };
                        let followed = crate::attach::follow_owner(
                            &dir,
                            owner,
                            &out,
                            &mut command_rx,
                            &mut shutdown_rx,
                        )
                        .await;
                        match followed {
                            crate::attach::Detached::Shutdown => return,
                            crate::attach::Detached::Retry => continue,
                        }
                    }
                    Ok(Err(error)) => (error.what(), error.to_string()),
                    Err(panicked) => (
                        Affected::Engine,
                        format!("the engine panicked while starting: {panicked}"),
                    ),
                };
                tracing::error!("the engine could not start: {error}");
                let status = Status {
                    at: unix_millis(SystemTime::now()),
                    problems: vec![Problem {
                        what,
                        message: format!("watching nothing: {error}"),
                        fix: format!(
                            "Leakwatch retries every {}; see `leakwatch doctor`",
                            humantime::format_duration(retry)
                        ),
                    }],
                    ..Status::default()
                };
                let _ = status_tx.send(Arc::new(status));
                let sleep = tokio::time::sleep(retry);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        _ = shutdown_rx.changed() => return,
                        command = command_rx.recv() => if command.is_none() { return },
                    }
                }
            };
            let inner = engine.spawn();
            let mut updates = crate::relay::Relay::new(inner.status(), inner.events());
            let mut inner_listen = inner.metrics_listen();
            let _ = listen_tx.send(*inner_listen.borrow_and_update());
            let mut inner_config = inner.config();
            config_tx.send_replace(inner_config.borrow_and_update().clone());
            let mut inner_failure = inner.failure();
            loop {
                tokio::select! {
                    changed = inner_failure.changed() => {
                        if changed.is_err() { break }
                        let _ = failure_tx.send(inner_failure.borrow_and_update().clone());
                    }
                    changed = inner_listen.changed() => {
                        if changed.is_err() { break }
                        let _ = listen_tx.send(*inner_listen.borrow_and_update());
                    }
                    changed = inner_config.changed() => {
                        if changed.is_err() { break }
                        config_tx.send_replace(inner_config.borrow_and_update().clone());
                    }
                    // The tick's events before its status, as the engine sent them.
                    update = updates.next() => match update {
                        Some(Update::Events(raised)) => { let _ = events.send(raised); }
                        Some(Update::Status(status)) => { let _ = status_tx.send(status); }
                        Some(Update::Lagged(missed)) => lost(missed),
                        None => break,
                    },
                    command = command_rx.recv() => match command {
                        Some(command) => inner.send(command),
                        None => break,
                    },
                    _ = shutdown_rx.changed() => break,
                }
            }
            config_tx.send_replace(None);
            inner.shutdown().await;
        });
        EngineHandle {
            status: status_rx,
            events: events_tx,
            commands: command_tx,
            shutdown: shutdown_tx,
            metrics_listen: listen_rx,
            config: config_rx,
            failure: failure_rx,
            owner: owner_rx,
            task,
        }
    }
}

/// Events the relay from the engine to the handle's subscribers could not pass
/// on: it fell hundreds of ticks behind (a runtime starved of threads). Said,
/// since the faces downstream cannot tell.
fn lost(missed: u64) {
    tracing::warn!(
        "{missed} ticks' events were lost on the way to the faces (the relay fell behind)"
    );
}
