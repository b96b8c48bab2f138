//! What the app keeps while it runs, shared by the commands, the tray and the
//! event forwarding: the engine's handle and where the configuration and the
//! history live. The engine runs in this process on Tauri's tokio runtime, so the
//! tray, notifications and popover all show the numbers of one engine; when
//! another engine (the daemon) owns the data directory, the handle attaches to
//! it instead (its statuses and events, commands through its local API; the
//! status's `engine` names it, for the popover's badge) and takes over when it
//! goes away. Actions (kill-tree, clean-up, restart) run here either way, through
//! core's routines, and then ask the engine to rescan.

use crate::error::AppError;
use leakwatch_core::engine::{Command, Engine, EngineHandle, EngineOptions};
use leakwatch_core::notifier::{Notification, Notifier};
use leakwatch_core::owner::Face;
use leakwatch_core::status::Status;
use leakwatch_core::{Config, ConfigSource};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// How often the app tries again to start an engine that could not start (a
/// history being mounted, no process interface yet). Another engine owning the
/// data directory is no failure: the app attaches to it, and takes over the
/// moment it goes away.
const ENGINE_RETRY: Duration = Duration::from_secs(3);

/// Where the app reads and writes.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The config: `LEAKWATCH_CONFIG`'s file, which must exist, else the
    /// platform's, which a new user has not written yet.
    pub config: ConfigSource,
    /// The history database; `None` keeps no history.
    pub store: Option<PathBuf>,
}

impl Paths {
    /// The same places the `leakwatch` CLI uses, so both share config and history.
    pub fn from_env() -> Self {
        Self {
            config: ConfigSource::resolve(None),
            store: Config::data_dir().map(|dir| dir.join("history.sqlite3")),
        }
    }

    /// The config file to read and edit, if there is a place for one.
    pub fn config_file(&self) -> Option<&Path> {
        self.config.path()
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
    /// The last config read from the file while the engine publishes none.
    last_good: Arc<Mutex<Option<Arc<Config>>>>,
}

/// The config the app's actions and notifications use: the one its engine has
/// in force, so that while the file is broken they go on working with the last
/// good config, as the engine does, instead of failing with the file's error
/// (issue 13). Attached to the daemon's engine, it is the daemon's, served by
/// its local API. With none published (no engine yet, one too old to serve
/// its config, or one that started on a broken file and so has no config in
/// force) the file is read, and its last good reading kept the same way. The
/// defaults an engine watches on after a broken start are never used: they
/// lack the user's `protect` list, so the file's error refuses the action.
#[derive(Debug, Clone)]
pub struct ConfigInForce {
    published: watch::Receiver<Option<Arc<Config>>>,
    source: ConfigSource,
    last_good: Arc<Mutex<Option<Arc<Config>>>>,
}

impl ConfigInForce {
    /// The config in force. May read the file: call it on a blocking thread.
    pub fn get(&self) -> Result<Arc<Config>, AppError> {
        if let Some(config) = self.published.borrow().clone() {
            return Ok(config);
        }
        let mut last_good = self.last_good.lock().unwrap_or_else(PoisonError::into_inner);
        match load_config(&self.source) {
            Ok(config) => {
                let config = Arc::new(config);
                *last_good = Some(Arc::clone(&config));
                Ok(config)
            }
            Err(error) => last_good.clone().ok_or(error),
        }
    }
}

impl AppState {
    /// Starts the engine on the current tokio runtime (call inside it, e.g. in
    /// `tauri::async_runtime::block_on`). Never fails: a missing or broken
    /// config, a history that cannot be opened or a probe that cannot start
    /// leave the app running with the reason in the status (and the tray
    /// warning), since a menubar app that exits at login explains nothing.
    pub fn start(paths: Paths, notifier: Arc<dyn Notifier>) -> Self {
        let options = EngineOptions {
            config: paths.config.clone(),
            store_path: paths.store.clone(),
            notifier: Arc::clone(&notifier),
            interval: None,
        };
        let engine = EngineHandle::spawn_retrying(
            move || Engine::new_lenient_as(options.clone(), Face::App),
            ENGINE_RETRY,
        );
        Self { engine, paths, notifier, last_good: Arc::new(Mutex::new(None)) }
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
        let config = self.config_in_force();
        tauri::async_runtime::spawn_blocking(move || {
            // The config in force, as the actions use it. An unreadable one
            // does not hide the outcome: notifications are on by default.
            if config.get().is_ok_and(|c| !c.notify.enabled) {
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

    /// The configuration the app's actions use: the engine's, in force
    /// ([`ConfigInForce`]); cheap to take, and read on a blocking thread.
    pub fn config_in_force(&self) -> ConfigInForce {
        ConfigInForce {
            published: self.engine.config(),
            source: self.paths.config.clone(),
            last_good: Arc::clone(&self.last_good),
        }
    }
}

/// Loads `source`: the defaults when the platform's file does not exist yet, an
/// error when a named one does not.
pub fn load_config(source: &ConfigSource) -> Result<Config, AppError> {
    Ok(source.load_or_default()?)
}
