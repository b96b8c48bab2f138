//! `leakwatch-bench`: the contenders that `cargo xtask bench` times against `lsof`
//! and `ps`. Those tools are whole processes, so every mode here is one too: it does
//! one thing, prints a count (so the work cannot be skipped and xtask can check it
//! saw the whole table) and exits. Process start is then included for everyone.
//!
//! Cold modes (timed from the outside, spawn to exit):
//! - `fd-table PID`: `Probe::new` and one classified `fd_table`, as the CLI does;
//! - `floor PID` (Linux): the least work that classifies every descriptor, one
//!   readdir of `/proc/PID/fd` and one `readlinkat` per entry, nothing else;
//! - `processes`: `Probe::new` and one `processes` scan;
//! - `sysinfo`: the `sysinfo` crate's process refresh, for the fields `ps -eo
//!   pid,ppid,rss,etime,args` prints (and the executable, which the probe reads too).
//!
//! Warm modes (timed from the inside, for the steady state of a watchdog that keeps
//! its handle): `warm-processes N`, `warm-sysinfo N [cached|always]` and
//! `fd-count PID N` print `median_ns min_ns count` over N timed calls.
//!
//! And one helper for xtask: `time PROG [ARGS...]` runs PROG once with stdio on
//! /dev/null and prints `wall_ns cpu_ns`, the wall time from spawn to exit and the
//! user + system time the kernel charged to it (`getrusage(RUSAGE_CHILDREN)`, exact
//! to the microsecond, where /proc's tick counts are not).
//!
//! The engine's own cost: `engine-ticks N TARGETS CONFIG STORE` builds the watch
//! engine on CONFIG (which must name TARGETS targets) with its history in STORE and
//! the interval overridden to 1 ms, so that every tick polls every target, as every
//! tick at a real interval does. With `--fresh-kinds` every tick reads every
//! target's descriptors by kind, as it does for targets whose count moves (a leak);
//! otherwise steady targets' kinds are reused as the engine does. Ticks are timed by the CPU time the kernel charged
//! to this thread (`getrusage(RUSAGE_THREAD)`: user + system, so the /proc reads
//! count). The engine reads the whole process table on its first tick and then at
//! most every 10 s, so after the warm-up it ticks back to back and, each time 10 s
//! have passed since the last scan, waits until one is surely due and times that
//! tick apart: the result holds at least N ticks without a scan and
//! [`FULL_SCAN_TICKS`] with one. For the reader, it also times one read of
//! `/proc/self/net/tcp`, which the probe reads for every target holding a TCP
//! socket. Prints `tick_ns scan_tick_ns rss_bytes wall_ns net_tcp_read_ns ticks
//! scan_ticks` (medians; RSS after the last tick).
//!
//! The engine's steady state: `history-ticks INTERVAL_MS WINDOW_S MINUTES...`
//! feeds one target's samples, at INTERVAL_MS apart in simulated time, to the
//! engine's per-process history ([`SampleWindow`]) and, for comparison, to what
//! the engine kept before it (every sample of the last hour or window, the trend
//! refitted over all of them). At each of the MINUTES it times the per-tick
//! history work of both (fold in a sample, fit the trend, draw the sparkline;
//! the old one: keep the sample, fit over the deque) by the wall clock (the
//! new one tick by tick over two fit buckets, the mean with the refits when
//! buckets close; the old one the median of batches), and measures the heap
//! each holds with a counting allocator. Prints one line per minute: `minute
//! new_tick_ns new_bytes old_tick_ns old_bytes new_slowest_ns preempted
//! new_median_ns`. Simulated
//! time is what lets a filled hour-long window be measured in seconds; the rest
//! of a tick (the probe's reads) does not depend on history and is the
//! `engine-ticks` mode's business.

use anyhow::{Context, Result, bail, ensure};
use leakwatch_core::engine::{Engine, EngineOptions};
use leakwatch_core::model::Sample;
use leakwatch_core::notifier::NullNotifier;
use leakwatch_core::status::{Status, TargetState};
use leakwatch_core::trend::Trend;
use leakwatch_core::window::{FIT_BUCKETS, SampleWindow};
use leakwatch_probe::FdKind;
use leakwatch_probe::Probe;
use std::alloc::{GlobalAlloc, Layout, System as SystemAlloc};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

