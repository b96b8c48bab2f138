//! Log lines that would otherwise repeat on every tick.
//!
//! A full disk fails every tick's history write, and a broken notifier or a
//! failing tick fails every tick too: at a 100 ms interval that is ten identical
//! warnings a second, which fill the very disk (or journal) that is full and bury
//! the first line that said what went wrong. A [`Throttle`] lets the first
//! occurrence through, then at most one line per period saying how many were
//! held back, and notices when the condition clears.

use std::time::{Duration, Instant};

/// One recurring condition's logging: see the module documentation.
#[derive(Debug, Clone)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held_back: u64,
    failing: bool,
}

impl Throttle {
    /// Lets a line through at most once per `every`.
    pub const fn new(every: Duration) -> Self {
        Self { every, last: None, held_back: 0, failing: false }
    }

    /// The condition occurred again. `Some(n)` when this occurrence should be
    /// logged, `n` being how many were held back since the last line logged;
    /// `None` when it is to be held back.
    pub fn occurred(&mut self) -> Option<u64> {
        self.failing = true;
        match self.last {
            Some(at) if at.elapsed() < self.every => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(Instant::now());
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }

    /// The condition did not occur this time. Returns whether it had been
    /// occurring (so the caller can say it cleared); the next occurrence is
    /// logged at once.
    pub fn cleared(&mut self) -> bool {
        let was = self.failing;
        self.failing = false;
        self.last = None;
        self.held_back = 0;
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_logs_the_first_then_holds_back_until_the_period_or_a_clear() {
        let mut throttle = Throttle::new(Duration::from_secs(3600));
        assert_eq!(throttle.occurred(), Some(0));
        for _ in 0..100 {
            assert_eq!(throttle.occurred(), None);
        }
        assert!(throttle.cleared());
        assert!(!throttle.cleared());
        assert_eq!(throttle.occurred(), Some(0), "a new episode is logged at once");

        let mut quick = Throttle::new(Duration::ZERO);
        assert_eq!(quick.occurred(), Some(0));
        assert_eq!(quick.occurred(), Some(0));
        let mut counting = Throttle::new(Duration::from_millis(50));
        assert_eq!(counting.occurred(), Some(0));
        assert_eq!(counting.occurred(), None);
        assert_eq!(counting.occurred(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(counting.occurred(), Some(2), "says how many were held back");
    }
}
