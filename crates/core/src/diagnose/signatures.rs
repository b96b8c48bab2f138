//! Known leak shapes, matched against what survived since a baseline. Each real
//! leak behind Leakwatch left a recognisable shape in the descriptor table (an
//! epoll and two unix sockets per asyncio loop, a database with its `-wal` in
//! step); naming the shape, with the evidence and a hint for the developer of the
//! leaking program, answers "what in my program is leaking?". A shape that fits
//! none is reported as unrecognised with its raw growth, never forced into a name.

use super::survivors::Survivors;
use leakwatch_probe::{FdKind, FdTable};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

/// Fewer survivors of a shape than this are noise: a busy server caught between
/// an open and its close holds a few at any instant.
pub const MIN_SURVIVORS: usize = 5;

/// Objects shared with children, at descriptors past stdio, before a missing
/// close-on-exec is reported (a jobserver pipe or an activated socket is one or two).
pub const MIN_INHERITED: usize = 4;

/// An orphan tree idle this long and holding at least [`IDLE_TREE_RSS`] is named.
pub const IDLE_TREE_AFTER: Duration = Duration::from_secs(30 * 60);
/// See [`IDLE_TREE_AFTER`].
pub const IDLE_TREE_RSS: u64 = 256 * 1024 * 1024;

/// The named leak shapes. Their `snake_case` names are the ones in JSON and in
/// the `signature` label of `leakwatch_leak_signature_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Signature {
    EventLoopsNotClosed,
    SqliteConnectionsNotClosed,
    SubprocessPipesNotClosed,
    CloseWaitSockets,
    WatchersNotRemoved,
    PathReopened,
    InheritedByChildren,
    OrphanedTree,
    IdleTreeHoldingMemory,
    /// Also what a face reads for a signature a newer engine names.
    #[serde(other)]
    Unrecognised,
}

impl Signature {
    /// Every signature, in the order findings are reported.
    pub const ALL: [Signature; 10] = [
        Signature::EventLoopsNotClosed,
        Signature::SqliteConnectionsNotClosed,
        Signature::SubprocessPipesNotClosed,
        Signature::CloseWaitSockets,
        Signature::WatchersNotRemoved,
        Signature::PathReopened,
        Signature::InheritedByChildren,
        Signature::OrphanedTree,
        Signature::IdleTreeHoldingMemory,
        Signature::Unrecognised,
    ];

