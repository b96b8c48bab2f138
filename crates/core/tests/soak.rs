//! The engine must not leak what it exists to find. Five real targets (`lw-helper`s
//! found by pidfile and by command line, one leaking and closing descriptors all
//! along, one opening and closing timerfds) are ticked 2,000 times as fast as the
//! engine goes, with a store on disk, after a warm-up of 100 ticks. Afterwards this
//! process has exactly as many descriptors and threads as before, and its resident
//! memory grew by less than what the engine keeps by design (see [`RSS_BOUND`]).
//!
//! Alone in its own test binary, so that no other test's threads, helpers or
//! descriptors change the counts of this process while it measures.
#![cfg(target_os = "linux")]
// Helpers shared by the test unwrap too: a panic is the failure report we want.
#![allow(clippy::unwrap_used)]

use leakwatch_core::engine::{Engine, EngineOptions};
use leakwatch_core::model::unix_millis;
use leakwatch_core::notifier::CapturingNotifier;
use leakwatch_core::status::TargetState;
use leakwatch_core::store::Store;
use leakwatch_test_helper::Helper;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const WARM_UP: usize = 100;
const TICKS: usize = 2_000;
const TARGETS: usize = 5;
/// How often the engine reads the whole process table (`FULL_SCAN_EVERY` in
/// src/engine/mod.rs), with a little margin.
const FULL_SCAN_EVERY: Duration = Duration::from_millis(10_100);
/// How far the engine's clock moves per tick ([`Engine::tick_at`]): the
/// `interval` of every target, so that every tick polls every target.
const TICK: u64 = 1;

/// How much resident memory the measured ticks may add. The engine keeps, by
/// design, an hour of samples per process in memory (the sparkline and the trend
/// window), so at this pace every tick adds one sample per target: 2,000 × 5 =
/// 10,000 more samples, each a `Sample` of about 110 bytes in a `VecDeque` that
/// doubles (so up to twice that) plus its kind map's B-tree node of about 130 bytes:
/// about 3.5 MiB, which is what this test measures (3.6 MiB). SQLite's page cache
/// may fill up to its default of 2 MiB as the database grows; the rest is slack for
/// the allocator. A leak of one kilobyte per target per tick (10 MiB) exceeds it.
const RSS_BOUND: u64 = 8 << 20;

fn own_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A field of /proc/self/status, as a number (VmRSS in kB, Threads).
fn own_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// This process's threads once short-lived ones have gone: the fewest seen over
/// 200 ms. A pidfile is read on a helper thread that is joined before the tick
/// goes on, but the kernel counts a joined thread until it has released it, so
/// a single read of `Threads` can see one more; a leak never goes away.
fn settled_threads() -> u64 {
    (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(10));
            own_status("Threads")
        })
        .min()
        .unwrap_or(u64::MAX)
}

