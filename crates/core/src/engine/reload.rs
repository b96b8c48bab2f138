//! Reloading the config file: on a command, or when its stamp changes. A bad
//! file keeps the config in force.

use super::Engine;
use crate::model::{Event, EventKind, Severity, UnixMillis, unix_millis};
use std::path::Path;
use std::time::SystemTime;

impl Engine {
    /// Reads the config again. A bad file keeps the config in force and is
    /// reported, once per distinct error, as a `config_error` event.
    pub(super) fn reload(&mut self, forced: bool) {
        let Some(path) = self.config_file.clone() else { return };
        let stamp = file_stamp(&path);
        if !forced && stamp == self.config_stamp {
            return;
        }
        self.config_stamp = stamp;
        let now = unix_millis(SystemTime::now());
        let loaded = self.options.config.load_or_default();
        match loaded {
            Ok(config) => {
                self.config = config;
                self.config_error = None;
                self.next_due.clear();
                self.port_memos.clear();
                self.table_read_at = None;
                tracing::info!("configuration reloaded from {}", path.display());
                let event = self.event(
                    now,
                    "leakwatch",
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
                tracing::warn!("keeping the last good configuration: {message}");
                self.config_error = Some(message.clone());
                let event = self.event(
                    now,
                    "leakwatch",
                    None,
                    EventKind::ConfigError,
                    Severity::Warning,
                    format!("{message} (keeping the last good configuration)"),
                );
                self.pending_events.push(event);
            }
        }
    }

    pub(super) fn event(
        &self,
        at: UnixMillis,
        target: &str,
        pid: Option<u32>,
        kind: EventKind,
        severity: Severity,
        message: String,
    ) -> Event {
        Event {
            at,
            target: target.to_owned(),
            pid,
            kind,
            rule: None,
            severity,
            value: None,
            message,
        }
    }
}

/// The file's modification time and length: a cheap "did it change" stamp.
pub(super) fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
