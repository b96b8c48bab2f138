//! `cargo xtask bench`: times Leakwatch's probe against the tools a user would
//! otherwise reach for (`lsof -p`, `ps`, the `sysinfo` crate) in one run on this
//! machine, and prints medians and ratios as Markdown tables for the README.
//!
//! Every contender is timed as a whole process, spawn to exit with stdout to
//! /dev/null, because that is how `lsof` and `ps` are used; Leakwatch's side runs
//! through `leakwatch-bench` (crates/bench), one short-lived process per mode. The
//! contenders of a section run interleaved, round by round, so a machine that slows
//! down mid-run slows all of them alike. The targets come from the issue; a missed
//! target is printed, never turned into a failure, while a real error (a tool
//! missing, a helper refusing a command) fails the task.
//!
//! The processes measured are `lw-helper`s (crates/test-helper), driven over their
//! line protocol: one holding 10,000 descriptors in the mix of the leaks in the
//! seeds, one holding 10, and 1,000 idle ones for the process table. A guard kills
//! them all, and every child they spawned, on the way out, error or not.
//!
//! The last section measures the watch engine itself, the cost a user pays all day:
//! its CPU per tick over 5 and then 50 helper targets (each a small server's table
//! of a few dozen to a hundred descriptors, with TCP), amortised with the full
//! process-table scan it does every 10 s, as a share of one core at the default
//! 2 s interval, and its resident memory. The status section times one answer
//! from a running daemon (`leakwatch status --json`, 20 targets) beside what
//! `watch --once` costs.

use crate::util;
use anyhow::{Context, Result, bail, ensure};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Benchmark the probe against lsof, ps and sysinfo and print Markdown tables.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Timed runs of each contender; medians and minimums are over these.
    #[arg(long, value_name = "N", default_value_t = 21)]
    runs: usize,
    /// Untimed warm-up runs of each contender before the timed ones.
    #[arg(long, value_name = "N", default_value_t = 5)]
    warmups: usize,
    /// Descriptors the FD-table helper holds (the mix is scaled to it).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    fds: usize,
    /// Extra helper processes in the table for the process-table scan.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    processes: usize,
    /// In-process `Probe::fd_count` calls per helper in the FD-count section.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    calls: usize,
    /// Timed engine ticks per target count in the engine section.
    #[arg(long, value_name = "N", default_value_t = 200)]
    engine_ticks: usize,
    /// Use the release binaries already built instead of running `cargo build`.
    #[arg(long)]
    no_build: bool,
    /// Run only these sections (repeatable); all of them by default. The README's
    /// numbers come from a full run.
    #[arg(long, value_enum, value_name = "SECTION")]
    only: Vec<Section>,
}

/// The bench's sections, each measured on its own helpers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    /// FD tables and FD counts against the readdir floor and lsof.
    Fds,
    /// The process table against ps and sysinfo.
    Processes,
    /// The watch engine's own CPU per tick and RSS.
    Engine,
    /// The engine's per-target history cost from the first minute to a filled
    /// window (simulated time; needs only `leakwatch-bench`).
    Steady,
    /// The menubar app's footprint, popover closed and open.
    App,
    /// `leakwatch status --json` against a running daemon, beside `watch --once`.
    Status,
}

impl Args {
    fn runs_section(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }
}

pub(crate) fn run(args: &Args) -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!(
            "`cargo xtask bench` measures the Linux /proc probe (its floor and descriptor mix \
             are Linux-only); run it on Linux"
        );
    }
    ensure!(args.runs >= 1, "--runs must be at least 1");
    ensure!(args.fds >= 1_000, "--fds must be at least 1000");
    ensure!(args.processes >= 1, "--processes must be at least 1");
    ensure!(args.calls >= 1, "--calls must be at least 1");
    ensure!(args.engine_ticks >= 1, "--engine-ticks must be at least 1");
    if args.only == [Section::App] {
        let mut out = String::new();
        crate::app_footprint::section(&mut out, !args.no_build)?;
        print!("{out}");
        return Ok(());
    }
    if args.only == [Section::Steady] {
        if !args.no_build {
            util::run(util::cargo().args(BUILD_BENCH))?;
        }
        let mut out = String::new();
        let mut targets = Vec::new();
        steady_section(&mut out, &mut targets)?;
        out.push_str("\n### Targets\n\n");
        for target in &targets {
            let _ = writeln!(out, "- {target}");
        }
        print!("{out}");
        return Ok(());
    }
    util::ensure_debian_packages(&["lsof", "procps"])?;
    if !args.no_build {
        // Issue 13: cargo unifies features within one build, so a bench built
        // together with the CLI linked the CLI's `notifications` and `metrics`
        // (notify-rust's D-Bus stack, prometheus-client). On its own, it links
        // neither, as the README says and a user's engine measures.
        util::run(util::cargo().args(BUILD_BENCH))?;
        util::run(util::cargo().args([
            "build",
            "--release",
            "-p",
            "leakwatch",
            "-p",
            "leakwatch-test-helper",
        ]))?;
    }
    let bins = Bins::find()?;

    let mut out = String::new();
    header(&mut out, args, &bins);
    let mut targets = Vec::new();
    if args.runs_section(Section::Fds) {
        let mut helpers = Helpers::default();
        let scratch = Scratch::new()?;
        fd_sections(&mut out, &mut targets, args, &bins, &mut helpers, &scratch)?;
        helpers.kill_all();
    }
    if args.runs_section(Section::Processes) {
        let mut helpers = Helpers::default();
        process_section(&mut out, &mut targets, args, &bins, &mut helpers)?;
        helpers.kill_all();
    }
    if args.runs_section(Section::Engine) {
        engine_section(&mut out, &mut targets, args, &bins)?;
    }
    if args.runs_section(Section::Status) {
        status_section(&mut out, &mut targets, args, &bins)?;
    }
    if args.runs_section(Section::Steady) {
        steady_section(&mut out, &mut targets)?;
    }
    if args.runs_section(Section::App) {
        crate::app_footprint::section(&mut out, !args.no_build)?;
    }
    out.push_str("\n### Targets\n\n");
    for target in &targets {
        let _ = writeln!(out, "- {target}");
    }
    let _ = writeln!(out, "\nLoad average at the end: {}.", load_average());
    print!("{out}");
    Ok(())
}

/// `leakwatch-bench` alone: in its own cargo invocation, so it gets only its own
/// features of `leakwatch-core` (none), not the union with the CLI's.
const BUILD_BENCH: [&str; 4] = ["build", "--release", "-p", "leakwatch-bench"];

/// The release binaries the bench runs.
#[derive(Debug)]
struct Bins {
    bench: PathBuf,
    leakwatch: PathBuf,
    helper: PathBuf,
}

impl Bins {
    fn find() -> Result<Bins> {
        let release = util::target_dir().join("release");
        let bins = Bins {
            bench: release.join("leakwatch-bench"),
            leakwatch: release.join("leakwatch"),
            helper: release.join("lw-helper"),
        };
        for bin in [&bins.bench, &bins.leakwatch, &bins.helper] {
            ensure!(bin.is_file(), "{} is missing; run without --no-build", bin.display());
        }
        Ok(bins)
    }
}

