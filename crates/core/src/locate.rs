//! Finding the process behind a target. A server is found by what stays true when
//! it restarts (its pidfile, its port, its launchd label or systemd unit, its
//! name or command line), never by a pid remembered from last time: the port in
//! particular follows a launcher that double-forks and exits, as in the
//! `bootstrap.py` report in the seeds.

use crate::config::Selector;
use crate::service;
use leakwatch_probe::{ErrorKind, FdKind, Probe, ProcessId, ProcessInfo};
use std::time::{Duration, Instant};

/// Why a target has no process now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotFound {
    #[error("no process matches")]
    NoMatch,
    #[error("pidfile {0}: {1}")]
    Pidfile(String, String),
    #[error("nothing listens on port {0}")]
    PortFree(u16),
    #[error("{0}")]
    Service(String),
}

/// Remembers, per port target, who held the port last, so that the common case
/// (the same process still holds it) costs one descriptor table, and a fruitless
/// search of every process is not repeated on every tick.
#[derive(Debug, Default)]
pub struct PortMemo {
    owners: Vec<ProcessId>,
    /// The listening sockets' inodes, where the probe can tell them.
    inodes: Vec<u64>,
    last_search: Option<Instant>,
    last_verified: Option<Instant>,
}

/// How often a port's known, still-living owners are confirmed to hold it. Between
/// confirmations an owner that is still the same process (same start time) is
/// taken at its word: a restart changes the identity and is seen at once, while a
/// process that closes its listener and lives on is seen within this time.
const PORT_VERIFY_EVERY: Duration = Duration::from_secs(10);
/// How long after a fruitless search for a port's owner the next one may run.
const PORT_SEARCH_BACKOFF: Duration = Duration::from_secs(10);

/// The pids that `selector` selects now, lowest first. `table` is a recent process
/// table: name and argv selectors match against it, while pidfile, port and
/// service-manager selectors ask afresh and need not find their pid in it (the
/// table may be a few seconds old, and a restarted server is new).
pub fn locate(
    selector: &Selector,
    table: &[ProcessInfo],
    probe: &Probe,
    memo: &mut PortMemo,
) -> Result<Vec<u32>, NotFound> {
    let alive = |pid: u32| probe.identity(pid).is_ok();
    let mut found: Vec<u32> = match selector {
        Selector::Pidfile(path) => {
            let pid = read_pidfile(path)
                .map_err(|why| NotFound::Pidfile(path.display().to_string(), why))?;
            vec![pid].into_iter().filter(|pid| alive(*pid)).collect()
        }
        Selector::Port(port) => {
            let owners = port_owners(*port, table, probe, memo);
            if owners.is_empty() {
                return Err(NotFound::PortFree(*port));
            }
            owners
        }
        Selector::Launchd(label) => {
            let pid = service::launchd_pid(label).map_err(|e| NotFound::Service(e.to_string()))?;
            pid.into_iter().filter(|pid| alive(*pid)).collect()
        }
        Selector::Systemd(unit) => {
            let pid =
                service::systemd_main_pid(unit).map_err(|e| NotFound::Service(e.to_string()))?;
            pid.into_iter().filter(|pid| alive(*pid)).collect()
        }
        Selector::Process(re) => table
            .iter()
            .filter(|p| !p.is_kernel_thread && re.is_match(&p.name))
            .map(|p| p.id.pid)
            .collect(),
        Selector::Argv(re) => table
            .iter()
            .filter(|p| !p.is_kernel_thread && !p.argv.is_empty() && re.is_match(&p.argv.join(" ")))
            .map(|p| p.id.pid)
            .collect(),
    };
    found.retain(|pid| *pid != std::process::id());
    found.sort_unstable();
    found.dedup();
    if found.is_empty() { Err(NotFound::NoMatch) } else { Ok(found) }
}

/// The most a pidfile may hold: a pid and some whitespace. Anything longer is
/// not a pidfile, and is neither read further nor echoed whole.
const PIDFILE_MAX_BYTES: u64 = 64;
/// How much of a pidfile that does not hold a pid an error quotes.
const PIDFILE_QUOTE_CHARS: usize = 16;