    /// The canonical name.
    pub const fn name(self) -> &'static str {
        match self {
            Signature::EventLoopsNotClosed => "event_loops_not_closed",
            Signature::SqliteConnectionsNotClosed => "sqlite_connections_not_closed",
            Signature::SubprocessPipesNotClosed => "subprocess_pipes_not_closed",
            Signature::CloseWaitSockets => "close_wait_sockets",
            Signature::WatchersNotRemoved => "watchers_not_removed",
            Signature::PathReopened => "path_reopened",
            Signature::InheritedByChildren => "inherited_by_children",
            Signature::OrphanedTree => "orphaned_tree",
            Signature::IdleTreeHoldingMemory => "idle_tree_holding_memory",
            Signature::Unrecognised => "unrecognised",
        }
    }

    /// What the developer of the leaking program should look for.
    pub const fn hint(self) -> &'static str {
        match self {
            Signature::EventLoopsNotClosed => {
                "An event loop is created and never closed, usually once per request: \
                 `asyncio.new_event_loop()` without `loop.close()`, a client or session cached \
                 per loop id, a thread that runs its own loop and exits. Reuse one loop (or \
                 `asyncio.run` once at the top) and close every loop you create."
            }
            Signature::SqliteConnectionsNotClosed => {
                "A SQLite connection is opened and never closed: `sqlite3.connect()` per call \
                 without `close()` (a `with connection:` block commits, it does not close). \
                 Close it in `finally`/`contextlib.closing`, or share one connection or a pool."
            }
            Signature::SubprocessPipesNotClosed => {
                "Child processes are started with pipes that are never closed (nor the children \
                 waited for): `Popen(stdout=PIPE)` without `communicate()`/`wait()` and closing \
                 the pipes, or `pipe()` whose ends are never closed. Use `subprocess.run`, or \
                 close every pipe end and reap every child."
            }
            Signature::CloseWaitSockets => {
                "The peer closed these TCP connections and the program never did: a read that \
                 saw EOF without a `close()`, a connection pool that never drops dead \
                 connections, a response body never consumed. Close the socket on EOF and on \
                 every error path."
            }
            Signature::WatchersNotRemoved => {
                "File watchers are created and never stopped (`inotify_init` per watch, an \
                 FSEventStream or watchdog Observer per request, a dev server's reloader started \
                 again). Create one watcher and add paths to it, and stop watchers you replace."
            }
            Signature::PathReopened => {
                "One file is opened again and again and never closed: a log or config file \
                 opened per request, `open()` without `with`. Open it once, or close it."
            }
            Signature::InheritedByChildren => {
                "Children hold the same pipes and sockets as their parent past stdin, stdout and \
                 stderr: the parent's descriptors lack close-on-exec (O_CLOEXEC, \
                 `close_fds=True`, `FD_CLOEXEC`). Open with close-on-exec, and pass children \
                 only what they need."
            }
            Signature::OrphanedTree => {
                "This tree lost its parent (killed with SIGKILL or crashed) without being \
                 stopped: its children were reparented and keep running. Have the parent stop \
                 its children on exit (a process group, PR_SET_PDEATHSIG, a supervisor), and \
                 clean this one up with `leakwatch clean-orphans`."
            }
            Signature::IdleTreeHoldingMemory => {
                "An orphaned tree has used no CPU for a long time and still holds memory: a \
                 REPL, language server or worker nobody reaps. Clean it up with `leakwatch \
                 clean-orphans`, and give such workers an idle timeout."
            }
            Signature::Unrecognised => {
                "Descriptors of this kind are opened and not closed, in no shape Leakwatch \
                 knows. `leakwatch fds PID` lists them with their paths and endpoints."
            }
        }
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How sure a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub const fn name(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// One matched shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub signature: Signature,
    pub confidence: Confidence,
    /// One line, e.g. "event loops leaking: 1 epoll + 2 unix sockets each, +96/h".
    pub summary: String,
    /// What was seen, one fact a line.
    pub evidence: Vec<String>,
    pub hint: &'static str,
    /// Leaked units (loops, connections, descriptors) behind the finding.
    pub count: usize,
    /// Units per hour since the baseline, when the baseline is old enough to say.
    pub per_hour: Option<f64>,
}

/// What a process's children hold, for the inherited-descriptor and pipe shapes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChildFacts {
    /// Direct children alive now.
    pub live: usize,
    /// Direct children that exited and were never waited for.
    pub zombies: usize,
    /// Children whose descriptors past stdio hold an object the parent holds.
    pub sharing: usize,
    /// Distinct objects held by the parent and, past stdio, by a child.
    pub shared_objects: usize,
    /// `shared_objects` by kind.
    pub shared_kinds: BTreeMap<FdKind, usize>,
}

/// One child as the caller read it: whether it is a zombie, and its table if
/// readable.
#[derive(Debug, Clone)]
pub struct ChildTable {
    pub zombie: bool,
    pub table: Option<FdTable>,
}

impl ChildFacts {
    /// Compares the parent's objects with its children's. A child's stdin, stdout
    /// and stderr are left out: a pipe handed to a child as its stdout is the
    /// point of the pipe, not a missing close-on-exec.
    pub fn from_tables(parent: &FdTable, children: &[ChildTable]) -> Self {
        let mut parent_objects: HashMap<u64, FdKind> = HashMap::new();
        for (index, fd) in parent.fds.iter().enumerate() {
            if let Some(object) = parent.object(index) {
                parent_objects.insert(object, fd.kind);
            }
        }
        let mut facts = ChildFacts::default();
        let mut shared: HashSet<u64> = HashSet::new();
        for child in children {
            if child.zombie {
                facts.zombies += 1;
                continue;
            }
            facts.live += 1;
            let Some(table) = &child.table else { continue };
            let mut shares = false;
            for (index, fd) in table.fds.iter().enumerate() {
                if fd.fd <= 2 {
                    continue;
                }
                if let Some(object) = table.object(index)
                    && let Some(kind) = parent_objects.get(&object)
                {
                    shares = true;
                    if shared.insert(object) {
                        *facts.shared_kinds.entry(*kind).or_insert(0) += 1;
                    }
                }
            }
            facts.sharing += usize::from(shares);
        }
        facts.shared_objects = shared.len();
        facts
    }
}

