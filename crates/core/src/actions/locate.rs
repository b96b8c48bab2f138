//! Finding the process behind a target. A server is found by what stays true when
//! it restarts (its pidfile, its port, its launchd label or systemd unit, its
//! name or command line), never by a pid remembered from last time: the port in
//! particular follows a launcher that double-forks and exits, as in the
//! `bootstrap.py` report in the seeds.

use crate::actions::service;
use crate::config::Selector;
use crate::tree::ProcessTree;
use leakwatch_probe::{ErrorKind, FdKind, Probe, ProcessId, ProcessInfo};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Why a target has no process now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotFound {
    #[error("no process matches")]
    NoMatch,
    #[error("pidfile {0}: {1}")]
    Pidfile(String, String),
    /// The pidfile holds a pid no process has now: the server died (or was
    /// stopped) and left its pidfile behind.
    #[error("pidfile {0} names pid {1}, not running")]
    PidfileStale(String, u32),
    /// The read did not finish within [`PIDFILE_READ_DEADLINE`]: the file is on a
    /// mount whose server is gone, most likely, where even a non-blocking open
    /// waits in the kernel. Whether the target runs is unknown, not "no".
    #[error("pidfile read timed out: {0}; a hung mount?")]
    PidfileTimedOut(String),
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
            let pid = match PIDFILE_READS.read(path) {
                Some(Ok(pid)) => pid,
                Some(Err(why)) => return Err(NotFound::Pidfile(path.display().to_string(), why)),
                None => return Err(NotFound::PidfileTimedOut(path.display().to_string())),
            };
            if !alive(pid) {
                return Err(NotFound::PidfileStale(path.display().to_string(), pid));
            }
            vec![pid]
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

/// How long a pidfile read is waited for, counted from its start: by the
/// caller that starts it, and by any that ask for the same file meanwhile.
/// `O_NONBLOCK` does not help on a network mount whose server is gone: `open`
/// and `read` wait in the kernel regardless, for minutes or for ever.
pub const PIDFILE_READ_DEADLINE: Duration = Duration::from_secs(1);

/// The pidfile reads of this process, one outstanding per path at most.
static PIDFILE_READS: std::sync::LazyLock<BoundedReads<RawRead>> =
    std::sync::LazyLock::new(|| BoundedReads::new(PIDFILE_READER, PIDFILE_READ_DEADLINE));

type ReadOutcome = Result<u32, String>;
/// The read that may hang: [`read_pidfile`] outside tests.
type RawRead = fn(&Path) -> ReadOutcome;

#[cfg(not(test))]
const PIDFILE_READER: RawRead = read_pidfile;
/// In the crate's tests, a pidfile whose name ends in `.hung` stands for one on
/// a dead network mount: its read never returns.
#[cfg(test)]
const PIDFILE_READER: RawRead = |path| {
    if path.extension().is_some_and(|e| e == "hung") {
        loop {
            std::thread::park();
        }
    }
    read_pidfile(path)
};

/// Reader threads at most: as many pidfiles can hang at once (one thread
/// each, stuck in the kernel) before reads of the others wait for a thread,
/// and time out meanwhile.
const MAX_READERS: usize = 4;

/// Reads that may hang (a pidfile on a dead NFS or SMB server) made by a small
/// pool of long-lived reader threads that nobody waits for past a deadline, so
/// that neither a tick nor the engine's shutdown can be held up by the kernel.
/// A thread is started only when none is idle, and then kept for later reads:
/// ticks reuse the same threads rather than start one per read. A read still
/// stuck when the next tick asks is not started again: the later tick looks at
/// the same result slot, so a dead mount holds one thread per path, and the
/// read's result, whenever it comes, is what the next tick sees.
struct BoundedReads<R> {
    reader: Arc<R>,
    deadline: Duration,
    /// Reads started and not yet seen finished, by path.
    pending: Mutex<HashMap<PathBuf, Arc<ReadSlot>>>,
    pool: Arc<Pool>,
}

/// Where a reader thread leaves a read's outcome.
struct ReadSlot {
    outcome: Mutex<Option<ReadOutcome>>,
    done: Condvar,
    /// When the read stops being waited for: its start plus the deadline. A
    /// caller that joins a read another started waits only for what is left,
    /// so two callers at once both see a healthy read's outcome, while a read
    /// stuck since an earlier tick (its deadline long past) costs nothing.
    give_up_at: Instant,
}

impl ReadSlot {
    fn new(give_up_at: Instant) -> Self {
        ReadSlot { outcome: Mutex::default(), done: Condvar::new(), give_up_at }
    }
}

/// A read for a reader thread, and where its outcome goes.
struct Job {
    read: Box<dyn FnOnce() -> ReadOutcome + Send>,
    slot: Arc<ReadSlot>,
}

/// The reader threads and the reads waiting for one.
#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
    ready: Condvar,
}

