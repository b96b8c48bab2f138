//! The kill-tree routine against real processes: `lw-helper` children that handle,
//! ignore or sleep through SIGTERM, trees of several levels, a process that keeps
//! forking while it is killed, a pid reused inside a fresh pid namespace, and the
//! protections. Every helper (and so every process a test starts) is SIGKILLed by
//! its `Helper`'s drop, whatever the test did to it; what was started in a pid
//! namespace dies with the namespace's init.
#![cfg(target_os = "linux")]
// A panic is the failure report we want.
#![allow(clippy::unwrap_used)]

use leakwatch_core::actions::kill::{
    self, Guard, KillPlan, KillReport, Outcome, OutcomeKind, PlannedProcess, Refusal,
};
use leakwatch_probe::{Probe, ProcessId, StartTime};
use leakwatch_test_helper::{Helper, wait_until};
use std::collections::HashSet;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the re-executed test that runs inside a new pid namespace.
const NS_ENV: &str = "LEAKWATCH_KILL_TEST_IN_PIDNS";

fn probe() -> Probe {
    Probe::new().unwrap()
}

fn outcome(report: &KillReport, pid: u32) -> Outcome {
    report
        .processes
        .iter()
        .find(|p| p.id.pid == pid)
        .unwrap_or_else(|| panic!("pid {pid} not in the report: {report:#?}"))
        .outcome
        .clone()
}

/// `/proc/PID/stat`: (state, pgid, ppid, start time).
fn stat(pid: u32) -> Option<(char, u32, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = text[text.rfind(')')? + 2..].split_whitespace().collect();
    Some((
        rest.first()?.chars().next()?,
        rest.get(2)?.parse().ok()?,
        rest.get(1)?.parse().ok()?,
        rest.get(19)?.parse().ok()?,
    ))
}

/// Whether the process `id` no longer runs (gone, reused, or a zombie nobody
/// reaped yet: init on some machines reaps slowly).
fn gone(id: ProcessId) -> bool {
    match stat(id.pid) {
        None => true,
        Some((state, _, _, start)) => start != id.start_time.0 || state == 'Z' || state == 'X',
    }
}

fn alive(pid: u32) -> bool {
    matches!(stat(pid), Some((state, ..)) if state != 'Z' && state != 'X')
}

/// Live members of process group `pgid`, other than `except`.
fn live_group_members(pgid: u32, except: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == except {
            continue;
        }
        if let Some((state, group, ..)) = stat(pid)
            && group == pgid
            && state != 'Z'
            && state != 'X'
        {
            out.push(pid);
        }
    }
    out
}

/// Live children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if matches!(stat(child), Some((state, _, ppid, _)) if ppid == pid && state != 'Z') {
            out.push(child);
        }
    }
    out
}

fn assert_all_gone(report: &KillReport) {
    assert!(report.all_gone(), "{report:#?}");
    for p in &report.processes {
        assert!(gone(p.id), "{} ({}) still runs: {report:#?}", p.id.pid, p.name);
    }
}

#[test]
fn term_handler_gets_its_grace_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let mut h = Helper::spawn().unwrap();
    // The handler works 400 ms before it writes the marker and exits.
    let child = h.pids(&format!("spawn 1 term-delay 400; term-marker {}", marker.display()))[0];
    let mut probe = probe();
    // A grace far beyond any scheduling delay (issue 13: with 10 s, `took < grace`
    // flaked on a loaded 2-core machine): a kill that sat it out would take 5
    // minutes, while the handler's exit ends it at once.
    let grace = Duration::from_secs(300);
    let plan = kill::plan(&mut probe, &[child], grace, &Guard::default()).unwrap();
    assert_eq!(plan.processes.len(), 1);
    let started = Instant::now();
    let report = kill::execute(&mut probe, &plan, &Guard::default());
    let took = started.elapsed();
    assert_eq!(outcome(&report, child), Outcome::ExitedAfterTerm, "{report:#?}");
    let text = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(text.trim(), format!("terminated {child}"));
    // It was given the time its clean-up needed, and not made to sit out the grace.
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < grace / 2, "{took:?}");
    assert!(report.elapsed <= took);
    assert_all_gone(&report);
}

/// CLOCK_MONOTONIC now: the clock of `lw-helper`'s `term-log` (and of `Instant`).
fn monotonic() -> Duration {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    Duration::new(u64::try_from(now.tv_sec()).unwrap(), u32::try_from(now.tv_nsec()).unwrap())
}