/// What is known of an orphaned tree the process belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrphanFacts {
    /// The root's parent is pid 1 or a subreaper that did not start it.
    pub reparented: bool,
    /// Its process-group or session leader is gone.
    pub leader_gone: bool,
    /// The lineage journal saw its original parent, and that parent is dead.
    pub parent_died: bool,
    pub members: usize,
    pub rss_bytes: Option<u64>,
    /// How long the whole tree has used no CPU, where known.
    #[serde(with = "opt_secs")]
    pub idle_for: Option<Duration>,
}

/// Everything a diagnosis reads.
#[derive(Debug, Clone, Default)]
pub struct Evidence<'a> {
    pub survivors: Option<&'a Survivors>,
    pub children: Option<&'a ChildFacts>,
    pub orphan: Option<&'a OrphanFacts>,
}

/// The findings for one process, most certain first.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Diagnosis {
    pub findings: Vec<Finding>,
}

impl Diagnosis {
    /// The one line a status row and a notification carry: the most certain
    /// finding's summary, with how many others there are.
    pub fn line(&self) -> Option<String> {
        let first = self.findings.first()?;
        Some(match self.findings.len() {
            1 => first.summary.clone(),
            n => format!("{} (and {} more)", first.summary, n - 1),
        })
    }

    /// The signatures found, for the metrics' info series.
    pub fn signatures(&self) -> Vec<Signature> {
        self.findings.iter().map(|f| f.signature).collect()
    }
}

/// Names the shapes in `evidence`.
pub fn diagnose(evidence: &Evidence<'_>) -> Diagnosis {
    let mut findings = Vec::new();
    if let Some(survivors) = evidence.survivors {
        survivor_findings(survivors, evidence.children, &mut findings);
    }
    if let Some(children) = evidence.children {
        inherited(children, &mut findings);
    }
    if let Some(orphan) = evidence.orphan {
        orphan_findings(orphan, &mut findings);
    }
    // Most certain first; the order of `Signature::ALL` breaks ties.
    findings.sort_by(|a, b| b.confidence.cmp(&a.confidence).then(a.signature.cmp(&b.signature)));
    Diagnosis { findings }
}

/// Survivors not yet explained by a finding, by kind: what is left over is
/// reported as unrecognised.
struct Unexplained(BTreeMap<FdKind, usize>);

impl Unexplained {
    fn take(&mut self, kind: FdKind, n: usize) {
        if let Some(left) = self.0.get_mut(&kind) {
            *left = left.saturating_sub(n);
        }
    }
    fn get(&self, kind: FdKind) -> usize {
        self.0.get(&kind).copied().unwrap_or(0)
    }
}

fn per_hour(survivors: &Survivors, count: usize) -> Option<f64> {
    let millis = survivors.at.saturating_sub(survivors.since);
    // Under a minute a rate says more about the sampling than about the leak.
    (millis >= 60_000).then(|| count as f64 * 3_600_000.0 / millis as f64)
}

fn with_rate(summary: String, rate: Option<f64>) -> String {
    match rate {
        Some(rate) => format!("{summary}, +{}/h", rate.round()),
        None => summary,
    }
}

fn finding(
    survivors: &Survivors,
    signature: Signature,
    confidence: Confidence,
    summary: String,
    evidence: Vec<String>,
    count: usize,
) -> Finding {
    let rate = per_hour(survivors, count);
    Finding {
        signature,
        confidence,
        summary: with_rate(summary, rate),
        evidence,
        hint: signature.hint(),
        count,
        per_hour: rate,
    }
}

