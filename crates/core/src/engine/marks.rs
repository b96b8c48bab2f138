//! Baselines the user marks on a target's processes (`leakwatch baseline`,
//! the local API's `/v1/baseline`), and what survived since.
//!
//! Both read descriptor tables through `/proc` or libproc, blocking work, so
//! each comes in two halves: what to read is taken from the engine (its
//! instances and marks, no IO: [`Engine::mark_read`], [`Engine::since_read`]),
//! and the reading needs no engine ([`MarkRead::read`], [`SinceRead::read`]).
//! The spawned loop runs the reading on a blocking thread with a probe of its
//! own, so a read that hangs holds up neither the loop nor the ticks; only a
//! mark's result comes back to the engine ([`Engine::keep_marks`]).

use super::Engine;
use crate::diagnose::{Baseline, BaselineReason, Mark, MarkError, SinceMark};
use crate::model::unix_millis;
use leakwatch_probe::{ErrorKind, Probe, ProcessId};
use std::time::SystemTime;

/// The processes a mark reads: each row's name, target and process.
#[derive(Debug)]
pub(super) struct MarkRead {
    target: String,
    processes: Vec<(String, String, ProcessId)>,
    /// Holds the read until the test lets it go: a read that hangs.
    #[cfg(test)]
    gate: Option<std::sync::Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>>,
}

/// The marks a since-mark compares against, with the processes they are on.
#[derive(Debug)]
pub(super) struct SinceRead {
    target: String,
    marks: Vec<(Mark, Baseline)>,
}

/// A mark taken: what the reply says, and the baseline the engine keeps.
pub(super) type Taken = Vec<(Mark, Baseline)>;

impl Engine {
    /// The watched processes of `target` (a configured name, or a row's), with
    /// their row names; an error says why there are none.
    pub(super) fn marked_instances(
        &self,
        target: &str,
    ) -> Result<Vec<(String, ProcessId)>, MarkError> {
        let found: Vec<(String, ProcessId)> = self
            .instances
            .iter()
            .filter(|(name, i)| i.target == target || name.as_str() == target)
            .filter_map(|(name, i)| Some((name.clone(), i.process.as_ref()?.id)))
            .collect();
        if !found.is_empty() {
            return Ok(found);
        }
        let known = self.config.target(target).is_some()
            || self.instances.iter().any(|(name, i)| i.target == target || name == target);
        if known {
            return Err(MarkError::NotRunning { target: target.to_owned() });
        }
        let mut watched: Vec<String> = self.config.watch.iter().map(|t| t.name.clone()).collect();
        if watched.is_empty() {
            watched = self.instances.keys().cloned().collect();
        }
        Err(MarkError::UnknownTarget { target: target.to_owned(), watched })
    }

    /// What marking `target` reads: its watched processes, taken without IO.
    pub(super) fn mark_read(&self, target: &str) -> Result<MarkRead, MarkError> {
        let processes = self
            .marked_instances(target)?
            .into_iter()
            .filter_map(|(name, id)| {
                let owner = self.instances.get(&name)?.target.clone();
                Some((name, owner, id))
            })
            .collect();
        Ok(MarkRead {
            target: target.to_owned(),
            processes,
            #[cfg(test)]
            gate: self.mark_gate.clone(),
        })
    }

    /// Keeps marks read by [`MarkRead::read`] as their rows' baselines,
    /// replacing earlier ones. A row gone since (its process exited and the
    /// row was dropped) keeps nothing.
    pub(super) fn keep_marks(&mut self, taken: Taken) -> Vec<Mark> {
        let mut marks = Vec::new();
        for (mark, baseline) in taken {
            let Some(instance) = self.instances.get_mut(&mark.instance) else { continue };
            tracing::info!(
                "{}: baseline marked on pid {} ({} descriptors)",
                mark.instance,
                mark.process.pid,
                mark.descriptors
            );
            instance.marked = Some((mark.clone(), baseline));
            marks.push(mark);
        }
        marks
    }