/// Reads the pid in `path`, never blocking and never reading more than
/// [`PIDFILE_MAX_BYTES`]: opened non-blocking (a FIFO has no writer to wait for),
/// refused unless a regular file (`/dev/zero` never ends, a FIFO never answers),
/// refused if longer than a pid. The error says why, quoting a few characters.
fn read_pidfile(path: &std::path::Path) -> Result<u32, String> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits());
    }
    let file = options.open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    if meta.len() > PIDFILE_MAX_BYTES {
        return Err(format!(
            "{} bytes, too long for a pidfile (at most {PIDFILE_MAX_BYTES})",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    file.take(PIDFILE_MAX_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    text.parse().map_err(|_| {
        let quoted: String = text.chars().take(PIDFILE_QUOTE_CHARS).collect();
        let more = if text.chars().count() > PIDFILE_QUOTE_CHARS { "..." } else { "" };
        format!("not a pid: {}{more}", crate::escape::escape(&quoted))
    })
}

/// Pids holding a listening TCP socket on `port`: the remembered owners if they
/// still hold it, else a search over the table (at most every
/// [`PORT_SEARCH_BACKOFF`]). Processes that share one inherited listener (a
/// pre-forking server) are all owners.
///
/// Where the probe offers socket inodes (Linux) this is done the way `ss -p` does
/// it: the port's listening inodes are read once per search, and an owner is
/// confirmed by still holding one of them, which costs a readlink pass and no
/// read of the kernel's TCP tables. Elsewhere owners are confirmed by their
/// sockets' endpoints. Either way at most every [`PORT_VERIFY_EVERY`].
fn port_owners(port: u16, table: &[ProcessInfo], probe: &Probe, memo: &mut PortMemo) -> Vec<u32> {
    let pids = |owners: &[ProcessId]| owners.iter().map(|id| id.pid).collect::<Vec<u32>>();
    let alive = !memo.owners.is_empty()
        && memo.owners.iter().all(|id| probe.identity(id.pid).is_ok_and(|now| now == *id));
    if alive {
        if memo.last_verified.is_some_and(|at| at.elapsed() < PORT_VERIFY_EVERY) {
            return pids(&memo.owners);
        }
        let confirmed = if memo.inodes.is_empty() {
            memo.owners.iter().all(|id| listens_on(probe, id.pid, port))
        } else {
            memo.owners.iter().all(|id| holds_any(probe, id.pid, &memo.inodes))
        };
        if confirmed {
            memo.last_verified = Some(Instant::now());
            return pids(&memo.owners);
        }
    }
    memo.owners.clear();
    memo.inodes.clear();
    if memo.last_search.is_some_and(|at| at.elapsed() < PORT_SEARCH_BACKOFF) {
        return Vec::new();
    }
    memo.last_search = Some(Instant::now());
    let own = std::process::id();
    let candidates = table.iter().filter(|p| !p.is_kernel_thread && p.id.pid != own);
    match probe.listening_inodes(port) {
        Ok(inodes) if inodes.is_empty() => {}
        Ok(inodes) => {
            memo.owners =
                candidates.filter(|p| holds_any(probe, p.id.pid, &inodes)).map(|p| p.id).collect();
            memo.inodes = inodes;
        }
        Err(_) => {
            memo.owners =
                candidates.filter(|p| listens_on(probe, p.id.pid, port)).map(|p| p.id).collect();
        }
    }
    if !memo.owners.is_empty() {
        memo.last_search = None;
        memo.last_verified = Some(Instant::now());
    }
    pids(&memo.owners)
}

/// Whether `pid` holds a socket with one of `inodes`.
fn holds_any(probe: &Probe, pid: u32, inodes: &[u64]) -> bool {
    probe.socket_inodes(pid).is_ok_and(|held| held.iter().any(|inode| inodes.contains(inode)))
}

/// Whether `pid` holds a TCP socket listening on `port`.
pub fn listens_on(probe: &Probe, pid: u32, port: u16) -> bool {
    match probe.fd_table(pid) {
        Ok(table) => table.fds.iter().any(|fd| {
            fd.kind == FdKind::Tcp
                && fd.endpoint.as_deref().is_some_and(|e| listening_port(e) == Some(port))
        }),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => false,
        Err(_) => false,
    }
}

/// The local port of a `LISTEN` endpoint as the probe renders it:
/// `127.0.0.1:8080 (LISTEN)` or `[::]:8080 (LISTEN)`.
pub fn listening_port(endpoint: &str) -> Option<u16> {
    let local = endpoint.strip_suffix(" (LISTEN)")?;
    if local.contains(" -> ") {
        return None;
    }
    local.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_endpoints_parse() {
        assert_eq!(listening_port("127.0.0.1:8787 (LISTEN)"), Some(8787));
        assert_eq!(listening_port("[::]:443 (LISTEN)"), Some(443));
        assert_eq!(listening_port("127.0.0.1:5 -> 127.0.0.1:6 (ESTABLISHED)"), None);
        assert_eq!(listening_port("127.0.0.1:53"), None);
    }
}