fn survivor_findings(s: &Survivors, children: Option<&ChildFacts>, out: &mut Vec<Finding>) {
    let mut left = Unexplained(s.kinds.clone());
    event_loops(s, &mut left, out);
    let mut explained_paths: HashSet<&str> = HashSet::new();
    sqlite(s, &mut left, &mut explained_paths, out);
    pipes(s, children, &mut left, out);
    if s.close_wait >= MIN_SURVIVORS {
        let peers: Vec<String> = s
            .endpoints
            .iter()
            .filter(|g| g.kind == FdKind::Tcp && g.name.ends_with("(CLOSE_WAIT)"))
            .take(3)
            .map(|g| format!("{} ×{}", g.name, g.count))
            .collect();
        let mut evidence = vec![format!(
            "{} TCP sockets opened since the baseline are in CLOSE_WAIT",
            s.close_wait
        )];
        evidence.extend(peers);
        out.push(finding(
            s,
            Signature::CloseWaitSockets,
            Confidence::High,
            format!("sockets the peer closed left open: {} TCP in CLOSE_WAIT", s.close_wait),
            evidence,
            s.close_wait,
        ));
        left.take(FdKind::Tcp, s.close_wait);
    }
    let watchers = s.kind(FdKind::Inotify) + s.kind(FdKind::Fsevents);
    if watchers >= MIN_SURVIVORS {
        let kind = if s.kind(FdKind::Fsevents) > s.kind(FdKind::Inotify) {
            FdKind::Fsevents
        } else {
            FdKind::Inotify
        };
        out.push(finding(
            s,
            Signature::WatchersNotRemoved,
            Confidence::High,
            format!("file watchers never removed: {watchers} {kind}"),
            vec![format!("{watchers} {kind} descriptors opened since the baseline are still open")],
            watchers,
        ));
        left.take(FdKind::Inotify, s.kind(FdKind::Inotify));
        left.take(FdKind::Fsevents, s.kind(FdKind::Fsevents));
    }
    for group in &s.paths {
        if group.count < MIN_SURVIVORS || explained_paths.contains(group.name.as_str()) {
            continue;
        }
        out.push(finding(
            s,
            Signature::PathReopened,
            Confidence::High,
            format!("one file opened again and again: {} ×{}", short(&group.name), group.count),
            vec![format!(
                "{} descriptors opened on {} since the baseline are still open",
                group.count, group.name
            )],
            group.count,
        ));
        left.take(group.kind, group.count);
    }
    for (kind, n) in &left.0 {
        let grew = s.growth.get(kind).copied().unwrap_or(0);
        if *n >= MIN_SURVIVORS && grew >= MIN_SURVIVORS as i64 {
            let mut f = finding(
                s,
                Signature::Unrecognised,
                Confidence::Low,
                format!("unrecognised: +{n} {kind}"),
                vec![format!(
                    "{n} {kind} descriptors opened since the baseline are still open \
                     (the count grew by {grew})"
                )],
                *n,
            );
            f.summary = with_rate(format!("unrecognised: +{n} {kind}"), f.per_hour);
            out.push(f);
        }
    }
}

