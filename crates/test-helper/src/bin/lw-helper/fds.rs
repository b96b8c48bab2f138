//! The descriptors the helper holds, kept per kind so that `close KIND N` can close
//! exactly the last N of one kind, and `count` can say what the helper itself opened.
//!
//! Every descriptor is opened close-on-exec, so the children the helper spawns never
//! inherit the thousands of descriptors a test may have asked for. Kinds that exist on
//! one OS only (epoll, eventfd, timerfd, signalfd, inotify on Linux; kqueue on macOS)
//! answer [`UNSUPPORTED`] elsewhere instead of failing to compile.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The error text for a kind that does not exist on this OS.
pub(crate) const UNSUPPORTED: &str = "unsupported on this OS";

/// Largest count one command may ask for: a typo must not try to open a billion fds.
pub(crate) const MAX_COUNT: usize = 1_000_000;

/// The kind words of the protocol. Their order is the order `count` prints them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Device,
    Pipe,
    Unix,
    UnixListen,
    TcpListen,
    TcpConn,
    Udp,
    Shm,
    Epoll,
    Eventfd,
    Timerfd,
    Signalfd,
    Inotify,
    Kqueue,
    /// A loopback TCP connection whose peer closed and this end did not: CLOSE_WAIT.
    CloseWait,
}

impl Kind {
    pub(crate) const ALL: [Kind; 17] = [
        Kind::File,
        Kind::Dir,
        Kind::Device,
        Kind::Pipe,
        Kind::Unix,
        Kind::UnixListen,
        Kind::TcpListen,
        Kind::TcpConn,
        Kind::Udp,
        Kind::Shm,
        Kind::Epoll,
        Kind::Eventfd,
        Kind::Timerfd,
        Kind::Signalfd,
        Kind::Inotify,
        Kind::Kqueue,
        Kind::CloseWait,
    ];

