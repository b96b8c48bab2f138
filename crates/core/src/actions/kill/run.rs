//! The escalation itself ([`Run`]): following the recorded processes and the
//! newcomers, re-checking identity and protections before every signal, and
//! telling how each one ended.

use super::guard::{Guard, Shield};
use super::os;
use super::outcome::{Outcome, Refusal, Sig, Survival};
use super::{KillPlan, KillReport, MAX_PINS, POLL, ProcessOutcome};
use crate::tree::ProcessTree;
use leakwatch_probe::{ErrorKind, Probe, ProcessId, ProcessInfo, ProcessState};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// One process the run follows.
#[derive(Debug)]
pub(super) struct Entry {
    id: ProcessId,
    /// A pidfd opened for this very process when it was first recorded (Linux,
    /// the first [`MAX_PINS`] entries): it outlives the pid, so a replacement
    /// with the same start time to the clock tick is told apart (see the module
    /// docs).
    pin: Option<os::Handle>,
    name: String,
    pgid: Option<u32>,
    sid: Option<u32>,
    pub(super) root: bool,
    pub(super) termed: bool,
    pub(super) stopped: bool,
    pub(super) killed: bool,
    pub(super) outcome: Option<Outcome>,
}

/// What a fresh read says about a recorded identity.
enum Life {
    Alive(ProcessInfo),
    /// No such pid, or a zombie.
    Gone,
    /// The pid belongs to a process with another start time (or to another
    /// process with the same one, told apart by a pidfd).
    Replaced,
    /// It could not be read (the message says why).
    Unknown(String),
}

/// A pidfd pinning a recorded process, or why there is none.
enum Pin {
    Some(os::Handle),
    /// No pidfd (none left to spend, or none on this system): start times only.
    None,
    Gone,
    Replaced,
}

pub(super) struct Run<'a> {
    probe: &'a mut Probe,
    guard: &'a Guard,
    shield: Shield,
    pub(super) entries: Vec<Entry>,
    index: HashMap<ProcessId, usize>,
    /// Every identity in the table when the run began: never a newcomer.
    baseline: HashSet<ProcessId>,
    /// Whether any signal was sent yet (before it, a vanished process is
    /// `already_gone`).
    pub(super) signalled: bool,
    /// Group and session ids whose leader's pid was seen held by another
    /// process: those groups are no longer the tree's, for the rest of the run.
    lost_groups: HashSet<u32>,
    /// How many entries hold a pin (at most [`MAX_PINS`]).
    pins: usize,
}