#[test]
fn two_thousand_ticks_leak_no_descriptors_threads_or_memory() {
    let dir = tempfile::TempDir::new().unwrap();
    // Helper 4 is found by its command line: the file it is told to open at start
    // is the unique marker there.
    let marker = dir.path().join("soak-marker");
    std::fs::write(&marker, "").unwrap();
    let marker_arg = format!("open file {} 1", marker.display());
    let mut helpers: Vec<Helper> = (0..TARGETS - 1).map(|_| Helper::spawn().unwrap()).collect();
    helpers.push(Helper::spawn_with(&["--exec", &marker_arg]).unwrap());
    // Realistic tables: a few dozen descriptors of several kinds, but no TCP socket:
    // the probe classifies one by reading /proc/PID/net/tcp, and every read of it
    // walks the kernel's whole TCP hash table (milliseconds on a big machine), which
    // would make this test slow without making it any stronger (a `port` target is
    // tested in tests/engine.rs).
    for helper in &mut helpers {
        helper.ok("open pipe 8");
        helper.ok("open unix 8");
        helper.ok("open epoll 4");
        helper.ok("open eventfd 4");
    }
    helpers[0].ok("leak epoll 5");
    let pidfile = |i: usize| {
        let path = dir.path().join(format!("h{i}.pid"));
        std::fs::write(&path, helpers[i].pid().to_string()).unwrap();
        path
    };
    let config = format!(
        "[[watch]]\nname = \"leaking\"\npidfile = '{}'\n\
         [[watch]]\nname = \"steady\"\npidfile = '{}'\n\
         [[watch]]\nname = \"churning\"\npidfile = '{}'\n\
         [[watch]]\nname = \"quiet\"\npidfile = '{}'\n\
         [[watch]]\nname = \"marked\"\nargv = '{}'\n",
        pidfile(0).display(),
        pidfile(1).display(),
        pidfile(2).display(),
        pidfile(3).display(),
        regex::escape(&marker.display().to_string()),
    );
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let store_path = dir.path().join("history.db");
    let mut engine = Engine::new(EngineOptions {
        config: leakwatch_core::ConfigSource::Named(config_path),
        store_path: Some(store_path.clone()),
        notifier: Arc::new(CapturingNotifier::default()),
        interval: Some(Duration::from_millis(1)),
    })
    .unwrap();

    // Bounded change all along: helper 0 leaks an epoll every 5 ms and is emptied
    // every 200 ticks; helper 2 opens and closes ten timerfds every 50 ticks.
    let churn = |helpers: &mut Vec<Helper>, tick: usize| {
        if tick % 200 == 199 {
            helpers[0].ok("close-leaked");
        }
        if tick.is_multiple_of(100) {
            helpers[2].ok("open timerfd 10");
        } else if tick % 100 == 50 {
            helpers[2].ok("close timerfd 10");
        }
    };
    let mut now = unix_millis(SystemTime::now());
    for tick in 0..WARM_UP {
        churn(&mut helpers, tick);
        now += TICK;
        let status = engine.tick_at(now);
        if tick == 0 {
            assert_eq!(status.targets.len(), TARGETS, "{:#?}", status.targets);
        }
    }
    let fds = own_fds();
    let threads = settled_threads();
    let rss_kib = own_status("VmRSS");

    let start = Instant::now();
    let mut last = None;
    for tick in WARM_UP..WARM_UP + TICKS {
        churn(&mut helpers, tick);
        now += TICK;
        if tick == WARM_UP + TICKS / 2 {
            // The engine reads the whole process table every 10 s of its clock:
            // the measured ticks include such a scan.
            now += u64::try_from(FULL_SCAN_EVERY.as_millis()).unwrap();
        }
        last = Some(engine.tick_at(now));
    }
    let took = start.elapsed();

    let (fds_after, threads_after) = (own_fds(), settled_threads());
    let rss_after_kib = own_status("VmRSS");
    let grew = rss_after_kib.saturating_sub(rss_kib) * 1024;
    eprintln!(
        "{TICKS} ticks of {TARGETS} targets in {took:?} ({:?} per tick); descriptors {fds} → \
         {fds_after}, threads {threads} → {threads_after}, RSS {rss_kib} kB → {rss_after_kib} kB",
        took / u32::try_from(TICKS).unwrap(),
    );
    let status = last.unwrap();
    for target in &status.targets {
        assert_eq!(target.state, TargetState::Up, "{target:#?}");
    }
    let names: Vec<&str> = status.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["leaking", "steady", "churning", "quiet", "marked"]);
    assert_eq!(fds_after, fds, "descriptors of this process");
    assert_eq!(threads_after, threads, "threads of this process");
    assert!(grew < RSS_BOUND, "RSS grew by {} KiB over {TICKS} ticks", grew / 1024);

    // Every tick polled every target and wrote its sample.
    drop(engine);
    let store = Store::open_read_only(&store_path).unwrap();
    for name in names {
        let series = store.series(name).unwrap();
        assert_eq!(series.len(), 1, "{name}: {series:#?}");
        let samples = store.samples(series[0].id, 0).unwrap();
        assert_eq!(samples.len(), WARM_UP + TICKS, "{name}");
    }
}
