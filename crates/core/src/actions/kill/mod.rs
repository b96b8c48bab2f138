//! Kill-tree (DESIGN.md, "Escalation"): **the one place in Leakwatch that sends
//! signals.** The CLI's `kill-tree`, the app's buttons, orphan cleanup, restarts
//! and the auto-policy all stop processes through [`plan`]/[`plan_ids`] and
//! [`execute`]; nothing else in the workspace calls kill(2).
//!
//! # Escalation
//!
//! 1. Record the tree: each root and every descendant, each as a [`ProcessId`]
//!    ([`plan`]). [`execute`] re-reads the table first: what is gone by then is
//!    `already_gone`, a pid that now belongs to another process is
//!    `identity_changed`.
//! 2. SIGTERM the roots and wait up to `grace`, so that they can clean up their own
//!    children. The wait ends early once everything recorded is gone, or once the
//!    roots are gone and the rest of the tree has stopped shrinking for a moment
//!    (it is not going away on its own).
//! 3. Re-scan: every recorded process still alive, plus every newcomer, gets
//!    SIGTERM; if any of them had not had a SIGTERM yet, wait up to `grace` again
//!    (processes that already sat out a whole grace do not get a second one).
//! 4. Freeze the survivors with SIGSTOP, re-scanning until a round finds nobody
//!    new (a stopped process cannot fork), then SIGKILL them all and confirm each
//!    is gone. A zombie counts as gone: it holds no memory or descriptors and its
//!    parent (or init) reaps it. SIGKILL goes to children before their parents:
//!    when a process-group leader dies while other members of its group are
//!    stopped, the group is orphaned and the kernel sends every member SIGHUP and
//!    SIGCONT (POSIX job control), which would wake frozen processes and hit
//!    members of the group outside the tree. The kernel also does so when a
//!    member whose parent sits outside the group, in the same session, exits while
//!    others are frozen (a sibling subtree dying late, say): a frozen process can
//!    then vanish before its SIGKILL. It outlived SIGTERM either way, so it counts
//!    as `killed`, never as `exited_after_term`. (POSIX `_exit(2)`, "Consequences
//!    of Process Termination"; Linux `kill_orphaned_pgrp` in kernel/exit.c.)
//! 5. Report each process: [`Outcome`].
//!
//! **Newcomers** are processes the plan does not list, of two kinds. A process
//! whose parent is a live recorded (or newcomer) process, found by walking each
//! fresh table down from the tree, from the first one [`execute`] reads (the tree
//! may have grown while a user read the plan) to the last. And a process that
//! was re-parented (its parent died, so its ppid no longer leads to the tree) but
//! sits in a process group or session led by a recorded process: only processes
//! absent from the table taken when `execute` began count that way, so an older
//! process that merely shares a group is never swept up, and leakwatch's own
//! group and session never count. A process whose own pid is such a group or
//! session id is never a member: it got the pid of a leader that exited (the
//! kernel hands out a pid only once no process uses it as a group or session id
//! any more), so it leads a group of its own. And once a leader's pid is seen
//! held by another process, its group or session is no longer the tree's, for
//! the rest of the run. Newcomers below a protected process are not followed.
//!
//! # Identity and protections
//!
//! Before **every** signal the process is read again: its start time must still
//! be the recorded one, and the protections of DESIGN.md ("Identity") must still
//! allow it. A changed start time means the process is gone: the newcomer with
//! its pid is never signalled. On Linux the signal goes through a pidfd opened
//! *before* that re-read ([`rustix::process::pidfd_open`], then
//! `pidfd_send_signal`): the pidfd pins the process it was opened for, and the
//! re-read proves that process is the recorded one (the recorded process held the
//! pid before the pidfd was opened and still held it after, so it held it in
//! between), which closes the pid-reuse race completely. Kernels without pidfds
//! (before 5.3) fall back to kill(2) right after the re-read, like macOS, where
//! the residual window is the time between reading the start time and kill(2): a
//! few microseconds, in which the process would have to exit, be reaped, and its
//! pid be handed out again after a full wrap of the pid space.
//!
//! Start times have the resolution of a clock tick (10 ms on most Linux systems,
//! a microsecond on macOS), so a replacement started within the tick its
//! predecessor exited in carries the same identity. On Linux [`execute`] closes
//! that for every process it follows: it opens a pidfd for each when it first
//! records it (the first 256 of a run; a descriptor each) and keeps it, proving it
//! by a re-read as above; a pidfd that reports its process exited means whatever
//! runs under the pid now is another process, whatever its start time, and its
//! signals go through that pidfd, which the kernel refuses once its process is
//! gone. What stays open: a same-tick replacement between [`plan`] reading the
//! table and [`execute`] re-reading it (the plan holds no descriptors), past the
//! 256th process, on kernels without pidfds, and on macOS.
//!
//! The protections cannot be switched off: pid 0 and 1, leakwatch itself and its
//! ancestors, kernel threads, other users' processes (unless running as root
//! *and* [`Guard::allow_other_users`]) and anything matching [`Guard::protect`]
//! are never signalled. They are checked when planning (a protected root is
//! refused with [`KillError::Refused`], a protected process inside a tree is
//! planned as left alone while its descendants are still handled) and again
//! before every signal, so a plan edited or forged by a UI cannot get around them.