    pub(crate) fn word(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Device => "device",
            Kind::Pipe => "pipe",
            Kind::Unix => "unix",
            Kind::UnixListen => "unix-listen",
            Kind::TcpListen => "tcp-listen",
            Kind::TcpConn => "tcp-conn",
            Kind::Udp => "udp",
            Kind::Shm => "shm",
            Kind::Epoll => "epoll",
            Kind::Eventfd => "eventfd",
            Kind::Timerfd => "timerfd",
            Kind::Signalfd => "signalfd",
            Kind::Inotify => "inotify",
            Kind::Kqueue => "kqueue",
            Kind::CloseWait => "close-wait",
        }
    }

    pub(crate) fn parse(word: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.word() == word)
            .ok_or_else(|| format!("unknown kind `{word}`"))
    }

    /// Whether this OS has the kind at all.
    pub(crate) fn supported(self) -> bool {
        match self {
            Kind::Epoll | Kind::Eventfd | Kind::Timerfd | Kind::Signalfd | Kind::Inotify => {
                cfg!(target_os = "linux")
            }
            Kind::Kqueue => cfg!(target_os = "macos"),
            _ => true,
        }
    }

    /// Whether the kind needs a path (`file PATH`, `dir PATH`, `unix-listen PATH`).
    pub(crate) fn takes_path(self) -> bool {
        matches!(self, Kind::File | Kind::Dir | Kind::UnixListen)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One held descriptor, and the file to remove when it is closed (a named shm object
/// or the socket file of a listening unix socket the helper created).
#[derive(Debug)]
pub(crate) struct Held {
    _fd: OwnedFd,
    remove_on_close: Option<PathBuf>,
}

impl Held {
    fn new(fd: impl Into<OwnedFd>) -> Held {
        Held { _fd: fd.into(), remove_on_close: None }
    }

    fn removing(fd: impl Into<OwnedFd>, path: PathBuf) -> Held {
        Held { _fd: fd.into(), remove_on_close: Some(path) }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(path) = self.remove_on_close.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What one `open` added, for the reply.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Added {
    pub(crate) fds: usize,
    /// `tcp-conn` only: whether the shared listener was created by this call.
    pub(crate) listener: usize,
    /// `tcp-conn` only: connected pairs made.
    pub(crate) pairs: usize,
}

/// Descriptors held per kind, in the order they were opened.
#[derive(Debug, Default)]
pub(crate) struct Table {
    held: [Vec<Held>; Kind::ALL.len()],
    /// The one listener that `tcp-conn` pairs connect to; counted under `tcp-conn`.
    tcp_conn_listener: Option<TcpListener>,
}

impl Table {
    pub(crate) fn count(&self, kind: Kind) -> usize {
        let listener = usize::from(kind == Kind::TcpConn && self.tcp_conn_listener.is_some());
        self.held[kind.index()].len() + listener
    }

    pub(crate) fn total(&self) -> usize {
        Kind::ALL.into_iter().map(|k| self.count(k)).sum()
    }

    /// Closes the last `n` descriptors of `kind` (all of them for `None`); returns how
    /// many were closed. The shared `tcp-conn` listener goes last.
    pub(crate) fn close(&mut self, kind: Kind, n: Option<usize>) -> usize {
        let want = n.unwrap_or(usize::MAX);
        let list = &mut self.held[kind.index()];
        let from_list = want.min(list.len());
        list.truncate(list.len() - from_list);
        let mut closed = from_list;
        if kind == Kind::TcpConn && closed < want && self.tcp_conn_listener.take().is_some() {
            closed += 1;
        }
        closed
    }

    /// Closes everything (removing the files of named shm objects and unix sockets).
    pub(crate) fn clear(&mut self) {
        for kind in Kind::ALL {
            self.close(kind, None);
        }
    }

    /// Opens `n` units of `kind` (a unit is one fd, or two for pipe and unix, or a
    /// connected pair for tcp-conn). On failure what was opened so far is kept and the
    /// error says how far it got, so a test can fill the table up to EMFILE.
    pub(crate) fn open(
        &mut self,
        kind: Kind,
        path: Option<&Path>,
        n: usize,
    ) -> Result<Added, String> {
        if !kind.supported() {
            return Err(UNSUPPORTED.to_owned());
        }
        if n > MAX_COUNT {
            return Err(format!("count {n} is above the limit of {MAX_COUNT}"));
        }
        let mut added = Added::default();
        for done in 0..n {
            match self.open_one(kind, path) {
                Ok(one) => {
                    added.fds += one.fds;
                    added.listener += one.listener;
                    added.pairs += one.pairs;
                }
                Err(e) => {
                    return Err(format!(
                        "opened {done} of {n} {} (kept {} fds): {e}",
                        kind.word(),
                        added.fds
                    ));
                }
            }
        }
        Ok(added)
    }

    /// Opens one unit of `kind`.
    pub(crate) fn open_one(&mut self, kind: Kind, path: Option<&Path>) -> Result<Added, String> {
        let need_path = || path.ok_or_else(|| format!("`{}` needs a PATH", kind.word()));
        let io = |what: &str, e: io::Error| format!("{what}: {e}");
        let mut fds = 0;
        let mut push = |held: Held| {
            self.held[kind.index()].push(held);
            fds += 1;
        };
        match kind {
            Kind::File => {
                let p = need_path()?;
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(p)
                    .map_err(|e| io(&format!("open {}", p.display()), e))?;
                push(Held::new(f));
            }
            Kind::Dir => {
                let p = need_path()?;
                std::fs::create_dir_all(p).map_err(|e| io(&format!("mkdir {}", p.display()), e))?;
                let f = File::open(p).map_err(|e| io(&format!("open {}", p.display()), e))?;
                push(Held::new(f));
            }
            Kind::Device => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .map_err(|e| io("open /dev/null", e))?;
                push(Held::new(f));
            }
            Kind::Pipe => {
                let (r, w) = std::io::pipe().map_err(|e| io("pipe", e))?;
                push(Held::new(r));
                push(Held::new(w));
            }
            Kind::Unix => {
                let (a, b) = UnixStream::pair().map_err(|e| io("socketpair", e))?;
                push(Held::new(a));
                push(Held::new(b));
            }
            Kind::UnixListen => {
                let p = need_path()?;
                let l =
                    UnixListener::bind(p).map_err(|e| io(&format!("bind {}", p.display()), e))?;
                push(Held::removing(l, p.to_path_buf()));
            }
            Kind::TcpListen => {
                let l = TcpListener::bind("127.0.0.1:0").map_err(|e| io("tcp listen", e))?;
                push(Held::new(l));
            }
            Kind::Udp => {
                let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| io("udp bind", e))?;
                push(Held::new(s));
            }
            Kind::Shm => {
                let held = os::open_shm()?;
                push(held);
            }
            Kind::Epoll | Kind::Eventfd | Kind::Timerfd | Kind::Signalfd | Kind::Inotify => {
                let fd = os::open_anon(kind)?;
                push(Held::new(fd));
            }
            Kind::Kqueue => {
                let fd = os::open_kqueue()?;
                push(Held::new(fd));
            }
            Kind::TcpConn => return self.open_tcp_pair(),
            Kind::CloseWait => return self.open_close_wait(),
        }
        Ok(Added { fds, ..Added::default() })
    }

    /// One loopback connection whose accepted end is closed at once, so the kept
    /// client end sits in CLOSE_WAIT: a peer that hung up on a program that never
    /// closed. Shares the `tcp-conn` listener.
    fn open_close_wait(&mut self) -> Result<Added, String> {
        let mut added = Added::default();
        if self.tcp_conn_listener.is_none() {
            let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("tcp listen: {e}"))?;
            self.tcp_conn_listener = Some(l);
            added.listener = 1;
        }
        let Some(listener) = &self.tcp_conn_listener else {
            return Err("tcp-conn listener vanished".to_owned());
        };
        let addr = listener.local_addr().map_err(|e| format!("listener address: {e}"))?;
        let client = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let (server, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        drop(server);
        self.held[Kind::CloseWait.index()].push(Held::new(client));
        added.fds = 1 + added.listener;
        Ok(added)
    }

    /// `no-cloexec`: clears close-on-exec on every held descriptor, so children
    /// spawned afterwards inherit them all (the missing `O_CLOEXEC` of a leaky
    /// parent). Returns how many descriptors it changed.
    pub(crate) fn clear_cloexec(&self) -> Result<usize, String> {
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        let mut changed = 0;
        for held in self.held.iter().flatten() {
            fcntl(&held._fd, FcntlArg::F_SETFD(FdFlag::empty()))
                .map_err(|e| format!("clear FD_CLOEXEC: {e}"))?;
            changed += 1;
        }
        Ok(changed)
    }

    /// One connected loopback pair for `tcp-conn`: the client end and the accepted end,
    /// plus the shared listener the first time.
    fn open_tcp_pair(&mut self) -> Result<Added, String> {
        let mut added = Added { pairs: 1, ..Added::default() };
        if self.tcp_conn_listener.is_none() {
            let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("tcp listen: {e}"))?;
            self.tcp_conn_listener = Some(l);
            added.listener = 1;
        }
        let Some(listener) = &self.tcp_conn_listener else {
            return Err("tcp-conn listener vanished".to_owned());
        };
        let addr = listener.local_addr().map_err(|e| format!("listener address: {e}"))?;
        let client = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let (server, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        let list = &mut self.held[Kind::TcpConn.index()];
        list.push(Held::new(client));
        list.push(Held::new(server));
        added.fds = 2 + added.listener;
        Ok(added)
    }
}

#[cfg(target_os = "linux")]
mod os {
    //! Linux: the anon-inode kinds through nix, and shm as a named file in /dev/shm.

    use super::{Held, Kind};
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::OpenOptionsExt;

    pub(super) fn open_anon(kind: Kind) -> Result<OwnedFd, String> {
        use nix::sys::epoll::{Epoll, EpollCreateFlags};
        use nix::sys::eventfd::{EfdFlags, EventFd};
        use nix::sys::inotify::{InitFlags, Inotify};
        use nix::sys::signal::SigSet;
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};

        let word = kind.word();
        let err = |e: nix::Error| format!("{word}: {e}");
        match kind {
            Kind::Epoll => Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map(|e| e.0).map_err(err),
            Kind::Eventfd => EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
                .map(OwnedFd::from)
                .map_err(err),
            Kind::Timerfd => TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_CLOEXEC)
                .map(OwnedFd::from)
                .map_err(err),
            // An empty mask: the fd exists without taking any signal away from us.
            Kind::Signalfd => SignalFd::with_flags(&SigSet::empty(), SfdFlags::SFD_CLOEXEC)
                .map(OwnedFd::from)
                .map_err(err),
            Kind::Inotify => Inotify::init(InitFlags::IN_CLOEXEC).map(OwnedFd::from).map_err(err),
            _ => Err(format!("{word} is not an anon-inode kind")),
        }
    }

    pub(super) fn open_kqueue() -> Result<OwnedFd, String> {
        Err(super::UNSUPPORTED.to_owned())
    }

    /// A named file under /dev/shm, kept linked (so /proc shows its real name, not
    /// "(deleted)") and removed when closed or at exit. A helper that is SIGKILLed
    /// cannot remove it; the next helper to start sweeps such files away.
    pub(super) fn open_shm() -> Result<Held, String> {
        let path = leakwatch_test_helper::shm::new_path();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("create {}: {e}", path.display()))?;
        Ok(Held::removing(f, path))
    }
}

