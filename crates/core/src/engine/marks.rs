//! Baselines the user marks on a target's processes (`leakwatch baseline`,
//! the local API's `/v1/baseline`), and what survived since.

use super::Engine;
use crate::diagnose::{Baseline, BaselineReason, Mark, MarkError, SinceMark};
use crate::model::unix_millis;
use leakwatch_probe::{ErrorKind, ProcessId};
use std::time::SystemTime;

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

    pub(super) fn probe_error(target: &str, pid: u32, e: &leakwatch_probe::Error) -> MarkError {
        MarkError::Probe {
            target: target.to_owned(),
            pid,
            message: e.to_string(),
            permission: e.kind() == ErrorKind::PermissionDenied,
        }
    }

    /// Reads each process of `target` now and keeps its descriptors as the
    /// marked baseline, replacing an earlier mark.
    pub fn mark_baseline(&mut self, target: &str) -> Result<Vec<Mark>, MarkError> {
        let mut marks = Vec::new();
        for (name, id) in self.marked_instances(target)? {
            let table = match self.probe.fd_kinds(id.pid) {
                Ok(table) if table.id == id => table,
                // Gone or replaced since the last tick: the next tick sees it.
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::NoSuchProcess => continue,
                Err(e) => return Err(Self::probe_error(target, id.pid, &e)),
            };
            let at = unix_millis(SystemTime::now());
            let Some(instance) = self.instances.get_mut(&name) else { continue };
            let mark = Mark {
                instance: name.clone(),
                target: instance.target.clone(),
                process: id,
                at,
                descriptors: table.fds.len(),
            };
            instance.marked =
                Some((mark.clone(), Baseline::new(&table, at, BaselineReason::Marked)));
            tracing::info!(
                "{name}: baseline marked on pid {} ({} descriptors)",
                id.pid,
                mark.descriptors
            );
            marks.push(mark);
        }
        if marks.is_empty() {
            return Err(MarkError::NotRunning { target: target.to_owned() });
        }
        Ok(marks)
    }

    /// What survived since the marks on `target`'s processes, read now (with
    /// socket endpoints, for CLOSE_WAIT).
    pub fn since_mark(&mut self, target: &str) -> Result<Vec<SinceMark>, MarkError> {
        let mut out = Vec::new();
        for (name, id) in self.marked_instances(target)? {
            let Some((mark, baseline)) = self
                .instances
                .get(&name)
                .and_then(|i| i.marked.as_ref())
                .filter(|(mark, _)| mark.process == id)
            else {
                continue;
            };
            let table = match self.probe.fd_table(id.pid) {
                Ok(table) if table.id == id => table,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::NoSuchProcess => continue,
                Err(e) => return Err(Self::probe_error(target, id.pid, &e)),
            };
            let survivors = baseline.survivors(&table, unix_millis(SystemTime::now()));
            out.push(SinceMark { mark: mark.clone(), baseline: BaselineReason::Marked, survivors });
        }
        if out.is_empty() {
            return Err(MarkError::NoMark { target: target.to_owned() });
        }
        Ok(out)
    }
}
