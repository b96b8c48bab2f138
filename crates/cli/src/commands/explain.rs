//! `leakwatch explain TARGET|PID`: says what is leaking and why. It watches the
//! process for a short window, keeps what was opened in it and is still open (the
//! survivors: churn does not count), reads socket states, the children's tables
//! and the orphan facts, and names the leak shapes it recognises with their
//! evidence and a hint for the developer; anything else is shown raw.

use super::{explain as explain_error, parse_duration, probe, store_path};
use crate::output;
use leakwatch_core::Config;
use leakwatch_core::diagnose::signatures::MIN_SURVIVORS;
use leakwatch_core::diagnose::{
    Baseline, BaselineReason, ChildFacts, ChildTable, Diagnosis, Evidence, OrphanFacts, Survivors,
    diagnose,
};
use leakwatch_core::escape::escape;
use leakwatch_core::locate::{PortMemo, locate};
use leakwatch_core::model::{UnixMillis, unix_millis};
use leakwatch_core::orphans::{IdleTracker, Lineage, OrphanReason, find_orphans};
use leakwatch_core::store::Store;
use leakwatch_probe::{FdKind, Probe, ProcessInfo, ProcessState};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// A tree whose CPU time is under this share of its age, and that used none
/// while watched, counts as idle for its whole age: `explain` watches for
/// seconds, an idle REPL has been idle for hours.
const IDLE_SHARE: f64 = 0.001;

/// Say what is leaking in a process and why: survivors, growth, leak signatures.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Watches the process for --observe (default 5s): descriptors \
    opened in that window and still open at its end are the survivors (a server that opens \
    and closes thousands has none). Their shape is matched against known leaks, each named \
    with evidence, a confidence (low, medium, high) and a hint for the developer:\n  \
    event_loops_not_closed (epoll/kqueue + 2 unix sockets each), \
    sqlite_connections_not_closed (a database with its -wal in step), \
    subprocess_pipes_not_closed (pipe ends per child, zombies), close_wait_sockets (TCP the \
    peer closed), watchers_not_removed (inotify/fsevents), path_reopened (one file many \
    times), inherited_by_children (the parent's pipes and sockets held by children: no \
    close-on-exec), orphaned_tree (parent died without stopping it), \
    idle_tree_holding_memory; any other growth is `unrecognised`, with its raw numbers.\n\n\
    For a configured TARGET it also shows the growth recorded in the history over --since \
    and the latest forensic snapshot.\n\n\
    JSON (--json): {pid, start_time, name, target, observed_seconds, survivors {since, at, \
    total, kinds, growth, paths [{kind, name, count}], endpoints [...], close_wait, \
    pipe_pairs}, children {live, zombies, sharing, shared_objects, shared_kinds}, orphan \
    {reparented, leader_gone, parent_died, members, rss_bytes, idle_for}|null, \
    history {since, from, to, total, kinds}|null, findings [{signature, confidence, summary, \
    evidence, hint, count, per_hour}], diagnosis (one line)|null, snapshot {at, reason}|null}.")]
pub(crate) struct Args {
    /// A target's name from the config, or a pid.
    target: String,
    /// How far back to read the target's recorded growth.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    since: Duration,
    /// How long to watch the process for survivors.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    observe: Duration,
    /// The config file (default: the platform's config path).
    #[arg(long, value_name = "PATH")]
    config: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    pid: u32,
    start_time: u64,
    name: String,
    target: Option<String>,
    observed_seconds: f64,
    survivors: Survivors,
    children: ChildFacts,
    orphan: Option<OrphanFacts>,
    history: Option<HistoryGrowth>,
    #[serde(flatten)]
    diagnosis: Diagnosis,
    #[serde(rename = "diagnosis")]
    line: Option<String>,
    snapshot: Option<SnapshotRef>,
}

/// What the store recorded of the target's latest series over `--since`.
#[derive(Debug, Serialize)]
struct HistoryGrowth {
    since: UnixMillis,
    from: UnixMillis,
    to: UnixMillis,
    total: i64,
    kinds: BTreeMap<FdKind, i64>,
}

#[derive(Debug, Serialize)]
struct SnapshotRef {
    at: UnixMillis,
    reason: String,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<String> {
    let mut probe = probe()?;
    let (pid, target) = resolve(args, &mut probe)?;
    let process = probe.process(pid).map_err(explain_error)?;
    let mut idle = IdleTracker::new();
    let first = probe.processes().map_err(explain_error)?;
    idle.observe(&first, unix_millis(SystemTime::now()));
    let before = probe.fd_table(pid).map_err(explain_error)?;
    let started = unix_millis(SystemTime::now());
    let baseline = Baseline::new(&before, started, BaselineReason::Observation);
    drop(before);
    std::thread::sleep(args.observe);
    let after = probe.fd_table(pid).map_err(explain_error)?;
    if after.id != process.id {
        anyhow::bail!("pid {pid} exited while it was watched");
    }
    let now = unix_millis(SystemTime::now());
    let survivors = baseline.survivors(&after, now);
    let table = probe.processes().map_err(explain_error)?;
    idle.observe(&table, now);
    let children = child_facts(&probe, &table, &after, pid);
    let orphan = orphan_facts(&probe, &table, &idle, pid, now);
    let diagnosis = diagnose(&Evidence {
        survivors: Some(&survivors),
        children: Some(&children),
        orphan: orphan.as_ref(),
    });
    let (history, snapshot) = match &target {
        Some(name) => recorded(name, args.since, now),
        None => (None, None),
    };
    let report = Report {
        pid,
        start_time: process.id.start_time.0,
        name: process.name,
        target,
        observed_seconds: now.saturating_sub(started) as f64 / 1000.0,
        survivors,
        children,
        orphan,
        history,
        line: diagnosis.line(),
        diagnosis,
        snapshot,
    };
    if json {
        return output::json(&report);
    }
    Ok(render(&report))
}

/// A pid as given, or the process a configured target's selector finds.
fn resolve(args: &Args, probe: &mut Probe) -> anyhow::Result<(u32, Option<String>)> {
    if let Ok(pid) = args.target.parse::<u32>() {
        return Ok((pid, None));
    }
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::load_default()?,
    };
    let target = config.target(&args.target).ok_or_else(|| {
        let names: Vec<&str> = config.watch.iter().map(|t| t.name.as_str()).collect();
        anyhow::anyhow!(
            "`{}` is neither a pid nor a target in the config; configured: {}",
            args.target,
            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
        )
    })?;
    let table = probe.processes().map_err(explain_error)?;
    let pids = locate(&target.selector, &table, probe, &mut PortMemo::default())
        .map_err(|e| anyhow::anyhow!("target `{}`: {e}", target.name))?;
    let pid = pids
        .first()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("target `{}`: no process found", target.name))?;
    Ok((pid, Some(target.name.clone())))
}