fn event_loops(s: &Survivors, left: &mut Unexplained, out: &mut Vec<Finding>) {
    let (loop_kind, loops) = if s.kind(FdKind::Kqueue) > s.kind(FdKind::Epoll) {
        (FdKind::Kqueue, s.kind(FdKind::Kqueue))
    } else {
        (FdKind::Epoll, s.kind(FdKind::Epoll))
    };
    if loops < MIN_SURVIVORS {
        return;
    }
    let unix = s.kind(FdKind::Unix);
    let eventfd = s.kind(FdKind::Eventfd);
    let mut evidence =
        vec![format!("{loops} {loop_kind} opened since the baseline are still open")];
    // asyncio's self-pipe is a socketpair: two unix sockets per loop.
    let paired = unix * 2 >= loops * 3 && unix * 2 <= loops * 5;
    let (summary, confidence) = if paired {
        evidence.push(format!(
            "{unix} unix sockets survive beside them: 2 per loop, a self-pipe each (asyncio)"
        ));
        left.take(FdKind::Unix, unix);
        (format!("event loops leaking: 1 {loop_kind} + 2 unix sockets each"), Confidence::High)
    } else if eventfd * 2 >= loops && eventfd <= loops * 2 {
        evidence.push(format!("{eventfd} eventfd survive beside them: a waker each"));
        left.take(FdKind::Eventfd, eventfd);
        (format!("event loops leaking: 1 {loop_kind} + 1 eventfd each"), Confidence::High)
    } else {
        if unix > 0 {
            evidence.push(format!("{unix} unix sockets survive too, not 2 per loop"));
        }
        (format!("event loops leaking: {loop_kind} ×{loops}"), Confidence::Medium)
    };
    left.take(loop_kind, loops);
    out.push(finding(s, Signature::EventLoopsNotClosed, confidence, summary, evidence, loops));
}

/// A path's file name, for one-line summaries.
fn short(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn looks_like_sqlite(path: &str) -> bool {
    [".db", ".sqlite", ".sqlite3", ".db3"].iter().any(|ext| path.ends_with(ext))
}

fn sqlite<'a>(
    s: &'a Survivors,
    left: &mut Unexplained,
    explained: &mut HashSet<&'a str>,
    out: &mut Vec<Finding>,
) {
    for group in &s.paths {
        if group.kind != FdKind::File
            || group.name.ends_with("-wal")
            || group.name.ends_with("-shm")
        {
            continue;
        }
        let db = group.count;
        let wal = s.path(&format!("{}-wal", group.name));
        let shm = s.path(&format!("{}-shm", group.name));
        let journal = s.path(&format!("{}-journal", group.name));
        let in_step = wal * 2 >= db && wal <= db * 2;
        if db < MIN_SURVIVORS || !(in_step || looks_like_sqlite(&group.name)) {
            continue;
        }
        let mut evidence = vec![format!(
            "{db} descriptors opened on {} since the baseline are still open",
            group.name
        )];
        let (confidence, summary) = if in_step {
            evidence
                .push(format!("its -wal grows in step: {wal} descriptors on {}-wal", group.name));
            (
                Confidence::High,
                format!(
                    "SQLite connections never closed: {} ×{db}, -wal ×{wal}",
                    short(&group.name)
                ),
            )
        } else {
            (
                Confidence::Medium,
                format!("SQLite connections never closed: {} ×{db}", short(&group.name)),
            )
        };
        if shm > 0 {
            evidence.push(format!("-shm open {shm} times"));
        }
        if journal > 0 {
            evidence.push(format!("-journal open {journal} times"));
        }
        explained.insert(group.name.as_str());
        for g in &s.paths {
            if g.name
                .strip_prefix(group.name.as_str())
                .is_some_and(|rest| matches!(rest, "-wal" | "-shm" | "-journal"))
            {
                explained.insert(g.name.as_str());
            }
        }
        left.take(FdKind::File, db + wal + shm + journal);
        out.push(finding(
            s,
            Signature::SqliteConnectionsNotClosed,
            confidence,
            summary,
            evidence,
            db,
        ));
    }
}