fn header(out: &mut String, args: &Args, bins: &Bins) {
    let kernel = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "?".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let lsof = command_text(Command::new("lsof").arg("-v"))
        .and_then(|t| {
            t.lines().find_map(|l| Some(l.trim().strip_prefix("revision:")?.trim().to_owned()))
        })
        .unwrap_or_else(|| "?".into());
    let ps = command_text(Command::new("ps").arg("--version"))
        .map(|t| t.trim().trim_start_matches("ps from ").to_owned())
        .unwrap_or_else(|| "?".into());
    let sysinfo = locked_version("sysinfo").unwrap_or_else(|| "?".into());
    let leakwatch = command_text(Command::new(&bins.leakwatch).arg("--version"))
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| "leakwatch ?".into());
    let _ = writeln!(out, "## Leakwatch benchmark\n");
    let _ = writeln!(
        out,
        "Linux {kernel}, {cpu}, {cpus} CPUs; {leakwatch} (release), lsof {lsof}, {ps}, \
         sysinfo {sysinfo}.\n"
    );
    let _ = writeln!(
        out,
        "Unless marked in-process, each time is a whole process, spawn to exit with stdout \
         to /dev/null (process start included, as for `lsof` and `ps`): {} warm-up and {} \
         timed runs of each, contenders interleaved round by round. Median and minimum are \
         wall time; CPU is the median user + system time per run, which other work on the \
         machine does not inflate (load average at the start: {}).",
        args.warmups,
        args.runs,
        load_average()
    );
}

/// The descriptor mix of the big helper: mostly event loops and unix sockets, as in
/// the leaks of the seeds, then SQLite-like files, pipes, some TCP, and `/dev/null`
/// filling up to the exact total.
#[derive(Debug)]
struct Mix {
    epoll: usize,
    eventfd: usize,
    socketpairs: usize,
    pipes: usize,
    /// (file name, descriptors)
    files: Vec<(&'static str, usize)>,
    tcp_pairs: usize,
    tcp_listeners: usize,
}

impl Mix {
    fn for_total(total: usize) -> Mix {
        let pct = |p: usize| total * p / 100;
        let files = pct(15);
        let (db, wal, shm) = (files * 40 / 100, files * 36 / 100, files * 16 / 100);
        let tcp = pct(3);
        // `tcp-conn N` holds 2N descriptors plus the one listener they connect to.
        let tcp_pairs = tcp / 3;
        Mix {
            epoll: pct(40),
            eventfd: pct(10),
            socketpairs: pct(20) / 2,
            pipes: pct(10) / 2,
            files: vec![
                ("state.db", db),
                ("state.db-wal", wal),
                ("state.db-shm", shm),
                ("app.log", files - db - wal - shm),
            ],
            tcp_pairs,
            tcp_listeners: tcp - (2 * tcp_pairs + usize::from(tcp_pairs > 0)),
        }
    }

    fn tcp_fds(&self) -> usize {
        2 * self.tcp_pairs + usize::from(self.tcp_pairs > 0) + self.tcp_listeners
    }

    fn file_fds(&self) -> usize {
        self.files.iter().map(|(_, n)| n).sum()
    }

    /// Everything but the devices that fill up to the total.
    fn fds(&self) -> usize {
        self.epoll
            + self.eventfd
            + 2 * self.socketpairs
            + 2 * self.pipes
            + self.file_fds()
            + self.tcp_fds()
    }

    /// Opens the mix in `helper`, then `/dev/null` up to `total` descriptors in all
    /// (counting what the helper holds from the start), and checks the total in
    /// /proc. Returns a one-line description of exactly what is held.
    fn open(&self, helper: &mut Helper, scratch: &Scratch, total: usize) -> Result<String> {
        let base = helper.fd_count()?;
        let devices = total
            .checked_sub(base + self.fds())
            .with_context(|| format!("the mix needs more than {total} descriptors"))?;
        helper.open("epoll", None, self.epoll)?;
        helper.open("eventfd", None, self.eventfd)?;
        helper.open("unix", None, self.socketpairs)?;
        helper.open("pipe", None, self.pipes)?;
        for (name, n) in &self.files {
            helper.open("file", Some(&scratch.path.join(name)), *n)?;
        }
        helper.open("tcp-conn", None, self.tcp_pairs)?;
        helper.open("tcp-listen", None, self.tcp_listeners)?;
        helper.open("device", None, devices)?;
        let held = helper.fd_count()?;
        ensure!(held == total, "helper {} holds {held} descriptors, not {total}", helper.pid);
        let files = self
            .files
            .iter()
            .map(|(name, n)| format!("{} {name}", thousands(*n)))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(format!(
            "{} epoll, {} eventfd, {} unix ({} socketpairs), {} pipe ({} pipes), {} file ({files}), \
             {} tcp ({} loopback connections, both ends, + their listener + {} listeners), \
             {} device (/dev/null), {base} it held from the start (stdio and whatever it inherited)",
            thousands(self.epoll),
            thousands(self.eventfd),
            thousands(2 * self.socketpairs),
            thousands(self.socketpairs),
            thousands(2 * self.pipes),
            thousands(self.pipes),
            thousands(self.file_fds()),
            thousands(self.tcp_fds()),
            thousands(self.tcp_pairs),
            thousands(self.tcp_listeners),
            thousands(devices),
        ))
    }
}

/// Sections 1 and 2: the FD table of the big helper, and `fd_count` on a small and
/// the big one.
fn fd_sections(
    out: &mut String,
    targets: &mut Vec<String>,
    args: &Args,
    bins: &Bins,
    helpers: &mut Helpers,
    scratch: &Scratch,
) -> Result<()> {
    let total = args.fds;
    eprintln!("bench: starting a helper with {} descriptors", thousands(total));
    let big = helpers.start(&bins.helper)?;
    let soft = helpers.get(big).fd_soft_limit()?;
    ensure!(
        soft.is_none_or(|soft| soft >= total as u64 + 64),
        "the helper's descriptor limit is {} (it raises its soft limit to the hard one): too low \
         for {total} descriptors; raise the hard limit (`ulimit -Hn`) or pass a smaller --fds",
        soft.map_or("unlimited".into(), |s| s.to_string())
    );
    let mix = Mix::for_total(total).open(helpers.get(big), scratch, total)?;
    let big_pid = helpers.get(big).pid;

    let small_total: usize = 10;
    let small = helpers.start(&bins.helper)?;
    let small_helper = helpers.get(small);
    let small_base = small_helper.fd_count()?;
    small_helper.open("device", None, small_total.saturating_sub(small_base))?;
    let small_pid = small_helper.pid;
    let small_total = small_helper.fd_count()?;

    let pid = big_pid.to_string();
    let count_is = move |expected: usize| {
        move |stdout: &str| -> Result<()> {
            let got: usize =
                stdout.trim().parse().with_context(|| format!("not a count: {stdout:?}"))?;
            ensure!(got == expected, "counted {got} descriptors, expected {expected}");
            Ok(())
        }
    };
    let contenders = vec![
        Contender::new(
            "floor: readdir `/proc/PID/fd` + `readlinkat` per entry",
            &bins.bench,
            &["floor", &pid],
            count_is(total),
        ),
        Contender::new(
            "Leakwatch probe: `leakwatch-bench fd-table PID` (classified)",
            &bins.bench,
            &["fd-table", &pid],
            count_is(total),
        ),
        Contender::new(
            "Leakwatch CLI: `leakwatch fds --json PID`",
            &bins.leakwatch,
            &["fds", "--json", &pid],
            move |stdout: &str| {
                ensure!(
                    stdout.contains(&format!("\"total\": {total},")),
                    "`leakwatch fds --json` did not report {total} descriptors"
                );
                Ok(())
            },
        ),
        Contender::new(
            "`lsof -n -P -p PID`",
            Path::new("lsof"),
            &["-n", "-P", "-p", &pid],
            lsof_lists(total),
        ),
        Contender::new("`lsof -p PID`", Path::new("lsof"), &["-p", &pid], lsof_lists(total)),
    ];
    eprintln!("bench: timing the FD table ({} contenders)", contenders.len());
    let stats = measure(&contenders, args, &bins.bench)?;
    let (floor, probe, cli, lsof) = (stats[0], stats[1], stats[2], stats[4]);

    let _ =
        writeln!(out, "\n### FD table of one process holding {} descriptors\n", thousands(total));
    let _ = writeln!(out, "The helper (pid {big_pid}) holds: {mix}.\n");
    let _ = writeln!(
        out,
        "| contender | median | min | CPU | median ÷ floor | CPU ÷ floor | `lsof -p` ÷ median |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for (contender, s) in contenders.iter().zip(&stats) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            contender.label,
            duration(s.median),
            duration(s.min),
            duration(s.cpu),
            ratio(s.median, floor.median),
            ratio(s.cpu, floor.cpu),
            ratio(lsof.median, s.median),
        );
    }
    targets.push(verdict(
        "classified FD table (probe) ÷ the floor",
        &probe,
        &floor,
        "≤ 1.25×",
        |r| r <= 1.25,
    ));
    targets.push(format!(
        "for reference: the CLI (`leakwatch fds --json`) is {} the floor; `lsof -p` takes {} \
         the probe's time and {} the CLI's",
        ratio(cli.median, floor.median),
        ratio(lsof.median, probe.median),
        ratio(lsof.median, cli.median),
    ));