mod guard;
mod os;
mod outcome;
mod plan;
mod run;
#[cfg(test)]
mod tests;

pub use guard::Guard;
pub use outcome::{Outcome, OutcomeKind, Refusal, Sig, Survival};

use guard::Shield;
use plan::{Root, build_plan, pinned_roots};
use run::Run;

use crate::escape::{escape, escape_argv};
use leakwatch_probe::{ErrorKind, Probe, ProcessId};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// How often waits re-read the recorded processes (stretched for big trees).
const POLL: Duration = Duration::from_millis(20);
/// Step 2 ends this long after the roots are gone if nothing else went away.
const SETTLE: Duration = Duration::from_millis(250);
/// How long SIGKILLed processes get to disappear before they count as survivors.
const CONFIRM: Duration = Duration::from_secs(5);
/// Most SIGSTOP rounds (each finds the children forked before the last round).
const FREEZE_ROUNDS: usize = 50;
/// Most extra rounds after SIGKILL for processes that slipped through.
const STRAGGLER_ROUNDS: usize = 5;
/// Most processes of one run pinned by a pidfd: a descriptor each, so a huge tree
/// cannot exhaust leakwatch's own; the rest are checked by start time alone.
const MAX_PINS: usize = 256;

/// One process of a [`KillPlan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PlannedProcess {
    #[serde(flatten)]
    pub id: ProcessId,
    pub ppid: u32,
    /// Depth below its root (0 for a root).
    pub depth: usize,
    pub name: String,
    pub argv: Vec<String>,
    pub rss_bytes: Option<u64>,
    /// Why it will be left alone, if it will: a protection, or (for a root of
    /// [`plan_ids`]) that it is no longer running. [`execute`] never signals a
    /// process with a reason here, and checks the protections again itself.
    pub protected: Option<Refusal>,
}

/// What [`execute`] will do: the roots, the grace, and every recorded process,
/// depth first (each root followed by its descendants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct KillPlan {
    pub roots: Vec<ProcessId>,
    #[serde(rename = "grace_seconds", with = "secs")]
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub grace: Duration,
    pub processes: Vec<PlannedProcess>,
}