#[derive(Default)]
struct PoolState {
    jobs: std::collections::VecDeque<Job>,
    /// Threads in a read (or stuck in one).
    busy: usize,
    /// Threads started and not ended (busy, stuck or waiting).
    threads: usize,
    /// Threads ever started: what a test checks stays flat.
    #[cfg(test)]
    started: usize,
    /// Set when the reads are dropped: idle threads end.
    closed: bool,
}

impl Pool {
    /// Queues `job`, starting a thread if none is idle and fewer than
    /// [`MAX_READERS`] run. Fails only if a thread was needed, none could be
    /// started and none runs to take the job later.
    fn run(self: &Arc<Self>, job: Job) -> Result<(), String> {
        let mut state = lock(&self.state);
        state.jobs.push_back(job);
        // A thread that has finished its read counts as free before the read's
        // outcome is out, so the next read never starts a thread for nothing.
        if state.jobs.len() > state.threads - state.busy && state.threads < MAX_READERS {
            let pool = Arc::clone(self);
            match std::thread::Builder::new()
                .name("pidfile-read".to_owned())
                .spawn(move || pool.serve())
            {
                Ok(_) => {
                    state.threads += 1;
                    #[cfg(test)]
                    {
                        state.started += 1;
                    }
                }
                Err(e) if state.threads == state.busy => {
                    state.jobs.pop_back();
                    return Err(format!("cannot start a thread to read it: {e}"));
                }
                // The threads there take it when one is free.
                Err(_) => {}
            }
        }
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// A reader thread: runs jobs until the pool is closed and none is left.
    fn serve(&self) {
        let mut state = lock(&self.state);
        loop {
            if let Some(job) = state.jobs.pop_front() {
                state.busy += 1;
                drop(state);
                // A reader that panicked would otherwise leave the path "timed
                // out" for good (and end its thread).
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job.read))
                    .unwrap_or_else(|_| Err("reading it failed (a panic)".to_owned()));
                lock(&self.state).busy -= 1;
                *lock(&job.slot.outcome) = Some(outcome);
                job.slot.done.notify_all();
                state = lock(&self.state);
                continue;
            }
            if state.closed {
                state.threads -= 1;
                return;
            }
            state = self.ready.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A poisoned lock only means a reader panicked mid-way; the data (an outcome
/// or a map of slots) is still whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<R> Drop for BoundedReads<R> {
    /// Lets idle reader threads end; a stuck one ends when its read returns.
    /// Never waits for any of them.
    fn drop(&mut self) {
        lock(&self.pool.state).closed = true;
        self.pool.ready.notify_all();
    }
}

impl<R> BoundedReads<R>
where
    R: Fn(&Path) -> ReadOutcome + Send + Sync + 'static,
{
    fn new(reader: R, deadline: Duration) -> Self {
        BoundedReads {
            reader: Arc::new(reader),
            deadline,
            pending: Mutex::default(),
            pool: Arc::default(),
        }
    }

    /// Reads `path`, or `None` if the read did not finish in time. A read is
    /// waited for until its deadline, counted from when it was started, by
    /// whoever asks: the caller that starts it and any that ask meanwhile (two
    /// restart plans at once). A read left over from an earlier call, past its
    /// deadline, is not waited for again (a dead mount would otherwise cost
    /// every tick the whole deadline), only looked at.
    fn read(&self, path: &Path) -> Option<ReadOutcome> {
        let slot = {
            let mut pending = lock(&self.pending);
            match pending.get(path) {
                Some(slot) => Arc::clone(slot),
                None => {
                    let slot = Arc::new(ReadSlot::new(Instant::now() + self.deadline));
                    let (reader, owned) = (Arc::clone(&self.reader), path.to_owned());
                    let job =
                        Job { read: Box::new(move || reader(&owned)), slot: Arc::clone(&slot) };
                    if let Err(why) = self.pool.run(job) {
                        return Some(Err(why));
                    }
                    pending.insert(path.to_owned(), Arc::clone(&slot));
                    slot
                }
            }
        };
        let wait = slot.give_up_at.saturating_duration_since(Instant::now());
        let outcome = {
            let guard = lock(&slot.outcome);
            let (guard, _) = slot
                .done
                .wait_timeout_while(guard, wait, |outcome| outcome.is_none())
                .unwrap_or_else(PoisonError::into_inner);
            guard.clone()?
        };
        let mut pending = lock(&self.pending);
        if pending.get(path).is_some_and(|now| Arc::ptr_eq(now, &slot)) {
            pending.remove(path);
        }
        Some(outcome)
    }

    /// Whether a read of `path` has been started and has not finished.
    #[cfg(test)]
    fn is_reading(&self, path: &Path) -> bool {
        lock(&self.pending).get(path).is_some_and(|slot| lock(&slot.outcome).is_none())
    }

    /// Reader threads ever started.
    #[cfg(test)]
    fn threads_started(&self) -> usize {
        lock(&self.pool.state).started
    }
}

/// Reads the pid in `path`, never blocking and never reading more than
/// [`PIDFILE_MAX_BYTES`]: opened non-blocking (a FIFO has no writer to wait for),
/// refused unless a regular file (`/dev/zero` never ends, a FIFO never answers),
/// refused if longer than a pid. The error says why, quoting a few characters.
fn read_pidfile(path: &Path) -> ReadOutcome {
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

/// The binaries of Leakwatch's faces (the CLI and daemon, the app). A process
/// running one of them is Leakwatch's own, wherever it was started from.
pub const LEAKWATCH_BINARIES: &[&str] = &["leakwatch", "leakwatch-app"];

/// Leakwatch's own processes in `table`: `own` (the calling process), every
/// process running a Leakwatch binary (another face: the app beside the daemon
/// it attached to), and all their descendants (the app's WebKit processes, a
/// helper the CLI started). Automatic mode leaves them out: a watchdog that
/// lists itself among the top descriptor holders points the user at the wrong
/// process (issue 12).
pub fn leakwatch_processes(table: &[ProcessInfo], own: u32) -> HashSet<u32> {
    let basename = |path: &str| path.rsplit('/').next().unwrap_or(path).to_owned();
    let is_leakwatch = |p: &ProcessInfo| {
        p.id.pid == own
            || [
                Some(p.name.clone()),
                p.exe.as_deref().map(basename),
                p.argv.first().map(|a| basename(a)),
            ]
            .into_iter()
            .flatten()
            .any(|name| LEAKWATCH_BINARIES.contains(&name.as_str()))
    };
    let tree = ProcessTree::new(table);
    let mut mine = HashSet::new();
    for root in table.iter().filter(|p| !p.is_kernel_thread && is_leakwatch(p)) {
        if mine.contains(&root.id.pid) {
            continue;
        }
        mine.extend(tree.subtree_ids(root.id.pid).into_iter().map(|id| id.pid));
        mine.insert(root.id.pid);
    }
    mine
}

/// What automatic mode (no `[[watch]]` in the config) watches: the `count`
/// processes of `uid` holding the most descriptors (`fds` counts them; `None`
/// when not permitted), busiest first, pid breaking ties. Kernel threads and
/// Leakwatch's own processes ([`leakwatch_processes`]) are left out.
pub fn automatic_targets(
    table: &[ProcessInfo],
    own: u32,
    uid: u32,
    count: usize,
    fds: impl Fn(u32) -> Option<usize>,
) -> Vec<u32> {
    let mine = leakwatch_processes(table, own);
    let mut counts: Vec<(usize, u32)> = table
        .iter()
        .filter(|p| p.uid == uid && !p.is_kernel_thread && !mine.contains(&p.id.pid))
        .filter_map(|p| Some((fds(p.id.pid)?, p.id.pid)))
        .collect();
    counts.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    counts.into_iter().take(count).map(|(_, pid)| pid).collect()
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

    /// A reader standing in for `open`+`read` on a dead NFS server: it blocks
    /// until the test lets it go, and counts how often it was started.
    fn stuck_reader() -> (
        BoundedReads<impl Fn(&Path) -> ReadOutcome + Send + Sync + 'static>,
        Arc<std::sync::atomic::AtomicUsize>,
        std::sync::mpsc::Sender<u32>,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let started = Arc::new(AtomicUsize::new(0));
        let (release, gate) = std::sync::mpsc::channel::<u32>();
        let gate = Mutex::new(gate);
        let count = Arc::clone(&started);
        let reader = move |_: &Path| {
            count.fetch_add(1, Ordering::SeqCst);
            lock(&gate).recv().map_err(|e| e.to_string())
        };
        (BoundedReads::new(reader, Duration::from_millis(50)), started, release)
    }

    /// Regression (issue 10, item 6): a pidfile on a hung network mount blocked
    /// the tick, and so shutdown, however the file was opened.
    #[test]
    fn hung_pidfile_read_times_out_and_is_not_restarted_while_stuck() {
        use std::sync::atomic::Ordering;
        let (reads, started, release) = stuck_reader();
        let path = Path::new("/net/dead/app.pid");
        // The reader cannot return before `release` is sent, so getting here at
        // all shows the read was abandoned, not waited for.
        let at = Instant::now();
        assert_eq!(reads.read(path), None);
        assert!(at.elapsed() >= Duration::from_millis(50), "gave up before the deadline");
        assert_eq!(reads.read(path), None, "a second tick saw an outcome of a stuck read");
        assert_eq!(reads.read(path), None);
        assert_eq!(started.load(Ordering::SeqCst), 1, "a stuck read was started again");
        assert!(reads.is_reading(path));
        // Another path is not held up by the stuck one.
        let other = Path::new("/net/dead/other.pid");
        assert_eq!(reads.read(other), None);
        assert_eq!(started.load(Ordering::SeqCst), 2);
        let _ = release.send(41);
        let _ = release.send(42);
    }

    /// Regression (issue 10): each pidfile read of each tick started a thread.
    /// Over many ticks, with one pidfile hung for good and one answering, the
    /// threads stay two: the stuck one and one reused for every other read.
    #[test]
    fn pidfile_reader_threads_stay_flat_over_many_ticks_with_a_hung_fifo() {
        let reads = BoundedReads::new(
            |path: &Path| -> ReadOutcome {
                if path.ends_with("hung.pid") {
                    loop {
                        std::thread::park();
                    }
                }
                Ok(7)
            },
            Duration::from_secs(5),
        );
        let (hung, fine) = (Path::new("/net/dead/hung.pid"), Path::new("/run/fine.pid"));
        let mut answered = 0;
        for tick in 0..500 {
            assert_eq!(reads.read(hung), None, "tick {tick}");
            // A loaded machine may be slower than the deadline: the late
            // outcome is the next tick's.
            if let Some(outcome) = reads.read(fine) {
                assert_eq!(outcome, Ok(7));
                answered += 1;
            }
            assert!(reads.threads_started() <= 2, "tick {tick}: {}", reads.threads_started());
        }
        assert!(answered >= 250, "only {answered} of 500 reads answered");
        assert_eq!(reads.threads_started(), 2);
        // Dropping the reads (the engine's shutdown) does not wait for the
        // stuck thread: getting past this line is the test.
        drop(reads);
    }

    /// Regression: two restart plans of one target at once said "nothing
    /// running to stop". The second caller found the first one's read pending
    /// and waited `Duration::ZERO` for it, so it saw "timed out" although the
    /// read was healthy and finished moments later. A caller joining a read now
    /// waits for what is left of that read's deadline.
    #[test]
    fn concurrent_reads_of_a_slow_pidfile_both_get_its_pid() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let started = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&started);
        // Slow, not hung: well inside a deadline no loaded machine reaches,
        // and long enough that the second caller surely joins the first read.
        let reads = Arc::new(BoundedReads::new(
            move |_: &Path| -> ReadOutcome {
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(300));
                Ok(4321)
            },
            Duration::from_secs(60),
        ));
        let path = Path::new("/run/slow/app.pid");
        let first = {
            let reads = Arc::clone(&reads);
            std::thread::spawn(move || reads.read(path))
        };
        let give_up = Instant::now() + Duration::from_secs(60);
        while !reads.is_reading(path) {
            assert!(Instant::now() < give_up, "the first read never started");
            std::thread::yield_now();
        }
        let second = {
            let reads = Arc::clone(&reads);
            std::thread::spawn(move || reads.read(path))
        };
        assert_eq!(second.join().unwrap(), Some(Ok(4321)), "the joining caller");
        assert_eq!(first.join().unwrap(), Some(Ok(4321)), "the starting caller");
        assert_eq!(started.load(Ordering::SeqCst), 1, "the second caller read again");
    }