    eprintln!("bench: timing Probe::fd_count in-process ({} calls per helper)", args.calls);
    let calls = args.calls.to_string();
    let small_stats = in_process(&bins.bench, &["fd-count", &small_pid.to_string(), &calls])?;
    let big_stats = in_process(&bins.bench, &["fd-count", &pid, &calls])?;
    ensure!(
        small_stats.count == small_total,
        "fd_count said {} for the small helper, not {small_total}",
        small_stats.count
    );
    ensure!(
        big_stats.count == total,
        "fd_count said {} for the big helper, not {total}",
        big_stats.count
    );
    let _ = writeln!(
        out,
        "\n### FD count only: `Probe::fd_count`, in-process, {} calls per helper\n",
        thousands(args.calls)
    );
    let _ = writeln!(out, "| helper | descriptors | median | min | time ÷ small |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for (name, pid, n, s) in
        [("small", small_pid, small_total, small_stats), ("big", big_pid, total, big_stats)]
    {
        let _ = writeln!(
            out,
            "| {name} (pid {pid}) | {} | {} | {} | {} |",
            thousands(n),
            duration(s.median),
            duration(s.min),
            ratio(s.median, small_stats.median),
        );
    }
    let growth = big_stats.median.as_secs_f64() / small_stats.median.as_secs_f64();
    targets.push(format!(
        "count-only path, {} ÷ {small_total} descriptors: {growth:.2}× by median time per call \
         (target: independent of the count, ≤ 1.5×): {}",
        thousands(total),
        met(growth <= 1.5)
    ));
    Ok(())
}

/// `lsof -p` lists at least every descriptor (plus cwd, rtd, txt, mem rows).
fn lsof_lists(total: usize) -> impl Fn(&str) -> Result<()> {
    move |stdout: &str| {
        let rows = stdout.lines().count().saturating_sub(1);
        ensure!(rows >= total, "lsof listed {rows} rows, fewer than {total} descriptors");
        Ok(())
    }
}

/// Section 3: the process table with `args.processes` extra helpers.
fn process_section(
    out: &mut String,
    targets: &mut Vec<String>,
    args: &Args,
    bins: &Bins,
    helpers: &mut Helpers,
) -> Result<()> {
    let before = process_table().len();
    // Parents of at most 100 processes each (themselves included), children spread evenly.
    let parents = args.processes.div_ceil(100);
    let children = args.processes - parents;
    eprintln!(
        "bench: starting {} helper processes ({parents} spawning {children})",
        thousands(args.processes)
    );
    let mut parent_pids = Vec::new();
    for i in 0..parents {
        let id = helpers.start(&bins.helper)?;
        let n = children / parents + usize::from(i < children % parents);
        let helper = helpers.get(id);
        parent_pids.push(helper.pid);
        let reply = helper.send(&format!("spawn {n}"))?;
        let pids: Vec<u32> = reply.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        ensure!(pids.len() == n, "spawn {n} answered {} pids", pids.len());
        helpers.extra.extend(pids);
    }
    let table = process_table();
    let ours = descendants(&table, &parent_pids);
    ensure!(
        ours.len() == args.processes,
        "expected {} helper processes alive, found {}",
        args.processes,
        ours.len()
    );
    let in_table = table.len();

    let at_least = move |floor: usize| {
        move |stdout: &str| -> Result<()> {
            let got: usize =
                stdout.trim().parse().with_context(|| format!("not a count: {stdout:?}"))?;
            ensure!(got >= floor, "saw {got} processes, fewer than the {floor} helpers");
            Ok(())
        }
    };
    let n = args.processes;
    let contenders = vec![
        Contender::new(
            "Leakwatch probe: `leakwatch-bench processes`",
            &bins.bench,
            &["processes"],
            at_least(n),
        ),
        Contender::new(
            "`ps -eo pid,ppid,rss,etime,args`",
            Path::new("ps"),
            &["-eo", "pid,ppid,rss,etime,args"],
            move |stdout: &str| {
                let rows = stdout.lines().count().saturating_sub(1);
                ensure!(rows >= n, "ps listed {rows} processes, fewer than the {n} helpers");
                Ok(())
            },
        ),
        Contender::new(
            "sysinfo: `leakwatch-bench sysinfo` (one `refresh_processes_specifics`)",
            &bins.bench,
            &["sysinfo"],
            at_least(n),
        ),
    ];
    eprintln!("bench: timing the process table ({} contenders)", contenders.len());
    let stats = measure(&contenders, args, &bins.bench)?;
    let (probe, ps, sysinfo) = (stats[0], stats[1], stats[2]);

    let _ = writeln!(
        out,
        "\n### Process table with {} extra processes ({} in the table, {before} before)\n",
        thousands(n),
        thousands(in_table)
    );
    let _ =
        writeln!(out, "| contender | median | min | CPU | median ÷ Leakwatch | CPU ÷ Leakwatch |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for (contender, s) in contenders.iter().zip(&stats) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            contender.label,
            duration(s.median),
            duration(s.min),
            duration(s.cpu),
            ratio(s.median, probe.median),
            ratio(s.cpu, probe.cpu),
        );
    }