    /// What a since-mark on `target` compares: the marks on its current
    /// processes, taken without IO.
    pub(super) fn since_read(&self, target: &str) -> Result<SinceRead, MarkError> {
        let marks = self
            .marked_instances(target)?
            .into_iter()
            .filter_map(|(name, id)| {
                self.instances
                    .get(&name)?
                    .marked
                    .as_ref()
                    .filter(|(mark, _)| mark.process == id)
                    .cloned()
            })
            .collect();
        Ok(SinceRead { target: target.to_owned(), marks })
    }

    /// Reads each process of `target` now and keeps its descriptors as the
    /// marked baseline, replacing an earlier mark. In place: the spawned loop
    /// reads on a blocking thread instead (see the module's docs).
    pub fn mark_baseline(&mut self, target: &str) -> Result<Vec<Mark>, MarkError> {
        let taken = self.mark_read(target)?.read(&mut self.probe)?;
        Ok(self.keep_marks(taken))
    }

    /// What survived since the marks on `target`'s processes, read now (with
    /// socket endpoints, for CLOSE_WAIT). In place, as [`Engine::mark_baseline`].
    pub fn since_mark(&mut self, target: &str) -> Result<Vec<SinceMark>, MarkError> {
        self.since_read(target)?.read(&mut self.probe)
    }
}

fn probe_error(target: &str, pid: u32, e: &leakwatch_probe::Error) -> MarkError {
    MarkError::Probe {
        target: target.to_owned(),
        pid,
        message: e.to_string(),
        permission: e.kind() == ErrorKind::PermissionDenied,
    }
}

impl MarkRead {
    /// The first process's pid, for an error that concerns them all.
    fn first_pid(&self) -> u32 {
        self.processes.first().map_or(0, |(_, _, id)| id.pid)
    }

    /// [`MarkRead::read`] with a probe of its own: for a blocking thread.
    pub(super) fn read_alone(self) -> Result<Taken, MarkError> {
        let mut probe =
            Probe::new().map_err(|e| probe_error(&self.target, self.first_pid(), &e))?;
        self.read(&mut probe)
    }

    /// Reads each process's descriptors now: the marks to keep. A process
    /// gone or replaced since the engine last saw it is left out (the next
    /// tick sees that); none left is [`MarkError::NotRunning`].
    pub(super) fn read(self, probe: &mut Probe) -> Result<Taken, MarkError> {
        #[cfg(test)]
        if let Some(gate) = &self.gate {
            let _ = gate.lock().map(|released| released.recv());
        }
        let mut taken = Vec::new();
        for (instance, target, id) in self.processes {
            let table = match probe.fd_kinds(id.pid) {
                Ok(table) if table.id == id => table,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::NoSuchProcess => continue,
                Err(e) => return Err(probe_error(&self.target, id.pid, &e)),
            };
            let at = unix_millis(SystemTime::now());
            let mark = Mark { instance, target, process: id, at, descriptors: table.fds.len() };
            taken.push((mark, Baseline::new(&table, at, BaselineReason::Marked)));
        }
        if taken.is_empty() {
            return Err(MarkError::NotRunning { target: self.target });
        }
        Ok(taken)
    }
}

impl SinceRead {
    /// [`SinceRead::read`] with a probe of its own: for a blocking thread.
    pub(super) fn read_alone(self) -> Result<Vec<SinceMark>, MarkError> {
        let pid = self.marks.first().map_or(0, |(mark, _)| mark.process.pid);
        let mut probe = Probe::new().map_err(|e| probe_error(&self.target, pid, &e))?;
        self.read(&mut probe)
    }

    /// What survived on each marked process since its mark, read now; no
    /// marked process left is [`MarkError::NoMark`].
    pub(super) fn read(self, probe: &mut Probe) -> Result<Vec<SinceMark>, MarkError> {
        let mut out = Vec::new();
        for (mark, baseline) in self.marks {
            let id = mark.process;
            let table = match probe.fd_table(id.pid) {
                Ok(table) if table.id == id => table,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::NoSuchProcess => continue,
                Err(e) => return Err(probe_error(&self.target, id.pid, &e)),
            };
            let survivors = baseline.survivors(&table, unix_millis(SystemTime::now()));
            out.push(SinceMark { mark, baseline: BaselineReason::Marked, survivors });
        }
        if out.is_empty() {
            return Err(MarkError::NoMark { target: self.target });
        }
        Ok(out)
    }
}
