//! What a face asks of the engine between ticks: the commands the engine's
//! loop applies, the local API serves (`POST /v1/rescan`, ...) and an attached
//! face forwards to the owner. They live below the engine, the API and the
//! attach code, which all speak them, so that none of those depends on another
//! for the type.

use crate::diagnose::{Mark, MarkError, SinceMark};
use std::time::Duration;
use tokio::sync::oneshot;

/// Something for the engine to do between ticks.
#[derive(Debug)]
pub enum Command {
    /// Read the config file again (SIGHUP, or the app's settings were saved).
    Reload,
    /// Silence notifications for this long; `None` resumes them.
    PauseAlerts(Option<Duration>),
    /// Read the process table and poll every target now, not at their next
    /// turn: an action (a restart, an orphan clean-up) changed the processes, and
    /// the faces should show it at once.
    Rescan,
    /// Mark a baseline on every process of the target now (see
    /// [`crate::diagnose::mark`]); the reply says what was marked.
    MarkBaseline { target: String, reply: oneshot::Sender<Result<Vec<Mark>, MarkError>> },
    /// What survived on the target's processes since their marks, read now.
    SinceMark { target: String, reply: oneshot::Sender<Result<Vec<SinceMark>, MarkError>> },
}

impl Command {
    /// Whether the spawned loop ticks at once after it, rather than on its beat.
    pub(crate) const fn ticks_now(&self) -> bool {
        matches!(self, Command::Reload | Command::Rescan)
    }

    /// Whether someone waits for its reply: applied as soon as no tick runs,
    /// rather than before the next one.
    pub(crate) const fn awaited(&self) -> bool {
        matches!(self, Command::MarkBaseline { .. } | Command::SinceMark { .. })
    }
}
