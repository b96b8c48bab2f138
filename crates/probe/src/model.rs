//! The plain data the probe returns. Field and kind names here are the names used
//! in every Leakwatch output (JSON, UI, metrics), so they are spelled once, here.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// When a process started, in the OS's own unit: clock ticks since boot on Linux
/// (`/proc/PID/stat` field 22), microseconds since the Unix epoch on macOS
/// (`pbi_start_tvsec`/`pbi_start_tvusec`). Only compared for equality: together
/// with the pid it tells a process from a later one that reused its pid. For a
/// human date use [`ProcessInfo::started_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(transparent)]
pub struct StartTime(pub u64);

/// A process identity: a pid alone can be reused, a pid with its start time cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ProcessId {
    pub pid: u32,
    pub start_time: StartTime,
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pid)
    }
}

/// Scheduler state, as `ps` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessState {
    Running,
    Sleeping,
    /// Uninterruptible sleep (`D`): it cannot act on signals until the call returns.
    DiskSleep,
    Stopped,
    Traced,
    Zombie,
    Dead,
    Idle,
    Unknown,
}

/// One process from the process table.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    #[serde(flatten)]
    pub id: ProcessId,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub uid: u32,
    pub state: ProcessState,
    /// The short command name (`comm` on Linux, `p_comm` on macOS).
    pub name: String,
    /// Path of the executable, when the caller may read it.
    pub exe: Option<String>,
    /// The command line; empty for kernel threads and where it is private.
    pub argv: Arc<[String]>,
    /// Resident memory; `None` where the OS keeps it from this user (macOS).
    pub rss_bytes: Option<u64>,
    /// User plus system CPU time; `None` where the OS keeps it from this user.
    #[serde(with = "duration_secs_opt")]
    pub cpu_time: Option<Duration>,
    pub threads: Option<u32>,
    #[serde(with = "unix_millis")]
    pub started_at: SystemTime,
    pub is_kernel_thread: bool,
}

impl ProcessInfo {
    /// The command line joined for display, or the name in brackets when argv is
    /// empty (kernel threads, zombies, restricted processes), as `ps` does.
    pub fn command_line(&self) -> String {
        if self.argv.is_empty() { format!("[{}]", self.name) } else { self.argv.join(" ") }
    }
}

/// The canonical descriptor kinds of DESIGN.md ("File descriptor kinds"). Their
/// `snake_case` names are the ones shown everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum FdKind {
    Kqueue,
    Epoll,
    Eventfd,
    Timerfd,
    Signalfd,
    Inotify,
    Fsevents,
    Pidfd,
    Unix,
    Tcp,
    Udp,
    Socket,
    File,
    Dir,
    Device,
    Shm,
    Sem,
    Pipe,
    Other,
}

impl FdKind {
    /// Every kind, event loops first: the order gauges and tables use.
    pub const ALL: [FdKind; 19] = [
        FdKind::Kqueue,
        FdKind::Epoll,
        FdKind::Eventfd,
        FdKind::Timerfd,
        FdKind::Signalfd,
        FdKind::Inotify,
        FdKind::Fsevents,
        FdKind::Pidfd,
        FdKind::Unix,
        FdKind::Tcp,
        FdKind::Udp,
        FdKind::Socket,
        FdKind::File,
        FdKind::Dir,
        FdKind::Device,
        FdKind::Shm,
        FdKind::Sem,
        FdKind::Pipe,
        FdKind::Other,
    ];

    /// The canonical name, as in JSON and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            FdKind::Kqueue => "kqueue",
            FdKind::Epoll => "epoll",
            FdKind::Eventfd => "eventfd",
            FdKind::Timerfd => "timerfd",
            FdKind::Signalfd => "signalfd",
            FdKind::Inotify => "inotify",
            FdKind::Fsevents => "fsevents",
            FdKind::Pidfd => "pidfd",
            FdKind::Unix => "unix",
            FdKind::Tcp => "tcp",
            FdKind::Udp => "udp",
            FdKind::Socket => "socket",
            FdKind::File => "file",
            FdKind::Dir => "dir",
            FdKind::Device => "device",
            FdKind::Shm => "shm",
            FdKind::Sem => "sem",
            FdKind::Pipe => "pipe",
            FdKind::Other => "other",
        }
    }

    /// Parses a canonical name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The gauge class this kind is counted under.
    pub const fn class(self) -> FdClass {
        match self {
            FdKind::Kqueue
            | FdKind::Epoll
            | FdKind::Eventfd
            | FdKind::Timerfd
            | FdKind::Signalfd
            | FdKind::Inotify
            | FdKind::Fsevents => FdClass::EventLoops,
            FdKind::Unix | FdKind::Tcp | FdKind::Udp | FdKind::Socket => FdClass::Sockets,
            FdKind::File | FdKind::Dir | FdKind::Device | FdKind::Shm | FdKind::Sem => {
                FdClass::Files
            }
            FdKind::Pipe => FdClass::Pipes,
            FdKind::Pidfd | FdKind::Other => FdClass::Other,
        }
    }

    /// Whether descriptors of this kind carry a filesystem path worth grouping.
    pub const fn has_path(self) -> bool {
        matches!(self, FdKind::File | FdKind::Dir | FdKind::Device | FdKind::Shm | FdKind::Sem)
    }
}