const USAGE: &str = "usage: leakwatch-bench MODE
  fd-table PID                  classified FD table through leakwatch-probe; prints the count
  floor PID                     readdir /proc/PID/fd + readlinkat per entry (Linux); prints the count
  processes                     one leakwatch-probe process scan; prints the count
  sysinfo                       one sysinfo process refresh (pid, ppid, rss, start, cmd, exe); prints the count
  warm-processes N              one Probe, N timed scans; prints `median_ns min_ns count`
  warm-sysinfo N [cached|always]  one System, N timed refreshes; prints `median_ns min_ns count`
  fd-count PID N                N timed Probe::fd_count calls; prints `median_ns min_ns count`
  time PROG [ARGS...]           runs PROG once, stdio on /dev/null; prints `wall_ns cpu_ns`
  engine-ticks N TARGETS CONFIG STORE [--fresh-kinds]
                                N+ engine ticks over CONFIG's TARGETS targets, history in STORE
                                (--fresh-kinds: every tick reads every table by kind); prints
                                `tick_ns scan_tick_ns rss_bytes wall_ns net_tcp_read_ns ticks scan_ticks`
  history-ticks INTERVAL_MS WINDOW_S MINUTES...
                                one target's history, now and as it was, at each of MINUTES of
                                simulated samples; prints `minute new_tick_ns new_bytes old_tick_ns
                                old_bytes` per minute";