impl KillPlan {
    /// The plan in words, for confirmations in the CLI and the app: who gets
    /// SIGTERM, the grace, what happens to survivors, and every process.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let targets: Vec<&PlannedProcess> =
            self.processes.iter().filter(|p| p.protected.is_none()).collect();
        if targets.is_empty() {
            out.push_str("Nothing to signal.\n");
        } else {
            let rss: u64 = targets.iter().filter_map(|p| p.rss_bytes).sum();
            let trees = if self.roots.len() == 1 {
                "1 tree".to_owned()
            } else {
                format!("{} trees", self.roots.len())
            };
            let _ = writeln!(
                out,
                "Stop {} ({trees}, {} resident):",
                plural(targets.len(), "process", "processes"),
                crate::rules::human_bytes(rss)
            );
            let roots: Vec<String> = self
                .processes
                .iter()
                .filter(|p| p.depth == 0 && p.protected.is_none())
                .map(|p| format!("{} ({})", p.id.pid, escape(&p.name)))
                .collect();
            let grace = humantime::format_duration(self.grace);
            let _ = writeln!(
                out,
                "  1. SIGTERM {} and wait up to {grace} for {} to exit and clean up.",
                roots.join(", "),
                if roots.len() == 1 { "it" } else { "them" }
            );
            let _ = writeln!(
                out,
                "  2. SIGTERM every process of the tree still running, and any started \
                 meanwhile; wait up to {grace} again."
            );
            let _ = writeln!(
                out,
                "  3. Freeze (SIGSTOP) and SIGKILL whatever is left, then confirm each is gone."
            );
        }
        let alone = self.processes.len() - targets.len();
        if alone > 0 {
            let _ = writeln!(
                out,
                "{} will be left alone (see below).",
                plural(alone, "process", "processes")
            );
        }
        out.push('\n');
        let width = self.processes.iter().map(|p| p.id.pid.to_string().len()).max().unwrap_or(3);
        let width = width.max(3);
        let _ = writeln!(out, "  {:>width$}  {:>10}  COMMAND", "PID", "RSS");
        for p in &self.processes {
            let rss = p.rss_bytes.map_or_else(|| "-".to_owned(), crate::rules::human_bytes);
            let command = if p.argv.is_empty() {
                format!("[{}]", escape(&p.name))
            } else {
                escape_argv(&p.argv)
            };
            let _ =
                write!(out, "  {:>width$}  {rss:>10}  {}{command}", p.id.pid, "  ".repeat(p.depth));
            if let Some(reason) = &p.protected {
                let _ = write!(out, "   [left alone: {reason}]");
            }
            out.push('\n');
        }
        out
    }
}

/// The outcome for one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ProcessOutcome {
    #[serde(flatten)]
    pub id: ProcessId,
    pub name: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What [`execute`] did: every recorded process in plan order, then the
/// newcomers in the order they were found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct KillReport {
    pub processes: Vec<ProcessOutcome>,
    #[serde(rename = "elapsed_seconds", with = "secs")]
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub elapsed: Duration,
}

impl KillReport {
    /// Whether every process of the report is gone: no survivor, and nothing left
    /// alone for a protection.
    pub fn all_gone(&self) -> bool {
        self.processes.iter().all(|p| p.outcome.is_gone())
    }

    /// The processes with this outcome.
    pub fn with_outcome(&self, kind: OutcomeKind) -> Vec<&ProcessOutcome> {
        self.processes.iter().filter(|p| p.outcome.kind() == kind).collect()
    }
}

/// Why there is no plan.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error("pid {pid}: no such process")]
    NoSuchProcess { pid: u32 },
    /// A root is protected (DESIGN.md, "Identity"): nothing is planned.
    #[error("pid {pid}: refusing to signal it: {reason}")]
    Refused { pid: u32, reason: Refusal },
    #[error(transparent)]
    Probe(#[from] leakwatch_probe::Error),
}

/// Records the trees below `roots` (pids as the user gave them). A root that
/// does not exist is [`KillError::NoSuchProcess`]; a protected root is
/// [`KillError::Refused`]. Roots inside another root's tree are planned once.
pub fn plan(
    probe: &mut Probe,
    roots: &[u32],
    grace: Duration,
    guard: &Guard,
) -> Result<KillPlan, KillError> {
    let table = probe.processes()?;
    let mut specs = Vec::with_capacity(roots.len());
    for &pid in roots {
        match table.iter().find(|p| p.id.pid == pid) {
            Some(p) => specs.push(Root::Live(p.id)),
            // The scan leaves out what it may not read; ask again for the reason.
            None => match probe.process(pid) {
                Ok(p) => {
                    return Err(KillError::Refused {
                        pid,
                        reason: Refusal::Unreadable { uid: p.uid },
                    });
                }
                Err(e) if e.kind() == ErrorKind::NoSuchProcess => {
                    return Err(KillError::NoSuchProcess { pid });
                }
                Err(e) => return Err(e.into()),
            },
        }
    }
    build_plan(&table, &specs, grace, guard)
}

