//! What the app keeps while it runs, shared by the commands, the tray and the
//! event forwarding: the engine's handle and where the configuration and the
//! history live. The engine runs in this process on Tauri's tokio runtime, so the
//! tray, notifications and popover all show the numbers of one engine.

use crate::error::{AppError, ErrorKind};
use leakwatch_core::Config;
use leakwatch_core::engine::{Command, Engine, EngineHandle, EngineOptions};
use leakwatch_core::notifier::{Notification, Notifier};
use leakwatch_core::owner::Face;
use leakwatch_core::status::Status;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the app reads and writes.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The config file (`LEAKWATCH_CONFIG`, else the platform's); it may not exist.
    pub config: Option<PathBuf>,
    /// The history database; `None` keeps no history.
    pub store: Option<PathBuf>,
}

impl Paths {
    /// The same places the `leakwatch` CLI uses, so both share config and history.
    pub fn from_env() -> Self {
        Self {
            config: Config::default_path(),
            store: Config::data_dir().map(|dir| dir.join("history.sqlite3")),
        }
    }
}

/// The app's managed state.
#[derive(Debug)]
pub struct AppState {
    engine: EngineHandle,
    paths: Paths,
    /// The engine's notifier, shared so the outcome of an action is shown the
    /// same way as an alert.
    notifier: Arc<dyn Notifier>,
}

impl AppState {
    /// Starts the engine on the current tokio runtime (call inside it, e.g. in
    /// `tauri::async_runtime::block_on`).
    pub fn start(paths: Paths, notifier: Arc<dyn Notifier>) -> Result<Self, AppError> {
        let engine = Engine::new_as(
            EngineOptions {
                config_path: paths.config.clone(),
                store_path: paths.store.clone(),
                notifier: Arc::clone(&notifier),
                interval: None,
            },
            Face::App,
        )
        .map_err(|e| AppError::new(ErrorKind::Config, e.to_string()))?;
        Ok(Self { engine: engine.spawn(), paths, notifier })
    }

    /// The latest status (after the last tick).
    pub fn status(&self) -> Arc<Status> {
        self.engine.status().borrow().clone()
    }

    /// The engine, for subscriptions.
    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    /// Sends the engine a command, applied before its next tick.
    pub fn send(&self, command: Command) {
        self.engine.send(command);
    }

    /// Shows the outcome of an action the user took, unless the config turns
    /// notifications off. On a blocking thread: a D-Bus round trip may stall,
    /// and neither the IPC nor the engine waits for it.
    pub fn notify_action(&self, notification: Notification) {
        let notifier = Arc::clone(&self.notifier);
        let config = self.paths.config.clone();
        tauri::async_runtime::spawn_blocking(move || {
            // The file as it is now, as the actions read it. An unreadable one
            // does not hide the outcome: notifications are on by default.
            if load_config(config.as_deref()).is_ok_and(|c| !c.notify.enabled) {
                return;
            }
            if let Err(e) = notifier.notify(&notification) {
                tracing::debug!("action outcome not notified: {e}");
            }
        });
    }

    /// Where the config and history live.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The configuration on disk now (actions use the file's current contents,
    /// as the CLI does); no file is the built-in default.
    pub fn config(&self) -> Result<Config, AppError> {
        load_config(self.paths.config.as_deref())
    }
}

/// Loads `path`, or the defaults when there is no file.
pub fn load_config(path: Option<&Path>) -> Result<Config, AppError> {
    match path {
        Some(path) if path.exists() => Ok(Config::load(path)?),
        _ => Ok(Config::default()),
    }
}