/// Issue 13: this test bounded the run by `grace * 2 + 5 s` with a grace of
/// 500 ms, a bound a second grace fits in many times over, so it could not fail
/// on what it claimed. Now the child logs every SIGTERM it outlives (`term-log`)
/// and the grace is long enough to tell one from two: the run must have sent
/// SIGTERM first, waited the grace, and SIGKILLed without a second grace (the
/// rest of the run takes milliseconds; a second grace would add four seconds).
#[test]
fn ignoring_sigterm_gets_killed_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("terms");
    let mut h = Helper::spawn().unwrap();
    let child = h.pids(&format!("spawn 1 term-log {}", log.display()))[0];
    let mut probe = probe();
    let grace = Duration::from_secs(4);
    let plan = kill::plan(&mut probe, &[child], grace, &Guard::default()).unwrap();
    let began = monotonic();
    let report = kill::execute(&mut probe, &plan, &Guard::default());
    assert_eq!(outcome(&report, child), Outcome::Killed, "{report:#?}");
    assert_all_gone(&report);
    let terms: Vec<Duration> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| Duration::from_nanos(line.strip_prefix("term ").unwrap().parse().unwrap()))
        .collect();
    // Step 2's SIGTERM, and maybe step 3's (the SIGKILL may come before the
    // process runs its handler for that one): never more.
    assert!((1..=2).contains(&terms.len()), "{terms:?}");
    // SIGTERM came first, at once; it did not end the process...
    assert!(terms[0] >= began && terms[0] - began < grace, "{:?}", terms[0] - began);
    // ... which sat out its whole grace before being killed, and only one.
    assert!(report.elapsed >= grace, "{:?}", report.elapsed);
    assert!(report.elapsed < grace * 2, "a second grace: {:?}", report.elapsed);
}

#[test]
fn a_tree_of_three_levels_some_ignoring_sigterm_is_gone_completely() {
    let mut h = Helper::spawn().unwrap();
    // h (default) ─ a (ignores) ─ 2 ─ 4, all ignoring; ─ b (default) ─ 1 ─ 1.
    let a = h.pids("spawn 1 tree 2 2 ignore-term")[0];
    let b = h.pids("spawn 1 tree 2 1")[0];
    let mut probe = probe();
    let plan =
        kill::plan(&mut probe, &[h.pid()], Duration::from_millis(300), &Guard::default()).unwrap();
    assert_eq!(plan.processes.len(), 1 + 7 + 3, "{}", plan.describe());
    assert_eq!(plan.processes.iter().map(|p| p.depth).max(), Some(3));
    assert!(plan.processes.iter().all(|p| p.protected.is_none()));
    let report = kill::execute(&mut probe, &plan, &Guard::default());
    assert_all_gone(&report);
    assert_eq!(outcome(&report, h.pid()), Outcome::ExitedAfterTerm, "{report:#?}");
    assert_eq!(outcome(&report, a), Outcome::Killed, "{report:#?}");
    assert_eq!(outcome(&report, b), Outcome::ExitedAfterTerm, "{report:#?}");
    assert_eq!(report.with_outcome(OutcomeKind::Killed).len(), 7, "{report:#?}");
    assert_eq!(report.with_outcome(OutcomeKind::ExitedAfterTerm).len(), 4, "{report:#?}");
    assert_eq!(live_group_members(h.pid(), h.pid()), Vec::<u32>::new());
}

#[test]
fn a_group_leader_ignoring_sigterm_is_killed_after_its_frozen_children() {
    let mut h = Helper::spawn().unwrap();
    // h leads the process group; every member ignores SIGTERM. Were h killed while
    // its children are frozen, the orphaned group would get SIGHUP + SIGCONT.
    let kids = h.pids("tree 2 2 ignore-term");
    let mut probe = probe();
    let plan =
        kill::plan(&mut probe, &[h.pid()], Duration::from_millis(300), &Guard::default()).unwrap();
    let report = kill::execute(&mut probe, &plan, &Guard::default());
    assert_all_gone(&report);
    assert_eq!(report.with_outcome(OutcomeKind::Killed).len(), 1 + kids.len(), "{report:#?}");
}