    eprintln!("bench: timing steady-state scans in-process ({} scans each)", args.runs);
    let scans = args.runs.to_string();
    let warm = [
        (
            "Leakwatch: `Probe::processes` (argv/exe cached per identity)",
            vec!["warm-processes", scans.as_str()],
        ),
        (
            "sysinfo: refresh, cmd/exe `UpdateKind::OnlyIfNotSet` (cached, like the probe)",
            vec!["warm-sysinfo", scans.as_str(), "cached"],
        ),
        (
            "sysinfo: refresh, cmd/exe `UpdateKind::Always` (re-read each scan)",
            vec!["warm-sysinfo", scans.as_str(), "always"],
        ),
    ];
    let mut warm_stats = Vec::new();
    for (_, words) in &warm {
        let s = in_process(&bins.bench, words)?;
        ensure!(s.count >= n, "a steady-state scan saw {} processes, fewer than {n}", s.count);
        warm_stats.push(s);
    }
    let _ = writeln!(
        out,
        "\nSteady state: one handle kept, {} scans in-process, time per scan:\n",
        args.runs
    );
    let _ = writeln!(out, "| contender | median | min | time ÷ Leakwatch |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for ((label, _), s) in warm.iter().zip(&warm_stats) {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} |",
            duration(s.median),
            duration(s.min),
            ratio(s.median, warm_stats[0].median)
        );
    }

    targets.push(verdict("process table: `ps` ÷ Leakwatch", &ps, &probe, "≥ 2×", |r| r >= 2.0));
    targets.push(verdict(
        "process table: sysinfo ÷ Leakwatch (whole process)",
        &sysinfo,
        &probe,
        "> 1×",
        |r| r > 1.0,
    ));
    let warm_ratio = warm_stats[1].median.as_secs_f64() / warm_stats[0].median.as_secs_f64();
    targets.push(format!(
        "process table: sysinfo ÷ Leakwatch (steady state, both caching argv): {warm_ratio:.2}× \
         by median time per scan (target > 1×): {}",
        met(warm_ratio > 1.0)
    ));
    Ok(())
}

/// The engine's interval the target is stated for.
const ENGINE_INTERVAL: Duration = Duration::from_secs(2);
/// How often the engine reads the whole process table (`FULL_SCAN_EVERY` in
/// crates/core/src/engine.rs): at a 2 s interval, one tick in five.
const ENGINE_FULL_SCAN_EVERY: Duration = Duration::from_secs(10);
/// One configuration of the engine section.
#[derive(Debug, Clone, Copy)]
struct EngineSetup {
    targets: usize,
    /// Whether the targets hold TCP sockets (and half are found by port).
    tcp: bool,
    /// Whether every tick reads every target's descriptors by kind, as it does
    /// for a target whose count moved (a leak): the worst case. Otherwise a steady
    /// target's kinds are reused for up to 10 s.
    fresh_kinds: bool,
}

/// The engine section's runs: the 5 targets, steady and as if all were
/// leaking, 50 targets, and a reference without TCP sockets found by pidfile.
const ENGINE_RUNS: [EngineSetup; 4] = [
    EngineSetup { targets: 5, tcp: true, fresh_kinds: false },
    EngineSetup { targets: 5, tcp: true, fresh_kinds: true },
    EngineSetup { targets: 50, tcp: true, fresh_kinds: false },
    EngineSetup { targets: 5, tcp: false, fresh_kinds: false },
];

/// What `leakwatch-bench engine-ticks` measured.
#[derive(Debug, Clone, Copy)]
struct EngineRun {
    setup: EngineSetup,
    /// Median CPU time of a tick that polls every target.
    tick: Duration,
    /// Median CPU time of a tick that also reads the whole process table.
    scan_tick: Duration,
    rss: u64,
    /// Median wall time of a tick without a scan.
    wall: Duration,
    /// Descriptors held by the helpers, fewest and most.
    fds: (usize, usize),
    /// CPU time of one read of `/proc/self/net/tcp`.
    tcp_read: Duration,
    /// Timed ticks without and with a full scan.
    counts: (u64, u64),
}

impl EngineRun {
    /// CPU per tick at the 2 s interval: every tick polls every target, and one in
    /// `ENGINE_FULL_SCAN_EVERY / ENGINE_INTERVAL` also scans the process table.
    fn amortised(&self) -> Duration {
        let ticks_per_scan =
            u32::try_from(ENGINE_FULL_SCAN_EVERY.as_millis() / ENGINE_INTERVAL.as_millis())
                .unwrap_or(1)
                .max(1);
        self.tick + self.scan_tick.saturating_sub(self.tick) / ticks_per_scan
    }

    /// Share of one core at the 2 s interval, in percent.
    fn percent_of_core(&self) -> f64 {
        self.amortised().as_secs_f64() / ENGINE_INTERVAL.as_secs_f64() * 100.0
    }
}

