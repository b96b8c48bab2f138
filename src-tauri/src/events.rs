//! Pushes the engine's output to the webview and the tray: `status` (a
//! [`Status`](leakwatch_core::status::Status)) after every tick and
//! `leakwatch-event` (an [`Event`](leakwatch_core::model::Event)) per event the
//! engine raised, each once (the engine publishes every tick's events whole), so
//! the popover never polls. With the popover closed the emits reach no webview
//! and cost next to nothing.
//!
//! Both go out from one task, in the engine's order: a tick's events before its
//! status. Two tasks (one per channel) let a status overtake its own events, and
//! the popover, which clears the events it was sent when a status arrives (the
//! status lists them), then showed them twice (issue 13).

use crate::state::AppState;
use leakwatch_core::model::Event;
use leakwatch_core::status::Status;
use std::collections::VecDeque;
use std::sync::Arc;
use tauri::{AppHandle, Emitter, Manager, Runtime};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};

/// The event carrying the status after each tick.
pub const STATUS: &str = "status";
/// The event carrying each engine event.
pub const EVENT: &str = "leakwatch-event";

/// Starts forwarding (call once, after `AppState` is managed).
pub fn forward<R: Runtime>(app: &AppHandle<R>) {
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    let mut relay = Relay::new(state.engine().status(), state.engine().events());
    let handle = app.clone();
    tauri::async_runtime::spawn(async move {
        while let Some(next) = relay.next().await {
            match next {
                Output::Events(raised) => {
                    for event in raised.iter() {
                        if let Err(e) = handle.emit(EVENT, event) {
                            tracing::debug!("event not sent to the webview: {e}");
                        }
                    }
                }
                Output::Status(latest) => {
                    if let Err(e) = handle.emit(STATUS, &*latest) {
                        tracing::debug!("status not sent to the webview: {e}");
                    }
                    let tray = handle.clone();
                    // The tray's update waits for the main thread: not on an async worker.
                    let shown = tauri::async_runtime::spawn_blocking(move || {
                        crate::tray::show(&tray, &latest);
                    });
                    if let Err(e) = shown.await {
                        tracing::warn!("the tray update failed: {e}");
                    }
                }
            }
        }
    });
}

/// What the engine sent, one item at a time.
#[derive(Debug, Clone)]
pub enum Output {
    /// The events one tick raised.
    Events(Arc<[Event]>),
    /// The status after a tick (the latest: statuses the relay fell behind
    /// on are skipped, events never are, short of the channel's capacity).
    Status(Arc<Status>),
}

/// The engine's statuses and events merged into one sequence in the engine's
/// order: a tick's events, then its status.
#[derive(Debug)]
pub struct Relay {
    status: watch::Receiver<Arc<Status>>,
    events: broadcast::Receiver<Arc<[Event]>>,
    queued: VecDeque<Output>,
}

impl Relay {
    pub fn new(
        status: watch::Receiver<Arc<Status>>,
        events: broadcast::Receiver<Arc<[Event]>>,
    ) -> Self {
        Self { status, events, queued: VecDeque::new() }
    }

    /// The next item; `None` once the engine's handle is gone.
    pub async fn next(&mut self) -> Option<Output> {
        if let Some(queued) = self.queued.pop_front() {
            return Some(queued);
        }
        loop {
            // Biased, events first: of a tick's events and its status ready
            // together, the events go out first.
            tokio::select! {
                biased;
                raised = self.events.recv() => match raised {
                    Ok(raised) => return Some(Output::Events(raised)),
                    Err(RecvError::Lagged(missed)) => lagged(missed),
                    Err(RecvError::Closed) => return None,
                },
                changed = self.status.changed() => {
                    changed.ok()?;
                    // Events sent after the poll above found none, but before
                    // this status: still ahead of it.
                    loop {
                        match self.events.try_recv() {
                            Ok(raised) => self.queued.push_back(Output::Events(raised)),
                            Err(TryRecvError::Lagged(missed)) => lagged(missed),
                            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                        }
                    }
                    let latest = self.status.borrow_and_update().clone();
                    self.queued.push_back(Output::Status(latest));
                    return self.queued.pop_front();
                }
            }
        }
    }
}

fn lagged(missed: u64) {
    tracing::debug!("{missed} ticks' events not forwarded (the UI was too slow)");
}

#[cfg(test)]
mod tests {
    use super::*;
    use leakwatch_core::model::{EventKind, Severity, Subject};

    fn raised(tick: u64) -> Arc<[Event]> {
        Arc::from([Event {
            at: tick,
            subject: Subject::Leakwatch,
            pid: None,
            kind: EventKind::ConfigReloaded,
            rule: None,
            severity: Severity::Ok,
            value: None,
            message: format!("tick {tick}"),
            notified: false,
        }])
    }

    /// Issue 13: statuses and events went to the webview from two tasks, so a
    /// tick's status could overtake its events, and the popover showed those
    /// events twice (in the status's list, and again as they arrived). One
    /// relay gives them in the engine's order, every time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ticks_events_are_forwarded_before_its_status() {
        let (status_tx, status) = watch::channel(Arc::new(Status::default()));
        let (events_tx, events) = broadcast::channel(16);
        let mut relay = Relay::new(status, events);
        for tick in 1..=200 {
            // Sent as the engine sends them, from another thread while the
            // relay waits, or both before it looks.
            let send = {
                let (status_tx, events_tx) = (status_tx.clone(), events_tx.clone());
                move || {
                    events_tx.send(raised(tick)).unwrap();
                    status_tx.send(Arc::new(Status { tick, ..Status::default() })).unwrap();
                }
            };
            if tick % 2 == 0 {
                send();
            } else {
                drop(tokio::task::spawn_blocking(send));
            }
            match relay.next().await {
                Some(Output::Events(e)) => assert_eq!(e[0].message, format!("tick {tick}")),
                other => panic!("tick {tick}: {other:?} before the tick's events"),
            }
            match relay.next().await {
                Some(Output::Status(s)) => assert_eq!(s.tick, tick),
                other => panic!("tick {tick}: {other:?} instead of its status"),
            }
        }
        drop(events_tx);
        assert!(relay.next().await.is_none(), "the relay outlived the engine");
    }
}