#[test]
fn a_process_forking_while_it_is_killed_leaves_nothing_behind() {
    let mut h = Helper::spawn().unwrap();
    // It ignores SIGTERM and starts a child (that ignores SIGTERM too) every 20 ms.
    let forker = h.pids("spawn 1 ignore-term; fork-every 20 500 ignore-term")[0];
    assert!(wait_until(Duration::from_secs(30), || children(forker).len() >= 3));
    let mut probe = probe();
    let plan =
        kill::plan(&mut probe, &[forker], Duration::from_millis(300), &Guard::default()).unwrap();
    let recorded = plan.processes.len();
    let report = kill::execute(&mut probe, &plan, &Guard::default());
    assert_all_gone(&report);
    assert_eq!(outcome(&report, forker), Outcome::Killed);
    assert!(report.processes.len() > recorded, "no newcomer found: {report:#?}");
    // Every process it ever started is in the helper's group: none is left.
    assert_eq!(live_group_members(h.pid(), h.pid()), Vec::<u32>::new());
}

#[test]
fn children_forked_after_the_plan_by_a_root_that_dies_are_found() {
    let mut h = Helper::spawn().unwrap();
    // The root dies on SIGTERM; its children ignore it and are orphaned at once.
    h.ok("fork-every 20 500 ignore-term");
    assert!(wait_until(Duration::from_secs(30), || children(h.pid()).len() >= 2));
    let mut probe = probe();
    let plan =
        kill::plan(&mut probe, &[h.pid()], Duration::from_millis(300), &Guard::default()).unwrap();
    // A user reading the plan: the tree grows meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    let report = kill::execute(&mut probe, &plan, &Guard::default());
    assert_all_gone(&report);
    assert_eq!(outcome(&report, h.pid()), Outcome::ExitedAfterTerm);
    assert!(report.processes.len() > plan.processes.len(), "{report:#?}");
    assert_eq!(live_group_members(h.pid(), h.pid()), Vec::<u32>::new());
}