/// Section 4: the engine's own CPU per tick and RSS with 5 and 50 targets.
fn engine_section(
    out: &mut String,
    targets: &mut Vec<String>,
    args: &Args,
    bins: &Bins,
) -> Result<()> {
    let mut runs = Vec::new();
    for setup in ENGINE_RUNS {
        let mut helpers = Helpers::default();
        let scratch = Scratch::new()?;
        runs.push(engine_run(setup, args, bins, &mut helpers, &scratch)?);
        helpers.kill_all();
    }
    let tcp_read = runs.iter().map(|r| r.tcp_read).min().unwrap_or_default();
    let ehash = read_trimmed("/proc/sys/net/ipv4/tcp_ehash_entries")
        .and_then(|n| n.parse::<usize>().ok())
        .map_or_else(|| "?".to_owned(), thousands);
    let _ = writeln!(out, "\n### The watch engine's own cost\n");
    let _ = writeln!(
        out,
        "Each target is an `lw-helper` holding what a small local server holds: 4 epoll, 2 \
         eventfd, 12 unix (6 socketpairs), 6 pipe (3 pipes), 11 file (state.db ×4, -wal ×4, \
         -shm ×2, app.log), 8 tcp (3 loopback connections, both ends, their listener, and an \
         HTTP listener), stdio and 10 to 59 `/dev/null`. Half the targets are found by \
         pidfile, half by port; the reference run leaves the tcp out and finds every target \
         by pidfile. The engine (`leakwatch-bench engine-ticks`, release) keeps a store on \
         disk, with its interval overridden so that every tick polls every target, as each \
         tick at 2 s does. It counts each target's descriptors every tick (one `stat`) and \
         reads them by kind (a `readlink` each) when the count moved or the last read is 10 s \
         old; the worst-case run reads every table by kind on every tick, as for targets \
         that all leak. After 5 warm-up ticks, at least {} ticks are timed by the CPU \
         time charged to the ticking thread (user + system, so the kernel's work in /proc \
         counts). The engine also reads the whole process table at most every 10 s; ticks \
         that do are timed apart (the median of 3) and amortised as one in 5 at a 2 s \
         interval. RSS is the bench process's after the last tick.\n",
        args.engine_ticks
    );
    let _ = writeln!(
        out,
        "| targets | descriptors per target | ticks timed | CPU per tick (median) | tick with a \
         full scan | % of one core at a 2 s interval | wall per tick | RSS |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for run in &runs {
        let setup = run.setup;
        let label = match (setup.tcp, setup.fresh_kinds) {
            (true, false) => setup.targets.to_string(),
            (true, true) => format!("{}, every table read every tick (worst case)", setup.targets),
            (false, _) => format!("{} (reference: no tcp, pidfiles)", setup.targets),
        };
        let _ = writeln!(
            out,
            "| {label} | {}–{} | {} + {} | {} | {} | {:.3} % | {} | {:.1} MiB |",
            run.fds.0,
            run.fds.1,
            run.counts.0,
            run.counts.1,
            duration(run.tick),
            duration(run.scan_tick),
            run.percent_of_core(),
            duration(run.wall),
            run.rss as f64 / f64::from(1u32 << 20),
        );
    }
    let _ = writeln!(
        out,
        "\nOne read of `/proc/PID/net/tcp` costs {} of CPU here: the kernel walks its whole \
         TCP connection hash table ({ehash} buckets) on every `read` call, however few \
         connections there are. The engine never reads it: it tells a socket's kind by its \
         `system.sockprotoname` attribute (cached per inode) and a port's owner by the \
         listening socket's inode, as `ss -p` does.",
        duration(tcp_read)
    );
    for run in &runs {
        let percent = run.percent_of_core();
        let rss = run.rss as f64 / f64::from(1u32 << 20);
        let setup = run.setup;
        targets.push(match (setup.targets, setup.tcp, setup.fresh_kinds) {
            (5, true, false) => format!(
                "engine, 5 targets at a 2 s interval: {percent:.3} % of one core ({} per tick \
                 with the full scan amortised; target < 0.1 %): {}",
                duration(run.amortised()),
                met(percent < 0.1)
            ),
            (n, true, true) => format!(
                "for reference: engine, {n} targets, every table read by kind on every tick \
                 (all leaking at least once per tick): {percent:.3} % of one core ({} per tick \
                 amortised)",
                duration(run.amortised()),
            ),
            (n, true, false) => format!(
                "for reference: engine, {n} targets at a 2 s interval: {percent:.3} % of one \
                 core, RSS {rss:.1} MiB"
            ),
            (n, false, _) => format!(
                "for reference: engine, {n} targets holding no TCP socket: {percent:.3} % of one \
                 core, RSS {rss:.1} MiB"
            ),
        });
    }
    Ok(())
}

/// Targets of the status section: what issue 14 asks `status` to answer for fast.
const STATUS_TARGETS: usize = 20;

/// Section 5: one answer from the running engine. A daemon watches
/// [`STATUS_TARGETS`] helpers; `leakwatch status --json` asks it over the local
/// socket, and `leakwatch watch --once --json --no-store` (what a prompt or a
/// plugin had to run before: its own engine for one tick) is timed beside it.
fn status_section(
    out: &mut String,
    targets: &mut Vec<String>,
    args: &Args,
    bins: &Bins,
) -> Result<()> {
    let mut helpers = Helpers::default();
    let scratch = Scratch::new()?;
    let mut config = String::from("[notify]\nenabled = false\n");
    for i in 0..STATUS_TARGETS {
        let id = helpers.start(&bins.helper)?;
        let pidfile = scratch.path.join(format!("status-{i}.pid"));
        std::fs::write(&pidfile, helpers.get(id).pid.to_string())
            .with_context(|| format!("writing {}", pidfile.display()))?;
        let _ = write!(
            config,
            "\n[[watch]]\nname = \"target-{i}\"\npidfile = \"{}\"\n",
            pidfile.display()
        );
    }
    let config_path = scratch.path.join("status.toml");
    std::fs::write(&config_path, config)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let data = scratch.path.join("status-data");
    // `env` sets the variables for each timed run (the same few hundred
    // microseconds for both contenders).
    let env_args = |words: &[&str]| -> Vec<String> {
        let mut all = vec![
            format!("LEAKWATCH_CONFIG={}", config_path.display()),
            format!("LEAKWATCH_DATA_DIR={}", data.display()),
            bins.leakwatch.display().to_string(),
        ];
        all.extend(words.iter().map(|w| (*w).to_owned()));
        all
    };
    let mut daemon = Command::new(&bins.leakwatch)
        .arg("daemon")
        .env("LEAKWATCH_CONFIG", &config_path)
        .env("LEAKWATCH_DATA_DIR", &data)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("could not start {} daemon", bins.leakwatch.display()))?;
    let every_target = |stdout: &str| -> Result<()> {
        let status: serde_json::Value =
            serde_json::from_str(stdout.lines().next().unwrap_or_default())
                .context("not a JSON status")?;
        let up = status["targets"]
            .as_array()
            .map_or(0, |t| t.iter().filter(|t| t["state"] == "up").count());
        ensure!(up == STATUS_TARGETS, "{up} of {STATUS_TARGETS} targets up");
        Ok(())
    };
    let status_args = env_args(&["status", "--json"]);
    let status_words: Vec<&str> = status_args.iter().map(String::as_str).collect();
    let watch_args = env_args(&["watch", "--once", "--json", "--no-store", "--no-notify"]);
    let watch_words: Vec<&str> = watch_args.iter().map(String::as_str).collect();
    let attached_args = env_args(&["watch", "--once", "--json", "--no-notify"]);
    let attached_words: Vec<&str> = attached_args.iter().map(String::as_str).collect();
    let contenders = vec![
        Contender::new(
            "`leakwatch status --json` (the running daemon answers)",
            Path::new("env"),
            &status_words,
            every_target,
        ),
        Contender::new(
            "`leakwatch watch --once --json` (attaches to the daemon: its current status)",
            Path::new("env"),
            &attached_words,
            every_target,
        ),
        Contender::new(
            "`leakwatch watch --once --json --no-store` (an engine of its own, one tick)",
            Path::new("env"),
            &watch_words,
            every_target,
        ),
    ];
    // The daemon's first tick: until then `status` has no targets to show.
    let deadline = Instant::now() + Duration::from_secs(60);
    while contenders[0].verify().is_err() {
        ensure!(Instant::now() < deadline, "the daemon never answered `status` with its targets");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("bench: timing `status` against a daemon with {STATUS_TARGETS} targets");
    let measured = measure(&contenders, args, &bins.bench);
    let _ = daemon.kill();
    let _ = daemon.wait();
    helpers.kill_all();
    let stats = measured?;
    let _ = writeln!(
        out,
        "\n### One answer from the running engine ({STATUS_TARGETS} targets)\n\n\
         A `leakwatch daemon` watches {STATUS_TARGETS} idle `lw-helper`s by pidfile; `status` \
         asks it over its Unix socket. Times include `env` setting the variables.\n"
    );
    let _ = writeln!(out, "| command | median | p95 | min | CPU |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for (contender, s) in contenders.iter().zip(&stats) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            contender.label,
            duration(s.median),
            duration(s.p95),
            duration(s.min),
            duration(s.cpu)
        );
    }
    let (status, watch) = (stats[0], stats[2]);
    targets.push(format!(
        "`leakwatch status --json` with {STATUS_TARGETS} targets: {} median, {} p95 (target \
         < 20 ms median; `watch --once --no-store` takes {}): {}",
        duration(status.median),
        duration(status.p95),
        duration(watch.median),
        met(status.median < Duration::from_millis(20))
    ));
    Ok(())
}