impl<'a> Run<'a> {
    /// Step 1: re-reads the table and settles what is already gone or protected.
    pub(super) fn start(probe: &'a mut Probe, plan: &KillPlan, guard: &'a Guard) -> Run<'a> {
        let table = probe.processes().ok();
        let shield = Shield::new(table.as_deref());
        let mut run = Run {
            probe,
            guard,
            shield,
            entries: Vec::new(),
            index: HashMap::new(),
            baseline: table.iter().flatten().map(|p| p.id).collect(),
            signalled: false,
            lost_groups: HashSet::new(),
            pins: 0,
        };
        let by_pid: HashMap<u32, &ProcessInfo> =
            table.iter().flatten().map(|p| (p.id.pid, p)).collect();
        let mut planned: Vec<(ProcessId, String, Option<Refusal>)> =
            plan.processes.iter().map(|p| (p.id, p.name.clone(), p.protected.clone())).collect();
        // A hand-made plan may name a root without listing it.
        for root in &plan.roots {
            if !planned.iter().any(|(id, ..)| id == root) {
                planned.push((*root, String::new(), None));
            }
        }
        for (id, name, refusal) in planned {
            if run.index.contains_key(&id) {
                continue;
            }
            let current = match &table {
                Some(_) => match by_pid.get(&id.pid) {
                    Some(p) if p.id != id => Life::Replaced,
                    Some(p) if is_dead(p.state) => Life::Gone,
                    Some(p) => Life::Alive((*p).clone()),
                    None => Life::Gone,
                },
                None => run.life(id),
            };
            let (outcome, info, pin) = match current {
                Life::Gone => (Some(Outcome::AlreadyGone), None, None),
                Life::Replaced => (Some(Outcome::IdentityChanged), None, None),
                Life::Unknown(_) => (None, None, None),
                Life::Alive(p) => {
                    let refusal = refusal.or_else(|| run.shield.check(guard, &p));
                    let pin = if refusal.is_none() { run.pin(id) } else { Pin::None };
                    match pin {
                        Pin::Gone => (Some(Outcome::AlreadyGone), None, None),
                        Pin::Replaced => (Some(Outcome::IdentityChanged), None, None),
                        Pin::Some(handle) => (None, Some(p), Some(handle)),
                        Pin::None => {
                            (refusal.map(|reason| Outcome::Protected { reason }), Some(p), None)
                        }
                    }
                }
            };
            let name = match (&info, name.is_empty()) {
                (Some(p), true) => p.name.clone(),
                _ => name,
            };
            run.index.insert(id, run.entries.len());
            run.entries.push(Entry {
                id,
                pin,
                name,
                pgid: info.as_ref().map(|p| p.pgid),
                sid: info.as_ref().map(|p| p.sid),
                root: plan.roots.contains(&id),
                termed: false,
                stopped: false,
                killed: false,
                outcome,
            });
        }
        // What the tree grew since the plan (a user read it at a prompt, say).
        if let Some(table) = &table {
            run.adopt_descendants(table, Vec::new());
        }
        run
    }

    /// Entries without an outcome yet.
    pub(super) fn pending(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries.iter().enumerate().filter(|(_, e)| e.outcome.is_none()).map(|(i, _)| i)
    }

    fn life(&mut self, id: ProcessId) -> Life {
        match self.probe.process(id.pid) {
            Ok(p) if p.id != id => Life::Replaced,
            Ok(p) if is_dead(p.state) => Life::Gone,
            Ok(p) => Life::Alive(p),
            Err(e) if e.kind() == ErrorKind::NoSuchProcess => Life::Gone,
            Err(e) => Life::Unknown(e.to_string()),
        }
    }

    /// What a fresh read says about entry `i`: [`Run::life`], except that a pinned
    /// process that exited is gone even if its pid now shows the same start time
    /// (a replacement started within the same clock tick).
    fn entry_life(&mut self, i: usize) -> Life {
        let id = self.entries[i].id;
        let life = self.life(id);
        match (&life, self.entries[i].pin.as_ref().and_then(os::Handle::exited)) {
            (Life::Alive(_), Some(true)) => Life::Replaced,
            _ => life,
        }
    }

    /// A pidfd for `id`, opened then proved to be `id`'s by a re-read (the
    /// process held the pid before the pidfd was opened and after, so in
    /// between); [`Pin::None`] past [`MAX_PINS`] or where there are no pidfds.
    fn pin(&mut self, id: ProcessId) -> Pin {
        if self.pins >= MAX_PINS {
            return Pin::None;
        }
        let handle = match os::Handle::open(id.pid) {
            Ok(handle) if handle.is_pidfd() => handle,
            Ok(_) => return Pin::None,
            Err(os::Gone) => return Pin::Gone,
        };
        match self.life(id) {
            Life::Alive(_) => {
                self.pins += 1;
                Pin::Some(handle)
            }
            Life::Gone => Pin::Gone,
            Life::Replaced => Pin::Replaced,
            Life::Unknown(_) => Pin::None,
        }
    }

    /// Records that entry `i` is gone (its pid free, a zombie, or `replaced` by
    /// another process).
    fn gone(&mut self, i: usize, replaced: bool) {
        let entry = &mut self.entries[i];
        if entry.outcome.is_some() {
            return;
        }
        entry.outcome = Some(gone_outcome(self.signalled, entry.killed || entry.stopped, replaced));
    }

    /// Sends `sig` to entry `i` after checking, right before, that it is still the
    /// recorded process and still not protected. True if the signal was sent.
    pub(super) fn send(&mut self, i: usize, sig: Sig) -> bool {
        if self.entries[i].outcome.is_some() {
            return false;
        }
        // The pidfd first, then the re-read: see the module docs.
        let handle = match self.entries[i].pin.take() {
            Some(pin) => {
                self.pins -= 1;
                pin
            }
            None => match os::Handle::open(self.entries[i].id.pid) {
                Ok(handle) => handle,
                Err(os::Gone) => {
                    self.gone(i, false);
                    return false;
                }
            },
        };
        let sent = self.send_with(i, sig, &handle);
        // Kept even once settled: a leader's pin tells whether its pid was reused.
        if handle.is_pidfd() && self.pins < MAX_PINS {
            self.pins += 1;
            self.entries[i].pin = Some(handle);
        }
        sent
    }

    /// [`Run::send`] once `handle` is open.
    fn send_with(&mut self, i: usize, sig: Sig, handle: &os::Handle) -> bool {
        let id = self.entries[i].id;
        let info = match self.life(id) {
            // A pidfd of a process that exited: whatever runs under its pid now
            // (even with the same start time) is another process.
            Life::Alive(_) if handle.exited() == Some(true) => {
                self.gone(i, true);
                return false;
            }
            Life::Alive(p) => p,
            Life::Gone => {
                self.gone(i, false);
                return false;
            }
            Life::Replaced => {
                self.gone(i, true);
                return false;
            }
            Life::Unknown(_) => return false,
        };
        if let Some(reason) = self.shield.check(self.guard, &info) {
            self.entries[i].outcome = Some(Outcome::Protected { reason });
            return false;
        }
        match handle.send(id.pid, sig) {
            os::Sent::Ok => {}
            os::Sent::Gone => {
                self.gone(i, false);
                return false;
            }
            os::Sent::Failed(reason) => {
                if sig != Sig::Cont && self.entries[i].stopped {
                    let _ = handle.send(id.pid, Sig::Cont);
                }
                self.entries[i].outcome = Some(Outcome::Survived {
                    reason: Survival::SignalFailed { signal: sig, error: reason },
                });
                return false;
            }
        }
        self.signalled = true;
        let entry = &mut self.entries[i];
        match sig {
            Sig::Term => {
                entry.termed = true;
                // A stopped process keeps SIGTERM pending until it runs again.
                if info.state == ProcessState::Stopped && !entry.stopped {
                    let _ = handle.send(id.pid, Sig::Cont);
                }
            }
            Sig::Stop => entry.stopped = true,
            Sig::Kill => entry.killed = true,
            Sig::Cont => {}
        }
        true
    }

    /// Re-reads every pending entry, settling the ones that are gone.
    fn refresh(&mut self) {
        for i in self.pending().collect::<Vec<_>>() {
            match self.entry_life(i) {
                Life::Gone => self.gone(i, false),
                Life::Replaced => self.gone(i, true),
                Life::Alive(_) | Life::Unknown(_) => {}
            }
        }
    }

    /// Polls until `done` or `limit` passes.
    pub(super) fn wait(&mut self, limit: Duration, mut done: impl FnMut(&Run<'a>) -> bool) {
        // A grace too long for the clock waits "forever" rather than panicking.
        let deadline = Instant::now().checked_add(limit);
        loop {
            self.refresh();
            if done(self) {
                return;
            }
            let left =
                deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return;
            }
            // Big trees are read less often: each poll reads every pending process.
            let count = u32::try_from(self.pending().count()).unwrap_or(u32::MAX);
            let poll = POLL.max(Duration::from_micros(100).saturating_mul(count));
            std::thread::sleep(poll.min(left));
        }
    }

    /// A fresh table: settles the pending entries that are gone, and adds the
    /// newcomers (see the module docs).
    pub(super) fn scan(&mut self) {
        let Ok(table) = self.probe.processes() else {
            self.refresh();
            return;
        };
        self.shield = Shield::new(Some(&table));
        let by_pid: HashMap<u32, &ProcessInfo> = table.iter().map(|p| (p.id.pid, p)).collect();
        for i in self.pending().collect::<Vec<_>>() {
            let id = self.entries[i].id;
            let exited = self.entries[i].pin.as_ref().and_then(os::Handle::exited);
            match by_pid.get(&id.pid) {
                None => self.gone(i, false),
                Some(p) if p.id != id => self.gone(i, true),
                Some(p) if is_dead(p.state) => self.gone(i, false),
                Some(_) if exited == Some(true) => self.gone(i, true),
                Some(_) => {}
            }
        }
        // Groups and sessions led by a recorded process (never our own), as long
        // as the leader's pid is not someone else's.
        for e in &self.entries {
            let exited = e.pin.as_ref().and_then(os::Handle::exited);
            if leader_pid_reused(e.id, exited, by_pid.get(&e.id.pid).copied()) {
                self.lost_groups.insert(e.id.pid);
            }
        }
        let ours = by_pid.get(&self.shield.me).map(|p| [p.pgid, p.sid]);
        let groups: HashSet<u32> = self
            .entries
            .iter()
            .filter(|e| {
                !matches!(e.outcome, Some(Outcome::Protected { .. } | Outcome::IdentityChanged))
            })
            .filter(|e| e.pgid == Some(e.id.pid) || e.sid == Some(e.id.pid))
            .map(|e| e.id.pid)
            .filter(|pid| ours.is_none_or(|o| !o.contains(pid)))
            .filter(|pid| !self.lost_groups.contains(pid))
            .collect();
        let mut queue = Vec::new();
        // Without the first table nobody can be told apart as new: only children.
        let groups = if self.baseline.is_empty() { HashSet::new() } else { groups };
        for p in &table {
            if !self.index.contains_key(&p.id)
                && !self.baseline.contains(&p.id)
                && !is_dead(p.state)
                && joins_through_group(p, &groups)
                && self.adopt(p)
            {
                queue.push(p.id.pid);
            }
        }
        self.adopt_descendants(&table, queue);
    }

    /// Adds every live descendant of a pending entry (or of a pid in `queue`) that
    /// is not followed yet. `table` must be the one the pending entries were last
    /// checked against, so their pids are theirs.
    fn adopt_descendants(&mut self, table: &[ProcessInfo], mut queue: Vec<u32>) {
        queue.extend(self.pending().map(|i| self.entries[i].id.pid));
        let tree = ProcessTree::new(table);
        while let Some(pid) = queue.pop() {
            for child in tree.children(pid) {
                if !self.index.contains_key(&child.id) && !is_dead(child.state) && self.adopt(child)
                {
                    queue.push(child.id.pid);
                }
            }
        }
    }

    /// Adds a newcomer; true if it may be signalled (its children are then
    /// newcomers too).
    fn adopt(&mut self, p: &ProcessInfo) -> bool {
        let mut outcome =
            self.shield.check(self.guard, p).map(|reason| Outcome::Protected { reason });
        let mut pin = None;
        if outcome.is_none() {
            match self.pin(p.id) {
                Pin::Some(handle) => pin = Some(handle),
                Pin::None => {}
                // Gone before a signal: reported like the recorded ones.
                Pin::Gone => outcome = Some(gone_outcome(self.signalled, false, false)),
                Pin::Replaced => outcome = Some(gone_outcome(self.signalled, false, true)),
            }
        }
        let free = outcome.is_none();
        self.index.insert(p.id, self.entries.len());
        self.entries.push(Entry {
            id: p.id,
            pin,
            name: p.name.clone(),
            pgid: Some(p.pgid),
            sid: Some(p.sid),
            root: false,
            termed: false,
            stopped: false,
            killed: false,
            outcome,
        });
        free
    }

    /// Settles whatever is still pending, and writes the report.
    pub(super) fn finish(mut self, elapsed: Duration) -> KillReport {
        for i in self.pending().collect::<Vec<_>>() {
            let reason = match self.entry_life(i) {
                Life::Gone => {
                    self.gone(i, false);
                    continue;
                }
                Life::Replaced => {
                    self.gone(i, true);
                    continue;
                }
                Life::Unknown(why) => Survival::Unreadable { error: why },
                Life::Alive(p) => match p.state {
                    ProcessState::DiskSleep => Survival::Uninterruptible,
                    ProcessState::Traced => Survival::Traced,
                    _ if self.entries[i].killed => Survival::AfterSigkill,
                    _ => Survival::StillRunning,
                },
            };
            self.entries[i].outcome = Some(Outcome::Survived { reason });
        }
        let processes = self
            .entries
            .into_iter()
            .map(|e| ProcessOutcome {
                id: e.id,
                name: e.name,
                outcome: e.outcome.unwrap_or(Outcome::Survived { reason: Survival::Unknown }),
            })
            .collect();
        KillReport { processes, elapsed }
    }
}