#[test]
fn a_changed_start_time_is_never_signalled() {
    let mut h = Helper::spawn().unwrap();
    let child = h.pids("spawn 1")[0];
    let mut probe = probe();
    let real = probe.identity(child).unwrap();
    let stale = ProcessId { pid: child, start_time: StartTime(real.start_time.0 + 1) };
    let plan = KillPlan {
        roots: vec![stale],
        grace: Duration::from_millis(200),
        processes: vec![PlannedProcess {
            id: stale,
            ppid: h.pid(),
            depth: 0,
            name: "lw-helper".to_owned(),
            argv: Vec::new(),
            rss_bytes: None,
            protected: None,
        }],
    };
    let report = kill::execute(&mut probe, &plan, &Guard::default());
    assert_eq!(outcome(&report, child), Outcome::IdentityChanged, "{report:#?}");
    assert_eq!(report.processes.len(), 1, "the newcomer's tree is not touched: {report:#?}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(child));
    assert_eq!(probe.identity(child).unwrap(), real);

    // plan_ids reports such a root instead of planning its pid's new owner.
    let plan = kill::plan_ids(&mut probe, &[stale], Duration::from_millis(200), &Guard::default())
        .unwrap();
    assert_eq!(plan.processes.len(), 1);
    assert_eq!(plan.processes[0].protected, Some(Refusal::PidReused { pid: child }));
    let report = kill::execute(&mut probe, &plan, &Guard::default());
    assert_eq!(outcome(&report, child), Outcome::IdentityChanged);
    assert!(report.all_gone());
    assert!(alive(child));
}

#[test]
fn gone_before_the_first_signal_is_already_gone() {
    let mut h = Helper::spawn().unwrap();
    let child = h.pids("spawn 1")[0];
    let mut probe = probe();
    let id = probe.identity(child).unwrap();
    let plan =
        kill::plan_ids(&mut probe, &[id], Duration::from_millis(200), &Guard::default()).unwrap();
    drop(h); // SIGKILLs the child with the helper's whole group
    assert!(wait_until(Duration::from_secs(30), || gone(id)));
    let report = kill::execute(&mut probe, &plan, &Guard::default());
    let got = outcome(&report, child);
    // Its pid may even have been handed out again in the meantime.
    assert!(matches!(got, Outcome::AlreadyGone | Outcome::IdentityChanged), "{report:#?}");
}

#[test]
fn pid_1_leakwatch_and_its_parent_are_refused() {
    let mut probe = probe();
    let guard = Guard::default();
    let grace = Duration::from_millis(100);
    let me = std::process::id();
    let parent = std::os::unix::process::parent_id();
    for (pid, why) in
        [(1, Refusal::Init), (me, Refusal::Leakwatch), (parent, Refusal::LeakwatchParent)]
    {
        match kill::plan(&mut probe, &[pid], grace, &guard) {
            Err(kill::KillError::Refused { pid: refused, reason }) => {
                assert_eq!(refused, pid);
                assert_eq!(reason, why, "{pid}: {reason}");
            }
            other => panic!("pid {pid}: {other:?}"),
        }
        let id = probe.identity(pid).unwrap();
        assert!(matches!(
            kill::plan_ids(&mut probe, &[id], grace, &guard),
            Err(kill::KillError::Refused { .. })
        ));
    }
    // A plan made by hand (or edited by a UI) gets no further: execute checks again.
    let mine = probe.identity(me).unwrap();
    let theirs = probe.identity(parent).unwrap();
    let planned = |id: ProcessId| PlannedProcess {
        id,
        ppid: 0,
        depth: 0,
        name: "x".to_owned(),
        argv: Vec::new(),
        rss_bytes: None,
        protected: None,
    };
    let plan = KillPlan {
        roots: vec![mine, theirs],
        grace,
        processes: vec![planned(mine), planned(theirs)],
    };
    let report = kill::execute(&mut probe, &plan, &guard);
    for pid in [me, parent] {
        assert!(matches!(outcome(&report, pid), Outcome::Protected { .. }), "{report:#?}");
    }
    assert!(!report.all_gone());
    // And the protect list of the config.
    let mut h = Helper::spawn().unwrap();
    let child = h.pids("spawn 1")[0];
    let guard = Guard { protect: vec![regex::Regex::new("^lw-help").unwrap()], ..Guard::default() };
    assert!(matches!(
        kill::plan(&mut probe, &[child], grace, &guard),
        Err(kill::KillError::Refused { .. })
    ));
    assert!(matches!(
        kill::plan(&mut probe, &[u32::MAX - 1], grace, &guard),
        Err(kill::KillError::NoSuchProcess { .. })
    ));
    assert!(alive(child));
}

/// A refusal no protection of this machine produces, to mark a plan by hand.
fn by_hand() -> Refusal {
    Refusal::ProtectPattern { pattern: "marked by hand".to_owned() }
}

#[test]
fn protected_members_are_left_alone_their_children_are_not() {
    let mut h = Helper::spawn().unwrap();
    let a = h.pids("spawn 1 tree 1 1")[0];
    let mut probe = probe();
    let plan =
        kill::plan(&mut probe, &[h.pid()], Duration::from_millis(300), &Guard::default()).unwrap();
    let grandchild = plan.processes.iter().find(|p| p.depth == 2).unwrap().id;
    // Every helper has the same name, so no protect pattern can single `a` out:
    // mark it in the plan instead, as planning marks a protected process.
    let mut plan = plan;
    for p in &mut plan.processes {
        if p.id.pid == a {
            p.protected = Some(by_hand());
        }
    }
    let report = kill::execute(&mut probe, &plan, &Guard::default());
    assert_eq!(outcome(&report, a), Outcome::Protected { reason: by_hand() }, "{report:#?}");
    assert!(gone(grandchild), "{report:#?}");
    assert!(alive(a));
    assert!(!report.all_gone());
}

/// Kills `unshare` (and with `--kill-child`, the namespace's init and so the
/// whole namespace) when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs pid namespaces (`unshare --pid --fork --mount-proc` and a writable ns_last_pid: root or unprivileged user namespaces)"]
fn a_pid_reused_in_a_new_pid_namespace_is_identity_changed() {
    in_pid_namespace(
        "a_pid_reused_in_a_new_pid_namespace_is_identity_changed",
        inside_namespace,
        "identity_changed confirmed",
    );
}

/// Runs the test `name` again as pid 1 of a new pid namespace with its own /proc
/// (where `ns_last_pid` can hand out a chosen pid), `inside` being what it does
/// there; passes if that run passed and printed `confirmed`. Issue 13: the tests
/// that use it are ignored with their prerequisite, and fail (rather than print
/// "skipped" and pass) when run where namespaces are not permitted.
fn in_pid_namespace(name: &str, inside: fn(), confirmed: &str) {
    if std::env::var_os(NS_ENV).is_some_and(|v| v == name) {
        inside();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let ns = ["--pid", "--fork", "--mount-proc", "--kill-child"];
    let user_ns = ["--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child"];
    let usable = |args: &[&str]| {
        Command::new("unshare")
            .args(args)
            .arg("true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let args = [&ns[..], &user_ns[..]].into_iter().find(|args| usable(args)).expect(
        "`unshare --pid --fork --mount-proc` is missing or not permitted here (needs \
         util-linux and root, or unprivileged user namespaces)",
    );
    let child = Command::new("unshare")
        .args(args)
        .arg(&exe)
        .args(["--exact", name, "--include-ignored", "--nocapture", "--test-threads=1"])
        .env(NS_ENV, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut stdout = child.0.stdout.take().unwrap();
    let mut stderr = child.0.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut status = None;
    wait_until(Duration::from_secs(120), || {
        status = child.0.try_wait().unwrap();
        status.is_some()
    });
    drop(child);
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    println!("inside the namespace ({}):\n{out}{err}", args.join(" "));
    let status = status.expect("the test in the namespace did not finish in time");
    assert!(status.success(), "{status}");
    assert!(out.contains(confirmed), "{out}");
}

/// Hands `pid` to the next process started (`spawn`), through `ns_last_pid`.
fn reuse_pid(pid: u32, mut spawn: impl FnMut() -> Child) -> Child {
    for _ in 0..50 {
        if let Err(e) = std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()) {
            panic!("cannot write /proc/sys/kernel/ns_last_pid: {e}");
        }
        let mut next = spawn();
        if next.id() == pid {
            return next;
        }
        next.kill().unwrap();
        next.wait().unwrap();
    }
    panic!("pid {pid} was not reused after 50 tries");
}

/// Regression (issue 10, item 1): a session leader of the tree exited during the
/// grace, and an unrelated `setsid` process that got its pid was adopted as a
/// "newcomer" of the tree's session, then frozen and SIGKILLed.
#[test]
#[ignore = "needs pid namespaces (`unshare --pid --fork --mount-proc` and a writable ns_last_pid: root or unprivileged user namespaces)"]
fn a_new_session_leader_on_a_reused_leader_pid_is_never_adopted() {
    in_pid_namespace(
        "a_new_session_leader_on_a_reused_leader_pid_is_never_adopted",
        reused_leader_inside_namespace,
        "reused leader pid left alone",
    );
}

fn reused_leader_inside_namespace() {
    assert_eq!(std::process::id(), 1, "expected to be the namespace's init");
    // The root ignores SIGTERM, so the kill sits out its whole grace; its child
    // leads a session of its own. The root reaps it, then blocks on stdin.
    let mut root = Command::new("sh")
        .args(["-c", "trap '' TERM; setsid sleep 600 & echo $!; wait; read x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(root.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let leader: u32 = line.trim().parse().unwrap();
    assert!(wait_until(Duration::from_secs(30), || {
        stat(leader).is_some_and(|(_, pgid, ..)| pgid == leader)
    }));
    let mut probe = probe();
    let guard = Guard::default();
    let plan = kill::plan(&mut probe, &[root.id()], Duration::from_secs(3), &guard).unwrap();
    assert!(plan.processes.iter().any(|p| p.id.pid == leader), "{plan:#?}");
    let killer = std::thread::spawn(move || kill::execute(&mut probe, &plan, &guard));

    // During the grace: the leader dies, is reaped, and its pid goes to a new
    // session leader that has nothing to do with the tree.
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill").args(["-KILL", &leader.to_string()]).status().unwrap();
    assert!(wait_until(Duration::from_secs(30), || stat(leader).is_none()));
    std::thread::sleep(Duration::from_millis(50));
    let mut stranger =
        reuse_pid(leader, || Command::new("setsid").args(["sleep", "600"]).spawn().unwrap());
    assert!(wait_until(Duration::from_secs(30), || {
        stat(leader).is_some_and(|(_, pgid, ..)| pgid == leader)
    }));
    let report = killer.join().unwrap();
    assert!(
        !report.processes.iter().any(|p| p.id.pid == leader && p.outcome == Outcome::Killed),
        "the stranger was killed: {report:#?}"
    );
    assert!(stranger.try_wait().unwrap().is_none(), "the stranger was signalled: {report:#?}");
    assert_eq!(stat(leader).map(|(state, ..)| state), Some('S'), "{report:#?}");
    assert!(root.try_wait().unwrap().is_some(), "the root outlived the kill: {report:#?}");
    stranger.kill().unwrap();
    stranger.wait().unwrap();
    println!("reused leader pid left alone: pid {leader}");
}

/// Runs as pid 1 of a new pid namespace with its own /proc.
fn inside_namespace() {
    assert_eq!(std::process::id(), 1, "expected to be the namespace's init");
    let sleeper = || Command::new("sleep").arg("600").spawn().unwrap();
    let mut probe = probe();
    let guard = Guard::default();
    let mut first = sleeper();
    let pid = first.id();
    let original = probe.identity(pid).unwrap();
    let plan = kill::plan(&mut probe, &[pid], Duration::from_millis(200), &guard).unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    // Start times are in clock ticks: let at least one pass.
    std::thread::sleep(Duration::from_millis(100));
    let mut second = reuse_pid(pid, sleeper);
    let newcomer = probe.identity(pid).unwrap();
    assert_ne!(newcomer, original, "same pid and start time: the test cannot tell them apart");

    let report = kill::execute(&mut probe, &plan, &guard);
    assert_eq!(outcome(&report, pid), Outcome::IdentityChanged, "{report:#?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(second.try_wait().unwrap().is_none(), "the newcomer was signalled");
    assert_eq!(probe.identity(pid).unwrap(), newcomer);

    // Here pid 1 is this very process: refused as pid 1 first.
    match kill::plan(&mut probe, &[1], Duration::from_millis(100), &guard) {
        Err(kill::KillError::Refused { reason, .. }) => assert_eq!(reason, Refusal::Init),
        other => panic!("{other:?}"),
    }
    second.kill().unwrap();
    second.wait().unwrap();
    let seen: HashSet<u64> = [original.start_time.0, newcomer.start_time.0].into();
    println!(
        "identity_changed confirmed: pid {pid} reused (start times {seen:?}); the newcomer was \
         not signalled"
    );
}

/// Regression (issue 10, item 13): one protected orphan tree made clean-orphans
/// (even `--dry-run`) and the idle reaper refuse every tree. `plan_trees` leaves
/// it alone, reports it `protected`, and stops the rest.
#[test]
fn one_protected_tree_is_left_alone_and_the_others_are_stopped() {
    let mut free = Command::new("sleep").arg("600").spawn().unwrap();
    let mut kept = Command::new("cat").stdin(Stdio::piped()).spawn().unwrap();
    let mut probe = probe();
    let ids = [probe.identity(free.id()).unwrap(), probe.identity(kept.id()).unwrap()];
    let guard =
        Guard { protect: vec![regex::Regex::new("^cat$").unwrap()], allow_other_users: false };
    // One tree at a time still refuses a protected root outright.
    let refused = kill::plan_ids(&mut probe, &ids, Duration::from_millis(200), &guard);
    assert!(matches!(refused, Err(kill::KillError::Refused { .. })), "{refused:?}");

    let plan = kill::plan_trees(&mut probe, &ids, Duration::from_millis(200), &guard).unwrap();
    let left_alone: Vec<(u32, &Refusal)> =
        plan.processes.iter().filter_map(|p| p.protected.as_ref().map(|r| (p.id.pid, r))).collect();
    assert_eq!(left_alone.len(), 1, "{plan:#?}");
    assert_eq!(left_alone[0].0, kept.id());
    assert_eq!(
        left_alone[0].1,
        &Refusal::ProtectPattern { pattern: "^cat$".to_owned() },
        "{plan:#?}"
    );
    assert!(plan.describe().contains("[left alone: it matches the protect pattern `^cat$`]"));

    let report = kill::execute(&mut probe, &plan, &guard);
    assert_eq!(outcome(&report, free.id()), Outcome::ExitedAfterTerm, "{report:#?}");
    assert!(matches!(outcome(&report, kept.id()), Outcome::Protected { .. }), "{report:#?}");
    free.wait().unwrap();
    assert!(kept.try_wait().unwrap().is_none(), "the protected tree was signalled");
    kept.kill().unwrap();
    kept.wait().unwrap();
}
