//! One module per subcommand. Each returns the text to print, so `main` alone
//! decides how output and errors reach the terminal.

pub(crate) mod fds;
pub(crate) mod ps;
pub(crate) mod tree;

use leakwatch_probe::{ErrorKind, Probe};
use std::time::{Duration, SystemTime};

/// Opens the probe, saying so when this OS has none.
pub(crate) fn probe() -> anyhow::Result<Probe> {
    Ok(Probe::new()?)
}

/// Adds what a user can do about a probe error to its message.
pub(crate) fn explain(error: leakwatch_probe::Error) -> anyhow::Error {
    match error.kind() {
        ErrorKind::PermissionDenied => anyhow::anyhow!(
            "{error}; only its owner (or root) may inspect it: try `sudo leakwatch ...`"
        ),
        _ => error.into(),
    }
}

/// How long ago `started_at` was.
pub(crate) fn age_since(started_at: SystemTime) -> Duration {
    SystemTime::now().duration_since(started_at).unwrap_or_default()
}