fn main() -> ExitCode {
    match run() {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("leakwatch-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = match words.as_slice() {
        ["fd-table", pid] => fd_table(parse(pid, "PID")?)?.to_string(),
        ["floor", pid] => floor::count(parse(pid, "PID")?)?.to_string(),
        ["processes"] => Probe::new()?.processes()?.len().to_string(),
        ["sysinfo"] => sysinfo_scan(&mut System::new(), Cmd::Cached).to_string(),
        ["warm-processes", n] => warm_processes(parse(n, "N")?)?,
        ["warm-sysinfo", n] => warm_sysinfo(parse(n, "N")?, Cmd::Cached)?,
        ["warm-sysinfo", n, "cached"] => warm_sysinfo(parse(n, "N")?, Cmd::Cached)?,
        ["warm-sysinfo", n, "always"] => warm_sysinfo(parse(n, "N")?, Cmd::Always)?,
        ["fd-count", pid, n] => fd_count(parse(pid, "PID")?, parse(n, "N")?)?,
        ["time", program, args @ ..] => time(program, args)?,
        ["engine-ticks", n, targets, config, store, rest @ ..] => {
            let fresh_kinds = match rest {
                [] => false,
                ["--fresh-kinds"] => true,
                _ => bail!("{USAGE}"),
            };
            engine_ticks(
                parse(n, "N")?,
                parse(targets, "TARGETS")?,
                Path::new(config),
                Path::new(store),
                fresh_kinds,
            )?
        }
        ["history-ticks", interval, window, minutes @ ..] if !minutes.is_empty() => {
            let minutes: Vec<u64> =
                minutes.iter().map(|m| parse(m, "MINUTES")).collect::<Result<_>>()?;
            history_ticks(parse(interval, "INTERVAL_MS")?, parse(window, "WINDOW_S")?, &minutes)?
        }
        _ => bail!("{USAGE}"),
    };
    Ok(out)
}

fn parse<T: std::str::FromStr>(word: &str, what: &str) -> Result<T> {
    word.parse().ok().with_context(|| format!("{what} must be a number, not `{word}`\n{USAGE}"))
}

fn fd_table(pid: u32) -> Result<usize> {
    Ok(Probe::new()?.fd_table(pid)?.fds.len())
}

/// How `sysinfo` treats argv and the executable on a refresh.
#[derive(Debug, Clone, Copy)]
enum Cmd {
    /// Read once per process and kept (`UpdateKind::OnlyIfNotSet`): what the probe's
    /// per-identity cache does. On a first refresh it is the same as `Always`.
    Cached,
    /// Read again on every refresh (`UpdateKind::Always`).
    Always,
}

/// One refresh of every process for the fields of `ps -eo pid,ppid,rss,etime,args`:
/// the parent and start time come with the `stat` read sysinfo always does, memory
/// is rss, cmd is args; the executable is asked too because the probe reads it.
/// Threads are left out (`without_tasks`), as `ps -e` and the probe leave them out.
fn sysinfo_scan(system: &mut System, cmd: Cmd) -> usize {
    let update = match cmd {
        Cmd::Cached => UpdateKind::OnlyIfNotSet,
        Cmd::Always => UpdateKind::Always,
    };
    let kind = ProcessRefreshKind::nothing()
        .with_memory()
        .with_cmd(update)
        .with_exe(update)
        .without_tasks();
    system.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    system.processes().len()
}

fn warm_processes(n: usize) -> Result<String> {
    let mut probe = Probe::new()?;
    // The first scan fills the argv cache; the steady state is what follows.
    probe.processes()?;
    timed(n, || Ok(probe.processes()?.len()))
}

fn warm_sysinfo(n: usize, cmd: Cmd) -> Result<String> {
    let mut system = System::new();
    sysinfo_scan(&mut system, cmd);
    timed(n, || Ok(sysinfo_scan(&mut system, cmd)))
}

fn fd_count(pid: u32, n: usize) -> Result<String> {
    let probe = Probe::new()?;
    probe.fd_count(pid)?;
    timed(n, || Ok(probe.fd_count(pid)?))
}

/// Runs `program` once and renders `wall_ns cpu_ns`.
fn time(program: &str, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let start = Instant::now();
    let status = cmd.status().with_context(|| format!("could not start {program}"))?;
    let wall = start.elapsed();
    if !status.success() {
        bail!("`{program} {}` failed with {status}", args.join(" "));
    }
    Ok(format!("{} {}", wall.as_nanos(), children_cpu()?.as_nanos()))
}

/// User + system time of the children this process has waited for.
#[cfg(unix)]
fn children_cpu() -> Result<Duration> {
    rusage_cpu(libc::RUSAGE_CHILDREN)
}

/// User + system time of the calling thread (of the process where the OS cannot
/// tell threads apart; the engine's tick runs on one thread either way).
#[cfg(unix)]
fn thread_cpu() -> Result<Duration> {
    #[cfg(target_os = "linux")]
    let who = libc::RUSAGE_THREAD;
    #[cfg(not(target_os = "linux"))]
    let who = libc::RUSAGE_SELF;
    rusage_cpu(who)
}

#[cfg(unix)]
fn rusage_cpu(who: libc::c_int) -> Result<Duration> {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage that outlives the call.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        bail!("getrusage: {}", std::io::Error::last_os_error());
    }
    let micros = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0)
    };
    Ok(Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime)))
}

#[cfg(not(unix))]
fn children_cpu() -> Result<Duration> {
    bail!("`time` needs getrusage, which this OS lacks")
}

#[cfg(not(unix))]
fn thread_cpu() -> Result<Duration> {
    bail!("`engine-ticks` needs getrusage, which this OS lacks")
}

/// Ticks before the timed ones: the first begins every series, reads every FD
/// limit, does the first full scan and finds every port's owner.
const ENGINE_WARM_UP: usize = 5;
/// How often the engine reads the whole process table: `FULL_SCAN_EVERY` in
/// crates/core/src/engine.rs.
const FULL_SCAN_EVERY: Duration = Duration::from_secs(10);
/// Timed ticks that include a full scan.
const FULL_SCAN_TICKS: usize = 3;
/// Timed reads of `/proc/self/net/tcp`.
const TCP_READS: usize = 21;

