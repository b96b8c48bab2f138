//! Idle time: when each process last used CPU, so idle multi-GB REPLs (seed 003)
//! can be told from busy workers.

use super::is_dead;
use crate::model::UnixMillis;
use leakwatch_probe::{ProcessId, ProcessInfo};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuMark {
    cpu: Duration,
    since: UnixMillis,
}

/// When each process last used CPU: its CPU time and the scan at which that time
/// last changed. Idle means "CPU time unchanged since", so a process is idle for
/// at least as long as it has been watched without its CPU time advancing; a
/// process seen for the first time has been idle for zero so far. Holds live
/// identities only (each [`observe`](Self::observe) drops the rest).
#[derive(Debug, Clone, Default)]
pub struct IdleTracker {
    marks: HashMap<ProcessId, CpuMark>,
}

impl IdleTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes the CPU time of every live process of `table` at `now`.
    pub fn observe(&mut self, table: &[ProcessInfo], now: UnixMillis) {
        let mut next = HashMap::with_capacity(table.len());
        for process in table.iter().filter(|p| !is_dead(p)) {
            let Some(cpu) = process.cpu_time else { continue };
            let mark = match self.marks.get(&process.id) {
                Some(mark) if mark.cpu == cpu => *mark,
                _ => CpuMark { cpu, since: now },
            };
            next.insert(process.id, mark);
        }
        self.marks = next;
    }

    /// How long `id`'s CPU time has not moved, as of `now`; `None` when it was
    /// never observed (or the OS hides its CPU time).
    pub fn idle_for(&self, id: &ProcessId, now: UnixMillis) -> Option<Duration> {
        self.marks.get(id).map(|m| Duration::from_millis(now.saturating_sub(m.since)))
    }

    /// Number of processes tracked.
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}