fn child_facts(
    probe: &Probe,
    table: &[ProcessInfo],
    parent: &leakwatch_probe::FdTable,
    pid: u32,
) -> ChildFacts {
    let children: Vec<ChildTable> = table
        .iter()
        .filter(|p| p.ppid == pid && p.id.pid != pid)
        .map(|child| {
            let zombie = child.state == ProcessState::Zombie;
            let table = if zombie {
                None
            } else {
                probe.fd_kinds(child.id.pid).ok().filter(|t| t.id == child.id)
            };
            ChildTable { zombie, table }
        })
        .collect();
    ChildFacts::from_tables(parent, &children)
}

fn orphan_facts(
    probe: &Probe,
    table: &[ProcessInfo],
    idle: &IdleTracker,
    pid: u32,
    now: UnixMillis,
) -> Option<OrphanFacts> {
    let trees = find_orphans(
        table,
        &Lineage::new(),
        idle,
        &[],
        None,
        |p| probe.fd_count(p).ok().map(|n| n as u64),
        now,
    );
    let tree = trees.into_iter().find(|t| t.members.iter().any(|m| m.id.pid == pid))?;
    let cpu: f64 = tree.members.iter().filter_map(|m| m.cpu_seconds).sum();
    let age = tree.age.as_secs_f64();
    // Idle while watched and nearly idle for its whole life: idle for its age.
    let idle_for = tree
        .idle_for
        .filter(|d| !d.is_zero())
        .map(|watched| if age > 0.0 && cpu / age < IDLE_SHARE { tree.age } else { watched });
    Some(OrphanFacts {
        reparented: true,
        leader_gone: matches!(tree.reason, OrphanReason::LeaderGone),
        parent_died: matches!(tree.reason, OrphanReason::ParentDied),
        members: tree.members.len(),
        rss_bytes: Some(tree.total_rss_bytes),
        idle_for,
    })
}