#[cfg(target_os = "macos")]
mod os {
    //! macOS: kqueue through nix, and shm as a POSIX shared memory object (PSHM).

    use super::{Held, Kind};
    use std::ffi::CString;
    use std::os::fd::{FromRawFd, OwnedFd};

    pub(super) fn open_anon(_kind: Kind) -> Result<OwnedFd, String> {
        Err(super::UNSUPPORTED.to_owned())
    }

    pub(super) fn open_kqueue() -> Result<OwnedFd, String> {
        nix::sys::event::Kqueue::new().map(OwnedFd::from).map_err(|e| format!("kqueue: {e}"))
    }

    /// `shm_open` with a unique name (at most 31 bytes on macOS), unlinked at once:
    /// macOS cannot list shm names, so a linked one left by a SIGKILLed helper could
    /// never be swept. The descriptor stays a PSHM descriptor all the same.
    pub(super) fn open_shm() -> Result<Held, String> {
        let name = leakwatch_test_helper::shm::new_posix_name();
        let cname = CString::new(name.clone()).map_err(|e| format!("shm name: {e}"))?;
        // SAFETY: `cname` is a valid NUL-terminated string that outlives the call;
        // shm_open does not keep the pointer.
        let raw = unsafe {
            libc::shm_open(
                cname.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
                0o600 as libc::c_uint,
            )
        };
        if raw < 0 {
            return Err(format!("shm_open {name}: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: shm_open just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `cname` is a valid NUL-terminated string that outlives the call.
        unsafe { libc::shm_unlink(cname.as_ptr()) };
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
            .map_err(|e| format!("shm cloexec: {e}"))?;
        Ok(Held::new(fd))
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod os {
    //! Any other Unix: only the portable kinds.

    use super::{Held, Kind, UNSUPPORTED};
    use std::os::fd::OwnedFd;

    pub(super) fn open_anon(_kind: Kind) -> Result<OwnedFd, String> {
        Err(UNSUPPORTED.to_owned())
    }

    pub(super) fn open_kqueue() -> Result<OwnedFd, String> {
        Err(UNSUPPORTED.to_owned())
    }

    pub(super) fn open_shm() -> Result<Held, String> {
        Err(UNSUPPORTED.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_words_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.word()).unwrap(), k);
        }
        assert!(Kind::parse("nonsense").is_err());
    }

    #[test]
    fn close_takes_the_last_ones_and_the_listener_last() {
        let mut t = Table::default();
        t.open(Kind::Pipe, None, 3).unwrap();
        assert_eq!(t.count(Kind::Pipe), 6);
        assert_eq!(t.close(Kind::Pipe, Some(4)), 4);
        assert_eq!(t.count(Kind::Pipe), 2);
        let added = t.open(Kind::TcpConn, None, 2).unwrap();
        assert_eq!(added.fds, 5);
        assert_eq!(added.listener, 1);
        assert_eq!(t.count(Kind::TcpConn), 5);
        assert_eq!(t.close(Kind::TcpConn, Some(4)), 4);
        assert_eq!(t.count(Kind::TcpConn), 1);
        assert_eq!(t.close(Kind::TcpConn, None), 1);
        assert_eq!(t.total(), 2);
    }
}
