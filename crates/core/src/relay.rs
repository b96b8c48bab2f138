//! The engine's statuses and events as one sequence, in the engine's order: a
//! tick's events, then its status. The engine publishes them on two channels
//! (a `watch` for the latest status, a `broadcast` for each tick's events), and
//! a face that waits on both with a plain `select!` sometimes takes the status
//! first: an attached `watch` then printed a tick's events with the next one,
//! and the popover listed them twice (issue 13). Every face that forwards both
//! (the local API's stream, the attached handle, the app's webview) reads them
//! through a [`Relay`].

use crate::model::Event;
use crate::status::Status;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};

/// One item of the sequence.
#[derive(Debug, Clone)]
pub enum Update {
    /// The events one tick raised.
    Events(Arc<[Event]>),
    /// The status after a tick: the latest (statuses the reader fell behind on
    /// are skipped; events are not, short of the channel's capacity).
    Status(Arc<Status>),
    /// This many ticks' events were lost (the reader fell further behind than
    /// the channel holds); what to do about it is the reader's to decide.
    Lagged(u64),
}

/// Statuses and events merged in the engine's order.
#[derive(Debug)]
pub struct Relay {
    status: watch::Receiver<Arc<Status>>,
    events: broadcast::Receiver<Arc<[Event]>>,
    queued: VecDeque<Update>,
}

impl Relay {
    /// Follows `status` and `events`, from the next change of either.
    pub fn new(
        status: watch::Receiver<Arc<Status>>,
        events: broadcast::Receiver<Arc<[Event]>>,
    ) -> Self {
        Self { status, events, queued: VecDeque::new() }
    }

    /// The status now, marked seen (a reader that starts with it).
    pub fn current_status(&mut self) -> Arc<Status> {
        self.status.borrow_and_update().clone()
    }

    /// The next item; `None` once the engine's channels are closed. Cancel
    /// safe (for a `select!`): nothing taken from a channel is lost when the
    /// future is dropped.
    pub async fn next(&mut self) -> Option<Update> {
        if let Some(queued) = self.queued.pop_front() {
            return Some(queued);
        }
        // Biased, events first: of a tick's events and its status ready
        // together, the events go out first.
        tokio::select! {
            biased;
            raised = self.events.recv() => match raised {
                Ok(raised) => Some(Update::Events(raised)),
                Err(RecvError::Lagged(missed)) => Some(Update::Lagged(missed)),
                Err(RecvError::Closed) => None,
            },
            changed = self.status.changed() => {
                changed.ok()?;
                // Events sent after the poll above found none, but before
                // this status: still ahead of it.
                loop {
                    match self.events.try_recv() {
                        Ok(raised) => self.queued.push_back(Update::Events(raised)),
                        Err(TryRecvError::Lagged(missed)) => {
                            self.queued.push_back(Update::Lagged(missed));
                        }
                        Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                    }
                }
                let latest = self.status.borrow_and_update().clone();
                self.queued.push_back(Update::Status(latest));
                self.queued.pop_front()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventKind, Severity, Subject};

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

    /// Issue 13: statuses and events were forwarded from two tasks (the app)
    /// or by an unbiased select (the local API), so a tick's status could
    /// overtake its events. The relay gives them in the engine's order, every
    /// time, whether they were sent while it waits or before it looks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ticks_events_come_before_its_status() {
        let (status_tx, status) = watch::channel(Arc::new(Status::default()));
        let (events_tx, events) = broadcast::channel(16);
        let mut relay = Relay::new(status, events);
        for tick in 1..=200 {
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
                Some(Update::Events(e)) => assert_eq!(e[0].message, format!("tick {tick}")),
                other => panic!("tick {tick}: {other:?} before the tick's events"),
            }
            match relay.next().await {
                Some(Update::Status(s)) => assert_eq!(s.tick, tick),
                other => panic!("tick {tick}: {other:?} instead of its status"),
            }
        }
        drop(events_tx);
        assert!(relay.next().await.is_none(), "the relay outlived the engine");
    }

    /// Lost events are said, in their place in the sequence, not skipped.
    #[tokio::test]
    async fn events_lost_to_a_full_channel_are_said() {
        let (_status_tx, status) = watch::channel(Arc::new(Status::default()));
        let (events_tx, events) = broadcast::channel(2);
        let mut relay = Relay::new(status, events);
        for tick in 0..5 {
            events_tx.send(raised(tick)).unwrap();
        }
        assert!(matches!(relay.next().await, Some(Update::Lagged(3))));
        assert!(matches!(relay.next().await, Some(Update::Events(e)) if e[0].at == 3));
    }
}