/// The growth the store recorded for the target's latest series, and its
/// latest forensic snapshot. Absent history is not an error: `explain` works on
/// any pid, watched or not.
fn recorded(
    target: &str,
    since: Duration,
    now: UnixMillis,
) -> (Option<HistoryGrowth>, Option<SnapshotRef>) {
    let Ok(path) = store_path() else { return (None, None) };
    if !path.exists() {
        return (None, None);
    }
    let Ok(store) = Store::open_read_only(&path) else { return (None, None) };
    let since = now.saturating_sub(u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    let history = store.series(target).ok().and_then(|series| {
        let latest = series.last()?;
        let samples = store.samples(latest.id, since).ok()?;
        let (first, last) = (samples.first()?, samples.last()?);
        let diff = |a: u64, b: u64| {
            i64::try_from(b).unwrap_or(i64::MAX) - i64::try_from(a).unwrap_or(i64::MAX)
        };
        let mut kinds = BTreeMap::new();
        for kind in FdKind::ALL {
            let d = diff(first.kind(kind), last.kind(kind));
            if d != 0 {
                kinds.insert(kind, d);
            }
        }
        Some(HistoryGrowth {
            since,
            from: first.at,
            to: last.at,
            total: diff(first.total, last.total),
            kinds,
        })
    });
    let snapshot = store
        .snapshots(Some(target), 0)
        .ok()
        .and_then(|s| s.into_iter().max_by_key(|s| s.at))
        .map(|s| SnapshotRef { at: s.at, reason: s.reason });
    (history, snapshot)
}

fn ago(at: UnixMillis, now: UnixMillis) -> String {
    format!("{} ago", output::age(Duration::from_millis(now.saturating_sub(at))))
}

fn signed(n: i64) -> String {
    if n > 0 { format!("+{n}") } else { n.to_string() }
}

fn render(r: &Report) -> String {
    let mut out = String::new();
    let name = escape(&r.name);
    let _ = write!(out, "pid {} ({name})", r.pid);
    if let Some(target) = &r.target {
        let _ = write!(out, ", target {}", escape(target));
    }
    let _ = writeln!(out, ": watched {:.0} s", r.observed_seconds);
    let s = &r.survivors;
    let kinds: Vec<String> = s.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        out,
        "survivors (opened while watched, still open): {}{}",
        s.total,
        if kinds.is_empty() { String::new() } else { format!(" ({})", kinds.join(", ")) }
    );
    let growth: Vec<String> = s.growth.iter().map(|(k, n)| format!("{k} {}", signed(*n))).collect();
    if !growth.is_empty() {
        let _ = writeln!(out, "growth while watched: {}", growth.join(", "));
    }
    for group in s.paths.iter().take(5) {
        let _ = writeln!(out, "  {} ×{}", escape(&group.name), group.count);
    }
    if let Some(h) = &r.history {
        let kinds: Vec<String> =
            h.kinds.iter().map(|(k, n)| format!("{k} {}", signed(*n))).collect();
        let _ = writeln!(
            out,
            "recorded growth over {} min: {} ({})",
            h.to.saturating_sub(h.from) / 60_000,
            signed(h.total),
            if kinds.is_empty() { "no kind changed".to_owned() } else { kinds.join(", ") }
        );
    }
    let c = &r.children;
    if c.live + c.zombies > 0 {
        let _ = writeln!(
            out,
            "children: {} alive, {} zombies{}",
            c.live,
            c.zombies,
            if c.shared_objects > 0 {
                format!(", {} objects shared with the parent", c.shared_objects)
            } else {
                String::new()
            }
        );
    }
    if r.diagnosis.findings.is_empty() {
        let _ = writeln!(
            out,
            "\nno leak signature: {} survivors, fewer than {MIN_SURVIVORS} of any shape",
            s.total
        );
    }
    for f in &r.diagnosis.findings {
        let _ = writeln!(
            out,
            "\n{} ({} confidence): {}",
            f.signature,
            f.confidence.name(),
            escape(&f.summary)
        );
        for line in &f.evidence {
            let _ = writeln!(out, "  evidence: {}", escape(line));
        }
        let _ = writeln!(out, "  hint: {}", f.hint);
    }
    if let (Some(snapshot), Some(target)) = (&r.snapshot, &r.target) {
        let _ = writeln!(
            out,
            "\nlatest forensic snapshot: {} ({}); see `leakwatch history {}`",
            ago(snapshot.at, r.survivors.at),
            escape(&snapshot.reason),
            escape(target)
        );
    }
    out
}