/// `engine-ticks N TARGETS CONFIG STORE [--fresh-kinds]`: see the module
/// documentation.
fn engine_ticks(
    n: usize,
    targets: usize,
    config: &Path,
    store: &Path,
    fresh_kinds: bool,
) -> Result<String> {
    ensure!(n >= 1, "N must be at least 1");
    let mut engine = Engine::new(EngineOptions {
        config: leakwatch_core::ConfigSource::Named(config.to_path_buf()),
        store_path: Some(store.to_path_buf()),
        notifier: Arc::new(NullNotifier),
        interval: Some(Duration::from_millis(1)),
    })?;
    if fresh_kinds {
        engine.reuse_fd_kinds_for(Duration::ZERO);
    }
    // The first tick scans; the engine marks the scan done inside the tick, so the
    // next one is due 10 s after a moment between the tick's start and its end.
    let (mut scan_start, _) = timed_tick(&mut engine, targets)?;
    let mut scan_end = Instant::now();
    for _ in 1..ENGINE_WARM_UP {
        timed_tick(&mut engine, targets)?;
    }
    let mut ticks: Vec<Duration> = Vec::with_capacity(n);
    let mut walls: Vec<Duration> = Vec::with_capacity(n);
    let mut scan_ticks: Vec<Duration> = Vec::with_capacity(FULL_SCAN_TICKS);
    let mut longest = Duration::ZERO;
    while ticks.len() < n || scan_ticks.len() < FULL_SCAN_TICKS {
        // A tick that starts before the last scan's start + 10 s cannot scan (with
        // the longest tick so far as margin, it ends before then too).
        if ticks.len() < n && Instant::now() + longest < scan_start + FULL_SCAN_EVERY {
            let started = Instant::now();
            let (_, cpu) = timed_tick(&mut engine, targets)?;
            let wall = started.elapsed();
            longest = longest.max(wall);
            ticks.push(cpu);
            walls.push(wall);
            continue;
        }
        // One that starts after its end + 10 s surely does.
        std::thread::sleep(
            (scan_end + FULL_SCAN_EVERY + Duration::from_millis(5))
                .saturating_duration_since(Instant::now()),
        );
        let (started, cpu) = timed_tick(&mut engine, targets)?;
        scan_start = started;
        scan_end = Instant::now();
        scan_ticks.push(cpu);
    }
    let rss = own_rss()?;
    let mut tcp_reads = Vec::with_capacity(TCP_READS);
    for _ in 0..TCP_READS {
        let before = thread_cpu()?;
        std::hint::black_box(std::fs::read("/proc/self/net/tcp").context("/proc/self/net/tcp")?);
        tcp_reads.push(thread_cpu()?.saturating_sub(before));
    }
    let (count, scans) = (ticks.len(), scan_ticks.len());
    Ok(format!(
        "{} {} {rss} {} {} {count} {scans}",
        median(ticks).as_nanos(),
        median(scan_ticks).as_nanos(),
        median(walls).as_nanos(),
        median(tcp_reads).as_nanos(),
    ))
}

