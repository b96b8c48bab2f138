//! The steady leak that Leakwatch exists to catch: a background thread that opens one
//! more descriptor every few milliseconds, as a server leaking a kqueue per request
//! would, so trend and ETA code can be tested against a real, growing FD table.

use crate::fds::{Kind, Table};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The running leakers and everything they opened.
#[derive(Debug, Default)]
pub(crate) struct Leaks {
    table: Arc<Mutex<Table>>,
    errors: Arc<AtomicU64>,
    running: Vec<(Sender<()>, JoinHandle<()>)>,
}

impl Leaks {
    /// `leak KIND[:PATH] EVERY_MS`: starts one more leaker thread.
    pub(crate) fn start(
        &mut self,
        kind: Kind,
        path: Option<PathBuf>,
        every: Duration,
    ) -> Result<(), String> {
        if !kind.supported() {
            return Err(crate::fds::UNSUPPORTED.to_owned());
        }
        if kind.takes_path() != path.is_some() || kind == Kind::UnixListen {
            return Err(format!("cannot leak `{}` that way", kind.word()));
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let table = Arc::clone(&self.table);
        let errors = Arc::clone(&self.errors);
        let handle = thread::Builder::new()
            .name(format!("leak-{}", kind.word()))
            .spawn(move || {
                // Ends when the sender is dropped (`stop-leak`) or sends.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
                    if table.open_one(kind, path.as_deref()).is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .map_err(|e| format!("spawn leak thread: {e}"))?;
        self.running.push((stop, handle));
        Ok(())
    }

    /// `stop-leak`: stops every leaker and waits for them; returns how many leaked
    /// descriptors are held.
    pub(crate) fn stop(&mut self) -> usize {
        for (stop, handle) in self.running.drain(..) {
            drop(stop);
            let _ = handle.join();
        }
        self.held()
    }

    /// `close-leaked`: closes everything leaked so far (leakers keep running).
    pub(crate) fn close_all(&mut self) -> usize {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let before = table.total();
        table.clear();
        before
    }

    pub(crate) fn held(&self) -> usize {
        self.count(None)
    }

    /// Leaked descriptors of one kind, or of all kinds.
    pub(crate) fn count(&self, kind: Option<Kind>) -> usize {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        kind.map_or_else(|| table.total(), |k| table.count(k))
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }
}