/// Records the trees below `roots` pinned by identity (from an orphan list or a
/// watched target). A root that is gone, or whose pid now belongs to another
/// process, is planned as left alone with the reason, so the report says what
/// became of it ([`Outcome::AlreadyGone`] or [`Outcome::IdentityChanged`]); its
/// pid's new owner is not touched. A protected root is [`KillError::Refused`].
pub fn plan_ids(
    probe: &mut Probe,
    roots: &[ProcessId],
    grace: Duration,
    guard: &Guard,
) -> Result<KillPlan, KillError> {
    let table = probe.processes()?;
    let specs = pinned_roots(&table, roots, |_| None);
    build_plan(&table, &specs, grace, guard)
}

/// [`plan_ids`] for many trees at once (orphan clean-up, the idle reaper): a
/// protected root is not an error but planned as left alone with the reason,
/// and its tree is not touched, so one protected tree does not stop the others
/// from being cleaned up. The report then says `protected` for it.
pub fn plan_trees(
    probe: &mut Probe,
    roots: &[ProcessId],
    grace: Duration,
    guard: &Guard,
) -> Result<KillPlan, KillError> {
    let table = probe.processes()?;
    let shield = Shield::new(Some(&table));
    let specs = pinned_roots(&table, roots, |p| shield.check(guard, p));
    build_plan(&table, &specs, grace, guard)
}

/// Runs the escalation of the module docs on `plan`. Sends nothing to a process
/// whose identity changed or that a protection covers (checked again here,
/// whatever the plan says), and never fails: what could not be done is in the
/// report as `survived` with the reason.
pub fn execute(probe: &mut Probe, plan: &KillPlan, guard: &Guard) -> KillReport {
    let started = Instant::now();
    let mut run = Run::start(probe, plan, guard);
    // Step 2: the roots, and a grace to clean up their own children.
    let roots: Vec<usize> = run.pending().filter(|&i| run.entries[i].root).collect();
    for &i in &roots {
        run.send(i, Sig::Term);
    }
    if run.signalled {
        let mut last_count = run.pending().count();
        let mut last_change = Instant::now();
        run.wait(plan.grace, |run| {
            let count = run.pending().count();
            if count != last_count {
                (last_count, last_change) = (count, Instant::now());
            }
            count == 0
                || (roots.iter().all(|&i| run.entries[i].outcome.is_some())
                    && last_change.elapsed() >= SETTLE.min(plan.grace / 4))
        });
    }
    // Step 3: everyone still here, and the newcomers.
    run.scan();
    let mut first_terms = 0;
    for i in run.pending().collect::<Vec<_>>() {
        let first = !run.entries[i].termed;
        if run.send(i, Sig::Term) && first {
            first_terms += 1;
        }
    }
    if first_terms > 0 {
        run.wait(plan.grace, |run| run.pending().next().is_none());
    }
    // Step 4: freeze until nobody new turns up, then kill.
    for _ in 0..FREEZE_ROUNDS {
        run.scan();
        let mut frozen = 0;
        for i in run.pending().filter(|&i| !run.entries[i].stopped).collect::<Vec<_>>() {
            if run.send(i, Sig::Stop) {
                frozen += 1;
            }
        }
        if frozen == 0 {
            break;
        }
    }
    // Children before parents, newcomers first: see the module docs on orphaned
    // process groups.
    for i in run.pending().collect::<Vec<_>>().into_iter().rev() {
        run.send(i, Sig::Kill);
    }
    // Anything that slipped through (re-parented before it was seen) goes too.
    for _ in 0..STRAGGLER_ROUNDS {
        run.scan();
        let late: Vec<usize> = run.pending().filter(|&i| !run.entries[i].killed).collect();
        if late.is_empty() {
            break;
        }
        for &i in &late {
            run.send(i, Sig::Stop);
        }
        for &i in late.iter().rev() {
            run.send(i, Sig::Kill);
        }
    }
    run.wait(CONFIRM, |run| run.pending().next().is_none());
    run.finish(started.elapsed())
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A [`Duration`] as fractional seconds in JSON.
mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}