/// Counts the heap bytes live, so `history-ticks` can say what a history holds.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on unchanged to the system allocator, which upholds
// GlobalAlloc's contract; the counter only observes the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout is passed on as GlobalAlloc::alloc requires.
        let ptr = unsafe { SystemAlloc.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout, as the caller promises.
        unsafe { SystemAlloc.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes `f` leaves allocated after it returns (what it built and kept).
fn heap_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let value = f();
    (value, LIVE_BYTES.load(Ordering::Relaxed).saturating_sub(before))
}

/// Ticks per timed batch at each checkpoint of `history-ticks`, for the old
/// history (whose ticks are long by then).
const HISTORY_TIMED_OLD: usize = 5;
/// Fit buckets whose ticks the new history is timed over at each checkpoint:
/// each tick alone, so that the refit when a bucket closes is in the mean.
const HISTORY_TIMED_BUCKETS: u64 = 2;
/// A tick longer than this was preempted (a refit takes tens of µs): left out
/// of the mean, and counted.
const PREEMPTED: Duration = Duration::from_millis(2);
/// Timed batches per checkpoint; the median is reported.
const HISTORY_BATCHES: usize = 11;

/// A small server's sample leaking a socket a second: seven kinds, as the
/// engine section's helpers hold.
fn history_sample(at: u64, i: u64) -> Sample {
    let kinds = BTreeMap::from([
        (FdKind::Epoll, 4),
        (FdKind::Eventfd, 2),
        (FdKind::Unix, 12 + i % 3),
        (FdKind::Pipe, 6),
        (FdKind::File, 11),
        (FdKind::Tcp, 8 + i / 10),
        (FdKind::Device, 13),
    ]);
    Sample {
        at,
        total: kinds.values().sum(),
        kinds,
        limit: Some(1024),
        rss_bytes: Some(30 << 20),
        cpu_seconds: Some(1.0),
        threads: Some(4),
        descendants: 0,
    }
}

/// `history-ticks INTERVAL_MS WINDOW_S MINUTES...`: see the module documentation.
fn history_ticks(interval_ms: u64, window_s: u64, minutes: &[u64]) -> Result<String> {
    ensure!(interval_ms >= 1, "INTERVAL_MS must be at least 1");
    ensure!(window_s >= 1, "WINDOW_S must be at least 1");
    let window = Duration::from_secs(window_s);
    // What the engine kept before: every sample of max(1 h, window).
    let keep_ms = window.max(Duration::from_secs(3600)).as_millis() as u64;
    let start: u64 = 1_700_000_000_000;
    let mut new = SampleWindow::new(window);
    let mut old = VecDeque::<Sample>::new();
    let mut i: u64 = 0;
    let mut lines = Vec::new();
    let mut checkpoints: Vec<u64> = minutes.to_vec();
    checkpoints.sort_unstable();
    for minute in checkpoints {
        let until = start + minute * 60_000;
        // Untimed: fill up to the checkpoint, as the engine would have.
        while start + i * interval_ms < until {
            let sample = history_sample(start + i * interval_ms, i);
            new.push(&sample);
            while old.front().is_some_and(|s| s.at + keep_ms < sample.at) {
                old.pop_front();
            }
            old.push_back(sample);
            i += 1;
        }
        // What each holds: the heap a copy of it takes.
        let (_, held_new) = heap_of(|| new.clone());
        let (_, held_old) = heap_of(|| old.clone());
        // Every tick of two fit buckets timed alone by the wall clock (the
        // thread CPU clock counts in scheduler ticks, too coarse for a tick of
        // microseconds): the mean includes the refits when buckets close, and
        // the slowest is one of them.
        let bucket_ms = window_s * 1000 / FIT_BUCKETS as u64;
        let timed = (HISTORY_TIMED_BUCKETS * bucket_ms / interval_ms).max(50);
        let (mut total, mut counted, mut slowest) = (Duration::ZERO, 0u32, Duration::ZERO);
        let mut ticks = Vec::with_capacity(timed as usize);
        for _ in 0..timed {
            let sample = history_sample(start + i * interval_ms, i);
            let started = Instant::now();
            new.push(&sample);
            std::hint::black_box((new.trend(sample.at), new.sparkline()));
            let took = started.elapsed();
            ticks.push(took);
            if took < PREEMPTED {
                total += took;
                counted += 1;
                slowest = slowest.max(took);
            }
            while old.front().is_some_and(|s| s.at + keep_ms < sample.at) {
                old.pop_front();
            }
            old.push_back(sample);
            i += 1;
        }
        let new_tick = total / counted.max(1);
        // The typical tick: the refits (one tick per bucket) and preempted
        // ticks fall on the median's far side.
        let typical_tick = median(ticks);
        let mut old_ticks = Vec::with_capacity(HISTORY_BATCHES);
        for _ in 0..HISTORY_BATCHES {
            let started = Instant::now();
            for k in 0..HISTORY_TIMED_OLD as u64 {
                let sample = history_sample(start + (i + k) * interval_ms, i + k);
                let now = sample.at;
                old.push_back(sample);
                std::hint::black_box(Trend::from_samples(old.make_contiguous(), window, now));
                old.pop_back();
            }
            old_ticks.push(started.elapsed() / HISTORY_TIMED_OLD as u32);
        }
        lines.push(format!(
            "{minute} {} {held_new} {} {held_old} {} {} {}",
            new_tick.as_nanos(),
            median(old_ticks).as_nanos(),
            slowest.as_nanos(),
            timed - u64::from(counted),
            typical_tick.as_nanos(),
        ));
    }
    Ok(lines.join("\n"))
}

/// One tick, checked; returns when it started and the CPU time it took.
fn timed_tick(engine: &mut Engine, targets: usize) -> Result<(Instant, Duration)> {
    let (started, before) = (Instant::now(), thread_cpu()?);
    let status = engine.tick();
    let cpu = thread_cpu()?.saturating_sub(before);
    all_up(&status, targets)?;
    Ok((started, cpu))
}

/// Fails unless the status shows exactly `targets` targets, every one up.
fn all_up(status: &Status, targets: usize) -> Result<()> {
    ensure!(
        status.targets.len() == targets,
        "the engine shows {} targets, not {targets}",
        status.targets.len()
    );
    if let Some(down) = status.targets.iter().find(|t| t.state != TargetState::Up) {
        bail!("target {} is not up: {:?}", down.name, down.state);
    }
    Ok(())
}

/// This process's resident memory (VmRSS), in bytes.
fn own_rss() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context("reading /proc/self/status (the engine mode measures RSS on Linux)")?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kib * 1024)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Calls `f` `n` times and renders `median_ns min_ns count` (count from the last call).
fn timed(n: usize, mut f: impl FnMut() -> Result<usize>) -> Result<String> {
    if n == 0 {
        bail!("N must be at least 1");
    }
    let mut times: Vec<Duration> = Vec::with_capacity(n);
    let mut count = 0;
    for _ in 0..n {
        let start = Instant::now();
        count = f()?;
        times.push(start.elapsed());
    }
    times.sort_unstable();
    let median = times[times.len() / 2];
    let min = times[0];
    Ok(format!("{} {} {count}", median.as_nanos(), min.as_nanos()))
}