/// Starts `n` helpers with a server's descriptors, writes a config watching them,
/// and runs `leakwatch-bench engine-ticks` on it.
fn engine_run(
    setup: EngineSetup,
    args: &Args,
    bins: &Bins,
    helpers: &mut Helpers,
    scratch: &Scratch,
) -> Result<EngineRun> {
    let (n, tcp) = (setup.targets, setup.tcp);
    let with = if tcp { "with" } else { "without" };
    eprintln!("bench: starting {n} helper targets for the engine, {with} TCP sockets");
    let mut config = String::new();
    let mut fds = (usize::MAX, 0);
    for i in 0..n {
        let index = helpers.start(&bins.helper)?;
        let helper = helpers.get(index);
        helper.open("epoll", None, 4)?;
        helper.open("eventfd", None, 2)?;
        helper.open("unix", None, 6)?;
        helper.open("pipe", None, 3)?;
        for (name, count) in [("state.db", 4), ("state.db-wal", 4), ("state.db-shm", 2)] {
            helper.open("file", Some(&scratch.path.join(name)), count)?;
        }
        helper.open("file", Some(&scratch.path.join("app.log")), 1)?;
        helper.open("device", None, 10 + i * 13 % 50)?;
        let mut port = None;
        if tcp {
            helper.open("tcp-conn", None, 3)?;
            let reply = helper.send("serve-http")?;
            let parsed: u16 = reply
                .trim()
                .parse()
                .with_context(|| format!("helper {}: serve-http answered {reply:?}", helper.pid))?;
            port = Some(parsed);
        }
        let held = helper.fd_count()?;
        fds = (fds.0.min(held), fds.1.max(held));
        let selector = if let Some(port) = port.filter(|_| i % 2 == 1) {
            format!("port = {port}")
        } else {
            let pidfile = scratch.path.join(format!("target-{i}.pid"));
            std::fs::write(&pidfile, format!("{}\n", helper.pid))
                .with_context(|| format!("writing {}", pidfile.display()))?;
            format!("pidfile = '{}'", pidfile.display())
        };
        let _ = writeln!(config, "[[watch]]\nname = \"target-{i}\"\n{selector}\n");
    }
    let config_path = scratch.path.join(format!("engine-{n}.toml"));
    std::fs::write(&config_path, &config)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let store = scratch.path.join(format!("engine-{n}.db"));
    eprintln!("bench: timing {} engine ticks over {n} targets", args.engine_ticks);
    let mut words = vec![
        "engine-ticks".to_owned(),
        args.engine_ticks.to_string(),
        n.to_string(),
        config_path.display().to_string(),
        store.display().to_string(),
    ];
    if setup.fresh_kinds {
        words.push("--fresh-kinds".to_owned());
    }
    let line = command_text(Command::new(&bins.bench).args(&words).stderr(Stdio::inherit()))
        .with_context(|| format!("`leakwatch-bench {}` failed", words.join(" ")))?;
    let fields: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let [tick, scan_tick, rss, wall, tcp_read, ticks, scans] = fields[..] else {
        bail!("`leakwatch-bench {}` printed {line:?}", words.join(" "));
    };
    ensure!(
        ticks >= args.engine_ticks as u64 && scans >= 1,
        "`leakwatch-bench {}` timed {ticks} ticks and {scans} with a scan",
        words.join(" ")
    );
    Ok(EngineRun {
        setup,
        tick: Duration::from_nanos(tick),
        scan_tick: Duration::from_nanos(scan_tick),
        rss,
        wall: Duration::from_nanos(wall),
        fds,
        tcp_read: Duration::from_nanos(tcp_read),
        counts: (ticks, scans),
    })
}

/// The steady-state section's sampling: the 100 ms, the default 30 min
/// window, and minutes from the first to well after the window (and the hour the
/// sparkline spans) filled.
const STEADY_INTERVAL_MS: u64 = 100;
const STEADY_WINDOW_S: u64 = 1800;
const STEADY_MINUTES: [u64; 6] = [1, 3, 10, 30, 60, 120];

/// One checkpoint of `leakwatch-bench history-ticks` (times in ns).
struct SteadyRow {
    minute: u64,
    /// The median tick: folding a sample in and reading the kept fit.
    typical: u64,
    /// The mean tick, the refits made when buckets close included.
    mean: u64,
    slowest: u64,
    bytes: u64,
    old_tick: u64,
    old_bytes: u64,
    preempted: u64,
}

/// Section 5: the engine's per-target history (trend and sparkline) per tick and
/// in memory, from the first minute to long after its window filled, against
/// what the engine kept before (every sample of the last hour).
fn steady_section(out: &mut String, targets: &mut Vec<String>) -> Result<()> {
    let bench = util::target_dir().join("release").join("leakwatch-bench");
    ensure!(bench.is_file(), "{} is missing; run without --no-build", bench.display());
    eprintln!("bench: simulating {} min of one target's history", STEADY_MINUTES[5]);
    let mut words = vec![
        "history-ticks".to_owned(),
        STEADY_INTERVAL_MS.to_string(),
        STEADY_WINDOW_S.to_string(),
    ];
    words.extend(STEADY_MINUTES.iter().map(u64::to_string));
    let text = command_text(Command::new(&bench).args(&words).stderr(Stdio::inherit()))
        .with_context(|| format!("`leakwatch-bench {}` failed", words.join(" ")))?;
    let mut rows = Vec::new();
    for line in text.lines() {
        let fields: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        let [minute, new_tick, new_bytes, old_tick, old_bytes, slowest, preempted, typical] =
            fields[..]
        else {
            bail!("`leakwatch-bench {}` printed {line:?}", words.join(" "));
        };
        rows.push(SteadyRow {
            minute,
            typical,
            mean: new_tick,
            slowest,
            bytes: new_bytes,
            old_tick,
            old_bytes,
            preempted,
        });
    }
    ensure!(rows.len() == STEADY_MINUTES.len(), "`leakwatch-bench` printed {text:?}");
    let _ = writeln!(out, "\n### The engine's steady state: history per target\n");
    let _ = writeln!(
        out,
        "One target sampled every {STEADY_INTERVAL_MS} ms with a {} min trend window, in \
         simulated time (`leakwatch-bench history-ticks`, release), so that two hours of \
         samples take seconds. At each minute, the history work of every tick of the next \
         two fit buckets (fold in the sample, read the trend with its per-kind slopes, \
         draw the sparkline) is timed alone by the wall clock: \"typical tick\" is their \
         median, \"mean\" includes the refits made when a bucket closes (ticks over 2 ms \
         were preempted and are left out), \"slowest\" the longest of them (a refit). The heap it holds is \
         counted by the allocator. \"Before\" is what the engine did until the bounded \
         history: every sample of the last hour kept, the trend refitted over the \
         window's samples on every tick.\n",
        STEADY_WINDOW_S / 60,
    );
    let _ = writeln!(
        out,
        "| minutes of history | typical tick | mean, refits included | slowest tick | memory \
         | before: per tick | before: memory |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
    let kib = |b: u64| format!("{:.1} KiB", b as f64 / 1024.0);
    let mut preempted = 0;
    let nanos = |n: u64| duration(Duration::from_nanos(n));
    for row in &rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.minute,
            nanos(row.typical),
            nanos(row.mean),
            nanos(row.slowest),
            kib(row.bytes),
            nanos(row.old_tick),
            kib(row.old_bytes),
        );
        preempted += row.preempted;
    }
    let _ = writeln!(out, "\n{preempted} preempted ticks left out.");
    // The fit is kept and only refitted when a bucket closes: a typical tick
    // must cost the same at minute 1 as once the window (30 min) and the
    // sparkline's hour have filled; the refits' share may grow with the
    // window's buckets until it is full, and not after; memory stays bounded.
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    let typical_ceiling = rows.iter().map(|r| r.typical).max().unwrap_or(0);
    let typical_growth = typical_ceiling as f64 / first.typical.max(1) as f64;
    let full = rows.iter().find(|r| r.minute * 60 >= STEADY_WINDOW_S).unwrap_or(last);
    let mean_after_full = rows.iter().filter(|r| r.minute >= full.minute).map(|r| r.mean);
    let mean_growth = mean_after_full.max().unwrap_or(0) as f64 / full.mean.max(1) as f64;
    let most_memory = rows.iter().map(|r| r.bytes).max().unwrap_or(0);
    let old_growth = last.old_tick as f64 / first.old_tick.max(1) as f64;
    targets.push(format!(
        "engine history per target, {} ms interval: typical tick {} at minute {}, at most {} at \
         any age up to {} min ({typical_growth:.2}×; target: flat from the first minute, ≤ \
         1.5×): {}; mean with refits {} once the window is full (minute {}), at most {} after \
         ({mean_growth:.2}×; target: no growth after the window filled, ≤ 1.5×): {}; before: \
         {old_growth:.1}× from 1 to {} min; memory at most {} (target: bounded, < 128 KiB): {}",
        STEADY_INTERVAL_MS,
        nanos(first.typical),
        first.minute,
        nanos(typical_ceiling),
        last.minute,
        met(typical_growth <= 1.5),
        nanos(full.mean),
        full.minute,
        nanos(rows.iter().filter(|r| r.minute >= full.minute).map(|r| r.mean).max().unwrap_or(0)),
        met(mean_growth <= 1.5),
        last.minute,
        kib(most_memory),
        met(most_memory < 128 * 1024),
    ));
    Ok(())
}