fn pipes(
    s: &Survivors,
    children: Option<&ChildFacts>,
    left: &mut Unexplained,
    out: &mut Vec<Finding>,
) {
    let ends = left.get(FdKind::Pipe);
    if ends < MIN_SURVIVORS {
        return;
    }
    let mut evidence = vec![format!("{ends} pipe ends opened since the baseline are still open")];
    let zombies = children.map_or(0, |c| c.zombies);
    let live = children.map_or(0, |c| c.live);
    let kids = zombies + live;
    let (confidence, summary, count) = if kids > 0 && ends >= kids && ends <= kids * 3 {
        evidence.push(format!(
            "{kids} children ({zombies} exited and never waited for): {:.1} pipe ends each",
            ends as f64 / kids as f64
        ));
        let each = if ends >= kids * 2 { "pairs or triples" } else { "one or more" };
        let zombie_note = if zombies > 0 { format!(", {zombies} zombies") } else { String::new() };
        (
            Confidence::High,
            format!(
                "subprocess pipes not closed: {ends} pipe ends in {each} per child{zombie_note}"
            ),
            kids,
        )
    } else if s.pipe_pairs * 2 >= ends.saturating_sub(1) {
        evidence.push(format!(
            "{} pipes with both ends still held here: made with pipe() and never closed",
            s.pipe_pairs
        ));
        if zombies > 0 {
            evidence.push(format!("{zombies} zombie children"));
        }
        (Confidence::High, format!("pipes not closed: {} pairs", s.pipe_pairs), s.pipe_pairs)
    } else {
        if kids == 0 {
            evidence.push("no children now: their pipes outlived them".to_owned());
        }
        (Confidence::Medium, format!("subprocess pipes not closed: {ends} pipe ends"), ends)
    };
    left.take(FdKind::Pipe, ends);
    out.push(finding(s, Signature::SubprocessPipesNotClosed, confidence, summary, evidence, count));
}

fn inherited(children: &ChildFacts, out: &mut Vec<Finding>) {
    if children.shared_objects < MIN_INHERITED {
        return;
    }
    let kinds: Vec<String> =
        children.shared_kinds.iter().map(|(kind, n)| format!("{kind} ×{n}")).collect();
    let confidence = if children.sharing >= 2 { Confidence::High } else { Confidence::Medium };
    out.push(Finding {
        signature: Signature::InheritedByChildren,
        confidence,
        summary: format!(
            "descriptors inherited by children: {} objects in {} children",
            children.shared_objects, children.sharing
        ),
        evidence: vec![
            format!(
                "{} children hold, past stdin/stdout/stderr, {} objects the parent holds too",
                children.sharing, children.shared_objects
            ),
            format!("shared: {}", kinds.join(", ")),
        ],
        hint: Signature::InheritedByChildren.hint(),
        count: children.shared_objects,
        per_hour: None,
    });
}

fn orphan_findings(orphan: &OrphanFacts, out: &mut Vec<Finding>) {
    if orphan.reparented && (orphan.leader_gone || orphan.parent_died) {
        let mut evidence = vec!["reparented to init or a subreaper".to_owned()];
        if orphan.leader_gone {
            evidence.push("its process-group or session leader is gone".to_owned());
        }
        if orphan.parent_died {
            evidence.push("its original parent was seen and is dead".to_owned());
        }
        evidence.push(format!("{} processes in the tree", orphan.members));
        out.push(Finding {
            signature: Signature::OrphanedTree,
            confidence: if orphan.leader_gone && orphan.parent_died {
                Confidence::High
            } else {
                Confidence::Medium
            },
            summary: format!(
                "orphaned tree: parent died without stopping {} processes",
                orphan.members
            ),
            evidence,
            hint: Signature::OrphanedTree.hint(),
            count: orphan.members,
            per_hour: None,
        });
    }
    if let (Some(idle), Some(rss)) = (orphan.idle_for, orphan.rss_bytes)
        && orphan.reparented
        && idle >= IDLE_TREE_AFTER
        && rss >= IDLE_TREE_RSS
    {
        out.push(Finding {
            signature: Signature::IdleTreeHoldingMemory,
            confidence: Confidence::High,
            summary: format!(
                "idle tree holding memory: {} MiB, no CPU for {} min",
                rss / (1024 * 1024),
                idle.as_secs() / 60
            ),
            evidence: vec![
                format!("{} processes hold {} MiB resident", orphan.members, rss / (1024 * 1024)),
                format!("no CPU used for {} min", idle.as_secs() / 60),
            ],
            hint: Signature::IdleTreeHoldingMemory.hint(),
            count: orphan.members,
            per_hour: None,
        });
    }
}

mod opt_secs {
    use serde::Serializer;
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::survivors::SurvivorGroup;