#[cfg(target_os = "linux")]
mod floor {
    //! The floor: the fewest syscalls that tell every descriptor's kind on Linux. It
    //! is deliberately plain libc, opendir/readdir/readlinkat and nothing else, so it
    //! measures the kernel's cost of answering, not any library's.

    use anyhow::{Result, bail};
    use std::ffi::CString;

    pub(crate) fn count(pid: u32) -> Result<usize> {
        let path = CString::new(format!("/proc/{pid}/fd"))?;
        // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
        let dir = unsafe { libc::opendir(path.as_ptr()) };
        if dir.is_null() {
            bail!("opendir /proc/{pid}/fd: {}", std::io::Error::last_os_error());
        }
        // SAFETY: `dir` is the open, non-null stream opendir just returned.
        let dir_fd = unsafe { libc::dirfd(dir) };
        let mut link = [0u8; 4096];
        let mut count = 0;
        let mut link_bytes = 0usize;
        loop {
            // SAFETY: `dir` is open and only used by this thread.
            let entry = unsafe { libc::readdir(dir) };
            if entry.is_null() {
                break;
            }
            // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated
            // and stays valid until the next readdir on `dir`, which comes after.
            let name = unsafe { (*entry).d_name.as_ptr() };
            // SAFETY: `name` is the entry's NUL-terminated name (see above).
            if unsafe { *name } == b'.' as libc::c_char {
                continue;
            }
            // SAFETY: `dir_fd` is the stream's open descriptor, `name` a valid C
            // string and `link` a writable buffer of the length passed.
            let len =
                unsafe { libc::readlinkat(dir_fd, name, link.as_mut_ptr().cast(), link.len()) };
            if len >= 0 {
                count += 1;
                link_bytes += len.unsigned_abs();
            }
        }
        // SAFETY: `dir` is open and not used after this.
        unsafe { libc::closedir(dir) };
        // Keep the links' contents observable so no step can be dropped.
        std::hint::black_box(link_bytes);
        Ok(count)
    }
}

#[cfg(not(target_os = "linux"))]
mod floor {
    //! The floor mode measures Linux's /proc; other systems have no equivalent here.

    pub(crate) fn count(_pid: u32) -> anyhow::Result<usize> {
        anyhow::bail!("the `floor` mode reads /proc/PID/fd and exists on Linux only")
    }
}