/// How a recorded process that is found gone ended: before any signal of the run
/// (`signalled` false) it was already gone, or its pid was `replaced`; after, it
/// exited on SIGTERM unless it had been `forced` (frozen or SIGKILLed) first.
pub(super) fn gone_outcome(signalled: bool, forced: bool, replaced: bool) -> Outcome {
    match (signalled, forced) {
        (false, _) if replaced => Outcome::IdentityChanged,
        (false, _) => Outcome::AlreadyGone,
        (true, true) => Outcome::Killed,
        (true, false) => Outcome::ExitedAfterTerm,
    }
}

/// Whether the pid of `leader` (a recorded group or session leader) now belongs
/// to another process: a different start time, or (`exited`, from a pidfd
/// pinning the leader) the same one on a process that is not the leader. Linux
/// hands out a pid only once no process uses it as a group or session id any
/// more, so such a group emptied, and what carries its id now is the new
/// owner's: no longer the tree's.
pub(super) fn leader_pid_reused(
    leader: ProcessId,
    exited: Option<bool>,
    now: Option<&ProcessInfo>,
) -> bool {
    match now {
        None => false,
        Some(p) if p.id != leader => true,
        Some(p) => exited == Some(true) && !is_dead(p.state),
    }
}

/// Whether `p`, a process the run did not know, joins the tree through a group or
/// session the tree leads (`groups`). A process whose own pid is that group or
/// session id leads it itself: it got a recorded leader's pid, so it is a new
/// leader, never a member.
pub(super) fn joins_through_group(p: &ProcessInfo, groups: &HashSet<u32>) -> bool {
    (p.pgid != p.id.pid && groups.contains(&p.pgid))
        || (p.sid != p.id.pid && groups.contains(&p.sid))
}

fn is_dead(state: ProcessState) -> bool {
    matches!(state, ProcessState::Zombie | ProcessState::Dead)
}
