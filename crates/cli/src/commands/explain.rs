//! `leakwatch explain TARGET|PID`: says what is leaking and why. It watches the
//! process for a short window, keeps what was opened in it and is still open (the
//! survivors: churn does not count), reads socket states, the children's tables
//! and the orphan facts, and names the leak shapes it recognises with their
//! evidence and a hint for the developer; anything else is shown raw.

use super::{
    configured_target, engine_socket, explain as explain_error, parse_duration, probe, store_path,
};
use crate::output;
use leakwatch_core::actions::locate::{PortMemo, locate};
use leakwatch_core::api::{self, ClientError};
use leakwatch_core::diagnose::signatures::MIN_SURVIVORS;
use leakwatch_core::diagnose::{
    Baseline, BaselineReason, ChildFacts, ChildTable, Diagnosis, Evidence, Mark, OrphanFacts,
    SinceMark, Survivors, diagnose,
};
use leakwatch_core::escape::escape;
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
    Baselines you mark: `leakwatch explain TARGET --mark` asks the running engine (the daemon, \
    `watch` or the app) to remember the target's descriptors now. From then on `leakwatch \
    explain TARGET` reports the survivors since that mark instead of watching for --observe \
    (`baseline` says which it used, `survivors.since` since when); a restart of the target \
    ends the mark. With no engine running, --mark fails and says so.\n\n\
    JSON of --mark: [{instance, target, process {pid, start_time}, at, descriptors}].\n\n\
    JSON (--json): {pid, start_time, name, target, baseline (observation|marked), mark \
    {instance, target, process, at, descriptors}|null, observed_seconds, survivors {since, at, \
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
    /// Mark a baseline on the configured TARGET now, in the running engine;
    /// later `explain TARGET` reports the survivors since this moment.
    #[arg(long)]
    mark: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    pid: u32,
    start_time: u64,
    name: String,
    target: Option<String>,
    /// What the survivors are counted from.
    baseline: BaselineReason,
    /// The mark they are counted from, when `baseline` is `marked`.
    mark: Option<Mark>,
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
    if args.mark {
        return mark(args, json);
    }
    let mut probe = probe()?;
    let (pid, target) = resolve(args, &mut probe)?;
    let process = probe.process(pid).map_err(explain_error)?;
    let mut idle = IdleTracker::new();
    let first = probe.processes().map_err(explain_error)?;
    idle.observe(&first, unix_millis(SystemTime::now()));
    let marked = target.as_deref().and_then(|name| since_mark(name, process.id));
    let (survivors, after, mark) = match marked {
        Some(since) => {
            let after = probe.fd_table(pid).map_err(explain_error)?;
            (since.survivors, after, Some(since.mark))
        }
        None => {
            let before = probe.fd_table(pid).map_err(explain_error)?;
            let started = unix_millis(SystemTime::now());
            let baseline = Baseline::new(&before, started, BaselineReason::Observation);
            drop(before);
            std::thread::sleep(args.observe);
            let after = probe.fd_table(pid).map_err(explain_error)?;
            let survivors = baseline.survivors(&after, unix_millis(SystemTime::now()));
            (survivors, after, None)
        }
    };
    if after.id != process.id {
        anyhow::bail!("pid {pid} exited while it was watched");
    }
    let now = unix_millis(SystemTime::now());
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
        baseline: if mark.is_some() { BaselineReason::Marked } else { BaselineReason::Observation },
        mark,
        observed_seconds: survivors.at.saturating_sub(survivors.since) as f64 / 1000.0,
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

/// `--mark`: asks the running engine to mark a baseline on the target now.
fn mark(args: &Args, json: bool) -> anyhow::Result<String> {
    if args.target.parse::<u32>().is_ok() {
        anyhow::bail!(
            "--mark needs a configured target's name, not a pid: the engine keeps baselines for \
             the targets it watches"
        );
    }
    let (_, target) = configured_target(args.config.as_deref(), &args.target)?;
    let socket = engine_socket()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let marks = match runtime.block_on(api::mark_baseline(&socket, &target.name)) {
        Ok(marks) => marks,
        Err(ClientError::NoEngine { .. }) => anyhow::bail!(
            "no engine is running (no socket at {}): the running engine keeps the baseline, so \
             start `leakwatch daemon`, `leakwatch watch` or the menubar app first",
            socket.display()
        ),
        Err(e) => anyhow::bail!("cannot mark a baseline for `{}`: {}", target.name, e.message()),
    };
    if json {
        return output::json(&marks);
    }
    let mut out = String::new();
    for m in &marks {
        let _ = writeln!(
            out,
            "baseline marked on {} (pid {}): {} descriptors open now",
            escape(&m.instance),
            m.process.pid,
            m.descriptors
        );
    }
    let _ = writeln!(
        out,
        "`leakwatch explain {}` now reports what survives since this moment",
        escape(&target.name)
    );
    Ok(out)
}

/// What survived on `process` since the baseline the running engine keeps
/// for `target`; `None` (the caller then watches for itself) when no engine
/// runs or nothing is marked on this process.
fn since_mark(target: &str, process: leakwatch_probe::ProcessId) -> Option<SinceMark> {
    let socket = engine_socket().ok()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    match runtime.block_on(api::since_mark(&socket, target)) {
        Ok(marks) => marks.into_iter().find(|m| m.mark.process == process),
        Err(ClientError::NoEngine { .. }) => None,
        Err(e) => {
            // Not fatal: the window watched here still answers.
            if !matches!(&e, ClientError::Status { status, .. } if status.as_u16() == 404) {
                eprintln!("leakwatch: no marked baseline used: {}", e.message());
            }
            None
        }
    }
}

/// A pid as given, or the process a configured target's selector finds.
fn resolve(args: &Args, probe: &mut Probe) -> anyhow::Result<(u32, Option<String>)> {
    if let Ok(pid) = args.target.parse::<u32>() {
        return Ok((pid, None));
    }
    let (_, target) = configured_target(args.config.as_deref(), &args.target)?;
    let table = probe.processes().map_err(explain_error)?;
    let pids = locate(&target.selector, &table, probe, &mut PortMemo::default())
        .map_err(|e| anyhow::anyhow!("target `{}`: {e}", target.name))?;
    let pid = pids
        .first()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("target `{}`: no process found", target.name))?;
    Ok((pid, Some(target.name)))
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
    let s = &r.survivors;
    let (since, during) = match &r.mark {
        Some(mark) => {
            let _ = writeln!(
                out,
                ": baseline marked {} ({} descriptors then)",
                ago(mark.at, s.at),
                mark.descriptors
            );
            ("opened since the mark", "growth since the mark")
        }
        None => {
            let _ = writeln!(out, ": watched {:.0} s", r.observed_seconds);
            ("opened while watched", "growth while watched")
        }
    };
    let kinds: Vec<String> = s.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        out,
        "survivors ({since}, still open): {}{}",
        s.total,
        if kinds.is_empty() { String::new() } else { format!(" ({})", kinds.join(", ")) }
    );
    let growth: Vec<String> = s.growth.iter().map(|(k, n)| format!("{k} {}", signed(*n))).collect();
    if !growth.is_empty() {
        let _ = writeln!(out, "{during}: {}", growth.join(", "));
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