impl fmt::Display for FdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The gauge classes of DESIGN.md: kinds grouped by what leaks together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum FdClass {
    EventLoops,
    Sockets,
    Files,
    Pipes,
    Other,
}

impl FdClass {
    /// Every class, in gauge order.
    pub const ALL: [FdClass; 5] =
        [FdClass::EventLoops, FdClass::Sockets, FdClass::Files, FdClass::Pipes, FdClass::Other];

    /// The canonical name, as in JSON and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            FdClass::EventLoops => "event_loops",
            FdClass::Sockets => "sockets",
            FdClass::Files => "files",
            FdClass::Pipes => "pipes",
            FdClass::Other => "other",
        }
    }

    /// How gauges and their legends name the class, as DESIGN.md does ("event
    /// loops"): the UI's labels are generated from this.
    pub const fn label(self) -> &'static str {
        match self {
            FdClass::EventLoops => "event loops",
            FdClass::Sockets => "sockets",
            FdClass::Files => "files",
            FdClass::Pipes => "pipes",
            FdClass::Other => "other",
        }
    }
}

impl fmt::Display for FdClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One open descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fd {
    pub fd: i32,
    pub kind: FdKind,
    /// The filesystem path, for kinds that have one ([`FdKind::has_path`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// For sockets: `local -> remote (state)` for TCP/UDP, the bound or peer path
    /// for unix sockets, where the OS tells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// The descriptors of one process, read as one consistent table.
#[derive(Debug, Clone, Serialize)]
pub struct FdTable {
    #[serde(flatten)]
    pub id: ProcessId,
    pub fds: Vec<Fd>,
    /// What each descriptor of `fds` (same index) refers to, where the platform
    /// tells it without extra calls: on Linux the inode in the link of a pipe,
    /// socket or pidfd (`pipe:[4711]`); `None` elsewhere (anonymous inodes all share
    /// one, files are told apart by path). Lets a reader tell a descriptor still
    /// open from one closed and reopened under the same number, and see the same
    /// object held by a parent and its children.
    #[serde(skip)]
    pub objects: Vec<Option<u64>>,
}

impl FdTable {
    /// The object `fds[index]` refers to, if known.
    pub fn object(&self, index: usize) -> Option<u64> {
        self.objects.get(index).copied().flatten()
    }
}

/// Where an FD limit was learned (DESIGN.md: macOS cannot read another process's
/// rlimit, so the figure there is a stand-in and says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// Linux `/proc/PID/limits`: the process's own limit.
    ProcLimits,
    /// `getrlimit(RLIMIT_NOFILE)` of the calling process itself.
    Getrlimit,
    /// macOS: the launchd default (`launchctl limit maxfiles`), which a process
    /// started by launchd inherits unless its plist or code changed it.
    LaunchdDefault,
    /// The `fd_limit` a target's configuration gives.
    Configured,
}

impl LimitSource {
    /// The canonical name, as in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            LimitSource::ProcLimits => "proc_limits",
            LimitSource::Getrlimit => "getrlimit",
            LimitSource::LaunchdDefault => "launchd_default",
            LimitSource::Configured => "configured",
        }
    }
}

/// Soft and hard descriptor limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct FdLimit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
    pub source: LimitSource,
}

/// A system-wide descriptor limit, with the file, sysctl or command it came from:
/// what `leakwatch doctor` shows so a user knows which knob to turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemLimit {
    pub name: String,
    /// `None` when unlimited.
    pub value: Option<u64>,
    pub source: String,
}

mod duration_secs_opt {
    use serde::Serializer;
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

mod unix_millis {
    use serde::Serializer;
    use std::time::{SystemTime, UNIX_EPOCH};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let millis = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        s.serialize_u64(u64::try_from(millis).unwrap_or(u64::MAX))
    }
}

/// The service manager job that runs a process: the name it will have again
/// after a restart, and so the best way to find it (`launchd = "label"`,
/// `systemd = "unit"` in the config).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServiceJob {
    /// A launchd job label (macOS).
    Launchd(String),
    /// A systemd service unit, system or user (Linux).
    Systemd(String),
}