    fn survivors(kinds: &[(FdKind, usize)], paths: &[(&str, usize)]) -> Survivors {
        Survivors {
            since: 0,
            at: 3_600_000,
            total: kinds.iter().map(|(_, n)| n).sum(),
            kinds: kinds.iter().copied().collect(),
            growth: kinds.iter().map(|(k, n)| (*k, *n as i64)).collect(),
            paths: paths
                .iter()
                .map(|(p, n)| SurvivorGroup {
                    kind: FdKind::File,
                    name: (*p).to_owned(),
                    count: *n,
                })
                .collect(),
            ..Survivors::default()
        }
    }

    fn only(s: &Survivors, children: Option<&ChildFacts>) -> Vec<Signature> {
        diagnose(&Evidence { survivors: Some(s), children, orphan: None }).signatures()
    }

    #[test]
    fn asyncio_loops_are_epoll_plus_two_unix_each() {
        let s = survivors(&[(FdKind::Epoll, 96), (FdKind::Unix, 192)], &[]);
        let d = diagnose(&Evidence { survivors: Some(&s), ..Evidence::default() });
        assert_eq!(d.signatures(), vec![Signature::EventLoopsNotClosed]);
        let f = &d.findings[0];
        assert_eq!(f.confidence, Confidence::High);
        assert_eq!(f.summary, "event loops leaking: 1 epoll + 2 unix sockets each, +96/h");
        assert_eq!(d.line().as_deref(), Some(f.summary.as_str()));
    }

    #[test]
    fn kqueues_without_their_sockets_are_still_loops_but_less_sure() {
        let s = survivors(&[(FdKind::Kqueue, 20)], &[]);
        let d = diagnose(&Evidence { survivors: Some(&s), ..Evidence::default() });
        assert_eq!(d.findings[0].signature, Signature::EventLoopsNotClosed);
        assert_eq!(d.findings[0].confidence, Confidence::Medium);
    }

    #[test]
    fn sqlite_db_with_wal_in_step_is_connections() {
        let s = survivors(
            &[(FdKind::File, 49)],
            &[("/srv/state.db", 24), ("/srv/state.db-wal", 24), ("/srv/state.db-shm", 1)],
        );
        let d = diagnose(&Evidence { survivors: Some(&s), ..Evidence::default() });
        assert_eq!(d.signatures(), vec![Signature::SqliteConnectionsNotClosed]);
        assert!(
            d.findings[0]
                .summary
                .starts_with("SQLite connections never closed: state.db ×24, -wal ×24")
        );
    }

    #[test]
    fn one_log_reopened_is_a_path_not_sqlite() {
        let s = survivors(&[(FdKind::File, 30)], &[("/var/log/app.log", 30)]);
        assert_eq!(only(&s, None), vec![Signature::PathReopened]);
    }

    #[test]
    fn pipes_with_zombie_children_are_subprocess_pipes() {
        let s = survivors(&[(FdKind::Pipe, 30)], &[]);
        let kids = ChildFacts { zombies: 10, ..ChildFacts::default() };
        let d = diagnose(&Evidence { survivors: Some(&s), children: Some(&kids), orphan: None });
        assert_eq!(d.signatures(), vec![Signature::SubprocessPipesNotClosed]);
        assert!(d.findings[0].summary.contains("10 zombies"), "{}", d.findings[0].summary);
    }

    #[test]
    fn pipes_held_whole_are_pairs() {
        let mut s = survivors(&[(FdKind::Pipe, 20)], &[]);
        s.pipe_pairs = 10;
        let d = diagnose(&Evidence { survivors: Some(&s), ..Evidence::default() });
        assert_eq!(d.findings[0].summary, "pipes not closed: 10 pairs, +10/h");
    }

    #[test]
    fn close_wait_sockets_are_named_only_with_endpoints() {
        let mut s = survivors(&[(FdKind::Tcp, 12)], &[]);
        // Read by kind only: no endpoints, so no CLOSE_WAIT claim, just raw growth.
        assert_eq!(only(&s, None), vec![Signature::Unrecognised]);
        s.close_wait = 12;
        assert_eq!(only(&s, None), vec![Signature::CloseWaitSockets]);
    }

