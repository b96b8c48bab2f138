//! Writing each tick's samples and events to the store, pruning it, and
//! replacing a database that went bad while running.

use super::{Engine, PRUNE_EVERY};
use crate::model::{Event, Sample, UnixMillis};
use crate::store::{SeriesId, Store};

impl Engine {
    pub(super) fn write_history(
        &mut self,
        batch: &[(SeriesId, Sample)],
        events: &[Event],
        now: UnixMillis,
    ) {
        let Some(store) = &self.store else { return };
        let mut result = store.record_samples(batch);
        for event in events {
            result = result.and_then(|()| store.record_event(event));
        }
        let prune_due = self.last_prune.is_none_or(|at| {
            now.saturating_sub(at) >= u64::try_from(PRUNE_EVERY.as_millis()).unwrap_or(0)
        });
        if result.is_ok() && prune_due {
            self.last_prune = Some(now);
            result = store.prune(now).map(drop);
        }
        match result {
            Ok(()) => {
                if self.store_throttle.cleared() {
                    tracing::info!("history is being written again");
                    self.history_error = None;
                }
            }
            Err(error) => {
                // A full disk fails every tick: say it once, then now and then.
                if let Some(held_back) = self.store_throttle.occurred() {
                    if held_back == 0 {
                        tracing::warn!("{error}");
                    } else {
                        tracing::warn!("{error} (still failing: {held_back} more failed writes)");
                    }
                }
                self.history_error = Some(format!("history is not being written: {error}"));
                if error.is_corruption() {
                    self.reopen_store();
                }
            }
        }
    }

    /// A database that went bad while running is moved aside and replaced, and the
    /// open series start afresh in the new one.
    pub(super) fn reopen_store(&mut self) {
        let Some(path) = self.options.store_path.clone() else { return };
        self.store = None;
        match Store::open(&path) {
            Ok(opened) => {
                if let Some(message) = opened.message() {
                    tracing::warn!("{message}");
                }
                self.store = Some(opened.store);
                for instance in self.instances.values_mut() {
                    instance.series = None;
                }
            }
            Err(error) => {
                tracing::error!("history disabled: {error}");
                self.history_error = Some(format!("running without history: {error}"));
            }
        }
    }
}