/// `what: 1.08× by median wall time, 1.05× by CPU time (target ≤ 1.25×): met`;
/// the verdict is on the median wall time, as the targets are stated.
fn verdict(
    what: &str,
    stats: &Stats,
    reference: &Stats,
    target: &str,
    ok: impl Fn(f64) -> bool,
) -> String {
    let wall = stats.median.as_secs_f64() / reference.median.as_secs_f64();
    let cpu = stats.cpu.as_secs_f64() / reference.cpu.as_secs_f64();
    let cpu_note = if ok(cpu) { "" } else { ", which would miss" };
    format!(
        "{what}: {wall:.2}× by median wall time, {cpu:.2}× by CPU time{cpu_note} \
         (target {target}): {}",
        met(ok(wall))
    )
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**NOT met**" }
}

/// Checks the stdout of a verification run.
type Check = Box<dyn Fn(&str) -> Result<()>>;

/// One program and arguments to time, with a check of its output run once first.
struct Contender {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    check: Check,
}

impl std::fmt::Debug for Contender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contender").field("label", &self.label).field("args", &self.args).finish()
    }
}

impl Contender {
    fn new(
        label: &str,
        program: &Path,
        args: &[&str],
        check: impl Fn(&str) -> Result<()> + 'static,
    ) -> Self {
        Contender {
            label: label.to_owned(),
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            check: Box::new(check),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).stdin(Stdio::null());
        cmd
    }

    fn display(&self) -> String {
        format!("{} {}", self.program.display(), self.args.join(" "))
    }

    /// Runs it once with its output captured, failing unless it succeeds and its
    /// output passes the check (so a timed run is known to do the whole job).
    fn verify(&self) -> Result<()> {
        let output = self
            .command()
            .output()
            .with_context(|| format!("could not start `{}`", self.display()))?;
        ensure!(
            output.status.success(),
            "`{}` failed with {}: {}",
            self.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        (self.check)(&String::from_utf8_lossy(&output.stdout))
            .with_context(|| format!("`{}`", self.display()))
    }

    /// Wall and CPU time of one run, measured by `leakwatch-bench time`, which
    /// spawns it and waits as we would, and reads its rusage (exact, unlike the
    /// clock ticks of /proc).
    fn time(&self, bench: &Path) -> Result<(Duration, Duration)> {
        let output = Command::new(bench)
            .arg("time")
            .arg(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("could not start {}", bench.display()))?;
        ensure!(
            output.status.success(),
            "timing `{}` failed: {}",
            self.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let text = String::from_utf8_lossy(&output.stdout);
        let numbers: Vec<u64> = text.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        let [wall, cpu] = numbers[..] else {
            bail!("`leakwatch-bench time` printed {text:?}");
        };
        Ok((Duration::from_nanos(wall), Duration::from_nanos(cpu)))
    }
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    median: Duration,
    min: Duration,
    /// The 95th percentile of the wall times (nearest rank).
    p95: Duration,
    /// Median user + system CPU time per run: unlike wall time, not inflated by
    /// other work on the machine.
    cpu: Duration,
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    let n = times.len();
    if n % 2 == 1 { times[n / 2] } else { (times[n / 2 - 1] + times[n / 2]) / 2 }
}

/// The `p`th percentile of `times` by nearest rank (zero when empty).
fn percentile(times: &[Duration], p: usize) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or_default()
}

/// Verifies every contender, then times them round by round.
fn measure(contenders: &[Contender], args: &Args, bench: &Path) -> Result<Vec<Stats>> {
    for contender in contenders {
        contender.verify()?;
    }
    let mut walls: Vec<Vec<Duration>> = vec![Vec::with_capacity(args.runs); contenders.len()];
    let mut cpus = walls.clone();
    for round in 0..args.warmups + args.runs {
        for (i, contender) in contenders.iter().enumerate() {
            let (wall, cpu) = contender.time(bench)?;
            if round >= args.warmups {
                walls[i].push(wall);
                cpus[i].push(cpu);
            }
        }
    }
    Ok(walls
        .into_iter()
        .zip(cpus)
        .map(|(walls, cpus)| Stats {
            min: walls.iter().copied().min().unwrap_or_default(),
            p95: percentile(&walls, 95),
            median: median(walls),
            cpu: median(cpus),
        })
        .collect())
}

/// The `median_ns min_ns count` a warm mode of leakwatch-bench prints.
#[derive(Debug, Clone, Copy)]
struct InProcess {
    median: Duration,
    min: Duration,
    count: usize,
}

fn in_process(bench: &Path, words: &[&str]) -> Result<InProcess> {
    let line = command_text(Command::new(bench).args(words).stderr(Stdio::inherit()))
        .with_context(|| format!("`leakwatch-bench {}` failed", words.join(" ")))?;
    let fields: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let [median, min, count] = fields[..] else {
        bail!("`leakwatch-bench {}` printed {line:?}", words.join(" "));
    };
    Ok(InProcess {
        median: Duration::from_nanos(median),
        min: Duration::from_nanos(min),
        count: usize::try_from(count)?,
    })
}

/// One running `lw-helper`, spoken to over its stdin/stdout line protocol.
#[derive(Debug)]
struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
}

