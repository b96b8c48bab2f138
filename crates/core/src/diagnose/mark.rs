//! Baselines the user marks. "What did it open since I started this load test?"
//! is a question only the user can date, so the running engine keeps, per
//! watched process, the descriptors open at the moment the user marked
//! (`leakwatch explain TARGET --mark`, the app's "Mark baseline", `POST
//! /v1/baseline`), and answers later with what survived since then. The mark
//! lives in the engine because the engine is what keeps reading the process; it
//! ends with the process (a restart starts a new series, and a new baseline).

use super::survivors::{BaselineReason, Survivors};
use crate::model::UnixMillis;
use leakwatch_probe::ProcessId;
use serde::{Deserialize, Serialize};

/// A baseline the user marked on one watched process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Mark {
    /// The status row it was taken for (the target's name, with `[pid]` when
    /// several processes match it).
    pub instance: String,
    /// The configured target.
    pub target: String,
    pub process: ProcessId,
    /// When the descriptor table was read.
    pub at: UnixMillis,
    /// How many descriptors were open then.
    pub descriptors: usize,
}

/// What survived on one process since its mark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinceMark {
    pub mark: Mark,
    /// Always [`BaselineReason::Marked`]: said, so a reader of the JSON need not
    /// know where the numbers came from.
    pub baseline: BaselineReason,
    pub survivors: Survivors,
}

/// Why a baseline could not be marked or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkError {
    /// No configured target (nor status row) of that name.
    #[error("no target `{target}` is watched; watched: {}", if watched.is_empty() { "none".to_owned() } else { watched.join(", ") })]
    UnknownTarget { target: String, watched: Vec<String> },
    /// The target is configured but no process of it is watched now.
    #[error("target `{target}` has no running process to mark (it is down or not polled yet)")]
    NotRunning { target: String },
    /// Nothing was marked on the target's current process.
    #[error(
        "no baseline marked for `{target}` (or its process restarted since): mark one with \
         `leakwatch explain {target} --mark`"
    )]
    NoMark { target: String },
    /// The OS refused to list the descriptors.
    #[error("target `{target}` (pid {pid}): {message}")]
    Probe { target: String, pid: u32, message: String, permission: bool },
    /// A face attached to another engine asked it, and it did not answer (or
    /// refused): its words.
    #[error("the engine that owns the data directory: {message}")]
    Owner { message: String },
}