    /// A reader that panics is an error for that tick, not a read stuck for good.
    #[test]
    fn panicking_pidfile_reader_is_an_error_not_a_hang() {
        let reads = BoundedReads::new(
            |_: &Path| -> ReadOutcome { panic!("reader bug") },
            Duration::from_secs(30),
        );
        let outcome = reads.read(Path::new("/run/app.pid"));
        assert!(matches!(&outcome, Some(Err(why)) if why.contains("panic")), "{outcome:?}");
        assert!(!reads.is_reading(Path::new("/run/app.pid")));
    }

    /// The outcome of a read that comes back after its tick gave up is what the
    /// next tick sees, without another read; the tick after that reads afresh.
    #[test]
    fn late_pidfile_read_is_seen_by_the_next_tick() {
        use std::sync::atomic::Ordering;
        let (reads, started, release) = stuck_reader();
        let path = Path::new("/net/slow/app.pid");
        assert_eq!(reads.read(path), None);
        release.send(4242).expect("the reader is waiting");
        let give_up = Instant::now() + Duration::from_secs(60);
        while reads.is_reading(path) {
            assert!(Instant::now() < give_up, "the released reader never finished");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(reads.read(path), Some(Ok(4242)));
        assert_eq!(started.load(Ordering::SeqCst), 1, "the late outcome was read again");
        // Seen once; the next tick starts a new read. Whether it answers within
        // the short test deadline depends on the machine's load, so either tick
        // may see it, but only one more read is made.
        release.send(4243).expect("the reader is there");
        let outcome = match reads.read(path) {
            Some(outcome) => outcome,
            None => {
                while reads.is_reading(path) {
                    assert!(Instant::now() < give_up, "the released reader never finished");
                    std::thread::sleep(Duration::from_millis(5));
                }
                reads.read(path).expect("a finished read has an outcome")
            }
        };
        assert_eq!(outcome, Ok(4243));
        assert_eq!(started.load(Ordering::SeqCst), 2);
    }

    /// issue 12: automatic mode listed Leakwatch's own processes (the app's
    /// WebKit children, the CLI's helpers) among the top descriptor holders.
    #[test]
    fn automatic_mode_leaves_out_leakwatch_and_its_descendants() {
        use crate::tree::tests::process;
        let named = |pid: u32, ppid: u32, name: &str| {
            let mut p = process(pid, ppid);
            p.name = name.to_owned();
            p
        };
        let mut app = named(200, 1, "leakwatch-app");
        app.exe = Some("/usr/bin/leakwatch-app".to_owned());
        let mut daemon = named(300, 1, "leakwatch");
        daemon.argv = vec!["/home/me/.cargo/bin/leakwatch".to_owned(), "daemon".to_owned()].into();
        let mut kthread = named(2, 0, "kthreadd");
        kthread.is_kernel_thread = true;
        let mut other_user = named(700, 1, "sshd");
        other_user.uid = 0;
        let mut init = named(1, 0, "systemd");
        init.uid = 0;
        let table = vec![
            init,
            kthread,
            app,
            named(201, 200, "WebKitWebProces"),
            named(202, 200, "WebKitNetworkPr"),
            named(203, 201, "sh"),
            daemon,
            named(400, 1, "node"),
            named(401, 400, "python3"),
            named(500, 1, "the-test"),
            named(501, 500, "lw-helper"),
            other_user,
        ];
        let mine = leakwatch_processes(&table, 500);
        let mut sorted: Vec<u32> = mine.iter().copied().collect();
        sorted.sort_unstable();
        assert_eq!(sorted, [200, 201, 202, 203, 300, 500, 501]);

        // The WebKit processes hold the most descriptors, and are still left out.
        let fds = |pid: u32| match pid {
            201 | 202 => Some(5_000),
            400 => Some(90),
            401 => Some(120),
            700 => Some(9_999),
            1 => Some(300),
            2 => Some(1),
            _ => Some(10),
        };
        assert_eq!(automatic_targets(&table, 500, 1000, 10, fds), [401, 400]);
        assert_eq!(automatic_targets(&table, 500, 1000, 1, fds), [401]);
        // A process whose count cannot be read is not a candidate.
        let hidden = |pid: u32| fds(pid).filter(|_| pid != 401);
        assert_eq!(automatic_targets(&table, 500, 1000, 10, hidden), [400]);
    }
}