impl Helper {
    /// Sends one command and returns the data of its `ok` reply.
    fn send(&mut self, command: &str) -> Result<String> {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .with_context(|| format!("helper {} is gone (sending `{command}`)", self.pid))?;
        let line =
            self.line().with_context(|| format!("helper {}: no reply to `{command}`", self.pid))?;
        if let Some(data) = line.strip_prefix("ok") {
            return Ok(data.trim().to_owned());
        }
        bail!("helper {} refused `{command}`: {line}", self.pid)
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        let read = self.stdout.read_line(&mut line)?;
        ensure!(read > 0, "the helper closed its stdout");
        Ok(line.trim_end().to_owned())
    }

    /// `open KIND [PATH] N`, checking the helper says it opened what was asked for.
    fn open(&mut self, kind: &str, path: Option<&Path>, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let command = match path {
            Some(path) => format!("open {kind} {} {n}", path.display()),
            None => format!("open {kind} {n}"),
        };
        let reply = self.send(&command)?;
        let opened: usize =
            reply.split_whitespace().next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let per_unit = match kind {
            "pipe" | "unix" => 2,
            "tcp-conn" => return Ok(()),
            _ => 1,
        };
        ensure!(opened == per_unit * n, "`{command}` opened {opened} descriptors");
        Ok(())
    }

    /// Descriptors open in the helper, as /proc lists them.
    fn fd_count(&self) -> Result<usize> {
        let dir = format!("/proc/{}/fd", self.pid);
        Ok(std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))?.count())
    }

    /// The soft "Max open files" of the helper; `None` is unlimited.
    fn fd_soft_limit(&self) -> Result<Option<u64>> {
        let path = format!("/proc/{}/limits", self.pid);
        let limits = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let soft = limits
            .lines()
            .find_map(|l| {
                l.strip_prefix("Max open files")?.split_whitespace().next().map(str::to_owned)
            })
            .with_context(|| format!("no open-files row in {path}"))?;
        Ok(soft.parse().ok())
    }
}

/// Every helper started, and every process they spawned: killed on drop, so an
/// error part-way leaves nothing behind.
#[derive(Debug, Default)]
struct Helpers {
    list: Vec<Helper>,
    /// Pids the helpers reported spawning (they outlive their parent by design).
    extra: Vec<u32>,
}

impl Helpers {
    /// Starts `lw-helper` and waits for `ready PID`; returns its index.
    fn start(&mut self, exe: &Path) -> Result<usize> {
        let mut child = Command::new(exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("could not start {}", exe.display()))?;
        let pid = child.id();
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("helper {pid} has no stdio pipes");
        };
        self.list.push(Helper { child, stdin, stdout: BufReader::new(stdout), pid });
        let index = self.list.len() - 1;
        let line =
            self.list[index].line().with_context(|| format!("helper {pid} did not start"))?;
        ensure!(
            line == format!("ready {pid}"),
            "helper {pid} said {line:?} instead of `ready {pid}`"
        );
        Ok(index)
    }

    fn get(&mut self, index: usize) -> &mut Helper {
        &mut self.list[index]
    }

    /// SIGKILLs every helper and everything below them, then waits until they are
    /// gone. Idempotent.
    fn kill_all(&mut self) {
        if self.list.is_empty() && self.extra.is_empty() {
            return;
        }
        let roots: Vec<u32> = self.list.iter().map(|h| h.pid).collect();
        let mut pids: HashSet<u32> = descendants(&process_table(), &roots);
        pids.extend(self.extra.drain(..));
        pids.extend(&roots);
        let alive: Vec<u32> = pids.into_iter().filter(|&pid| is_alive(pid)).collect();
        for chunk in alive.chunks(500) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg("--")
                .args(chunk.iter().map(u32::to_string))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for mut helper in self.list.drain(..) {
            let _ = helper.child.kill();
            let _ = helper.child.wait();
        }
        // The spawned ones are reaped by init (or a subreaper): wait until they are
        // dead, then a little longer until they have left the table, so the next
        // section, or the user, finds it as it was.
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive.iter().any(|&pid| is_alive(pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while alive.iter().any(|&pid| Path::new(&format!("/proc/{pid}")).exists())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A scratch directory for the helper's files, removed on drop.
#[derive(Debug)]
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new() -> Result<Scratch> {
        let path = std::env::temp_dir().join(format!("leakwatch-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// pid → ppid for every process in /proc.
fn process_table() -> HashMap<u32, u32> {
    let mut table = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return table;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(ppid) = stat_field(pid, 1).and_then(|f| f.parse().ok()) {
            table.insert(pid, ppid);
        }
    }
    table
}

/// Field `n` after the `(comm)` of /proc/PID/stat (0 is the state, 1 the ppid).
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(n).map(str::to_owned)
}

/// Alive and not yet a zombie.
fn is_alive(pid: u32) -> bool {
    stat_field(pid, 0).is_some_and(|state| state != "Z" && state != "X")
}

/// The roots and all their descendants in `table`.
fn descendants(table: &HashMap<u32, u32>, roots: &[u32]) -> HashSet<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &ppid) in table {
        children.entry(ppid).or_default().push(pid);
    }
    let mut found: HashSet<u32> = HashSet::new();
    let mut stack: Vec<u32> = roots.iter().copied().filter(|pid| table.contains_key(pid)).collect();
    while let Some(pid) = stack.pop() {
        if found.insert(pid) {
            stack.extend(children.get(&pid).into_iter().flatten());
        }
    }
    found
}

/// Stdout of a command that must succeed.
fn command_text(cmd: &mut Command) -> Option<String> {
    let output = cmd.stdin(Stdio::null()).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    if text.trim().is_empty() {
        // `lsof -v` answers on stderr.
        text = String::from_utf8_lossy(&output.stderr).into_owned();
    }
    Some(text)
}

/// The 1, 5 and 15 minute load averages, `?` where unknown.
fn load_average() -> String {
    read_trimmed("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// The version of `package` in the workspace's Cargo.lock.
fn locked_version(package: &str) -> Option<String> {
    let lock = std::fs::read_to_string(util::workspace_root().join("Cargo.lock")).ok()?;
    let mut lines = lock.lines();
    let wanted = format!("name = \"{package}\"");
    while let Some(line) = lines.next() {
        if line == wanted {
            let version = lines.next()?.strip_prefix("version = \"")?.strip_suffix('"')?;
            return Some(version.to_owned());
        }
    }
    None
}

/// `12.3 ms`, `456 µs`, `1.23 s`.
fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else if secs >= 0.01 {
        format!("{:.1} ms", secs * 1e3)
    } else if secs >= 0.001 {
        format!("{:.2} ms", secs * 1e3)
    } else if secs >= 0.000_01 {
        format!("{:.1} µs", secs * 1e6)
    } else {
        format!("{:.2} µs", secs * 1e6)
    }
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
}

/// `10,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
