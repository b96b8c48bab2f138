//! Reloading the config file: on a command, or when its stamp changes. A bad
//! file keeps the config in force.
//!
//! Reading and parsing the file is blocking work on a file the user names (it
//! may be a FIFO, or on a hung mount), so an engine run by [`Engine::spawn`]
//! only notes that a reload is wanted; the loop parses on a blocking thread
//! ([`load`]) and hands the result back to [`Engine::apply_loaded`] between
//! ticks. An engine ticked by hand reloads in place.
//!
//! Until a reload reads a good file, an engine started on a broken one has no
//! config in force (it watches on the built-in defaults, which faces must not
//! act on: see [`Engine::config_in_force`]).

use super::Engine;
use crate::config::source::ConfigSource;
use crate::config::{Config, ConfigError};
use crate::model::{Event, EventKind, Severity, Subject, UnixMillis};
use std::path::Path;
use std::time::SystemTime;

impl Engine {
    /// Reads the config again when `forced` or when its file changed: in place,
    /// or (see [`Engine::defer_reloads`]) by asking the loop to. A bad file
    /// keeps the config in force and is reported, once per distinct error, as
    /// a `config_error` event. Only an unforced reload looks at the file here,
    /// on the tick's thread; a forced one (a command, applied on the loop's
    /// task) leaves even the `stat` to [`load`].
    pub(super) fn reload(&mut self, forced: bool, now: UnixMillis) {
        let Some(path) = self.config_file.as_deref() else { return };
        if !forced {
            let stamp = file_stamp(path);
            if stamp == self.config_stamp {
                return;
            }
            // Not asked again by the next tick while this change is being read.
            self.config_stamp = stamp;
        }
        if self.defer_reloads {
            self.reload_wanted = true;
            return;
        }
        let loaded = load(&self.options.config);
        self.apply_loaded(loaded, now);
    }

    /// Makes reloads the loop's work: [`Engine::reload`] then only sets a flag
    /// that [`Engine::take_reload`] hands over.
    pub(super) fn defer_reloads(&mut self) {
        self.defer_reloads = true;
    }

    /// Where to read the config from, if a reload is wanted (once per request).
    pub(super) fn take_reload(&mut self) -> Option<ConfigSource> {
        std::mem::take(&mut self.reload_wanted).then(|| self.options.config.clone())
    }

    /// Puts a config read by [`load`] in force, or reports why it cannot be.
    pub(super) fn apply_loaded(&mut self, loaded: Loaded, now: UnixMillis) {
        let Some(path) = self.config_file.clone() else { return };
        self.config_stamp = loaded.stamp;
        match loaded.config {
            Ok(config) => {
                self.config = std::sync::Arc::new(config);
                self.config_read = true;
                self.config_error = None;
                self.next_due.clear();
                self.port_memos.clear();
                self.table_read_at = None;
                tracing::info!("configuration reloaded from {}", path.display());
                let event = self.event(
                    now,
                    Subject::Leakwatch,
                    None,
                    EventKind::ConfigReloaded,
                    Severity::Ok,
                    format!("configuration reloaded from {}", path.display()),
                );
                self.pending_events.push(event);
            }
            Err(error) => {
                let message = error.to_string();
                if self.config_error.as_deref() == Some(message.as_str()) {
                    return;
                }
                self.config_error = Some(message.clone());
                let kept = if self.config_read {
                    "keeping the last good configuration"
                } else {
                    "still no configuration in force: no action runs until the file is fixed"
                };
                tracing::warn!("{kept}: {message}");
                let event = self.event(
                    now,
                    Subject::Leakwatch,
                    None,
                    EventKind::ConfigError,
                    Severity::Warning,
                    format!("{message} ({kept})"),
                );
                self.pending_events.push(event);
            }
        }
    }

    pub(super) fn event(
        &self,
        at: UnixMillis,
        subject: Subject,
        pid: Option<u32>,
        kind: EventKind,
        severity: Severity,
        message: String,
    ) -> Event {
        Event {
            at,
            subject,
            pid,
            kind,
            rule: None,
            severity,
            value: None,
            message,
            notified: false,
        }
    }
}

/// A config read afresh (or why it could not be), with the stamp its file had
/// just before: an edit made while it was read changes the stamp again, and
/// the next tick reads that edit too.
#[derive(Debug)]
pub(super) struct Loaded {
    stamp: Option<(SystemTime, u64)>,
    config: Result<Config, ConfigError>,
}

/// Stamps, reads and parses the config: blocking work (a `stat` and a read of
/// a file the user names), for a blocking thread.
pub(super) fn load(source: &ConfigSource) -> Loaded {
    let stamp = source.path().and_then(file_stamp);
    Loaded { stamp, config: source.load_or_default() }
}

/// The file's modification time and length: a cheap "did it change" stamp.
pub(super) fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