    #[test]
    fn inotify_growth_is_watchers() {
        let s = survivors(&[(FdKind::Inotify, 8)], &[]);
        assert_eq!(only(&s, None), vec![Signature::WatchersNotRemoved]);
    }

    #[test]
    fn unknown_growth_stays_unrecognised_with_raw_numbers() {
        let s = survivors(&[(FdKind::Timerfd, 40)], &[]);
        let d = diagnose(&Evidence { survivors: Some(&s), ..Evidence::default() });
        assert_eq!(d.signatures(), vec![Signature::Unrecognised]);
        assert_eq!(d.findings[0].confidence, Confidence::Low);
        assert_eq!(d.findings[0].summary, "unrecognised: +40 timerfd, +40/h");
    }

    #[test]
    fn churn_leftovers_below_the_noise_floor_are_no_signature() {
        let s = survivors(
            &[(FdKind::Epoll, 1), (FdKind::Unix, 2), (FdKind::File, 3)],
            &[("/tmp/x", 3)],
        );
        assert!(only(&s, None).is_empty());
        assert_eq!(diagnose(&Evidence::default()).line(), None);
    }

    #[test]
    fn survivors_that_did_not_grow_the_count_are_not_unrecognised() {
        // Reconnected sockets replace the ones at the baseline: survivors, no growth.
        let mut s = survivors(&[(FdKind::Tcp, 10)], &[]);
        s.growth.clear();
        assert!(only(&s, None).is_empty());
    }

    #[test]
    fn shared_objects_past_stdio_are_inherited() {
        use leakwatch_probe::{Fd, ProcessId, StartTime};
        let table = |fds: &[(i32, u64)]| FdTable {
            id: ProcessId { pid: 1, start_time: StartTime(1) },
            fds: fds
                .iter()
                .map(|(fd, _)| Fd { fd: *fd, kind: FdKind::Pipe, path: None, endpoint: None })
                .collect(),
            objects: fds.iter().map(|(_, o)| Some(*o)).collect(),
        };
        let parent = table(&[(0, 1), (1, 2), (3, 10), (4, 11), (5, 12), (6, 13), (7, 99)]);
        // Child a: its stdout is the parent's pipe (handed on on purpose), and it
        // holds four more of the parent's pipes it was never given.
        let a = table(&[(0, 1), (1, 99), (3, 10), (4, 11), (5, 12), (6, 13)]);
        let b = table(&[(0, 1), (3, 10), (4, 11)]);
        let children = [
            ChildTable { zombie: false, table: Some(a) },
            ChildTable { zombie: false, table: Some(b) },
            ChildTable { zombie: true, table: None },
        ];
        let facts = ChildFacts::from_tables(&parent, &children);
        assert_eq!((facts.live, facts.zombies, facts.sharing, facts.shared_objects), (2, 1, 2, 4));
        let d = diagnose(&Evidence { children: Some(&facts), ..Evidence::default() });
        assert_eq!(d.signatures(), vec![Signature::InheritedByChildren]);
        assert_eq!(d.findings[0].confidence, Confidence::High);
    }

    #[test]
    fn orphans_by_dead_parent_and_idle_memory() {
        let orphan = OrphanFacts {
            reparented: true,
            leader_gone: true,
            parent_died: false,
            members: 3,
            rss_bytes: Some(2 << 30),
            idle_for: Some(Duration::from_secs(3600)),
        };
        let d = diagnose(&Evidence { orphan: Some(&orphan), ..Evidence::default() });
        assert_eq!(d.signatures(), vec![Signature::IdleTreeHoldingMemory, Signature::OrphanedTree]);
        let busy = OrphanFacts { idle_for: Some(Duration::from_secs(5)), ..orphan.clone() };
        let d = diagnose(&Evidence { orphan: Some(&busy), ..Evidence::default() });
        assert_eq!(d.signatures(), vec![Signature::OrphanedTree]);
        let own_group = OrphanFacts { leader_gone: false, ..busy };
        assert!(
            diagnose(&Evidence { orphan: Some(&own_group), ..Evidence::default() })
                .findings
                .is_empty()
        );
    }
}
