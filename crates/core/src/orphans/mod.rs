//! Orphaned process trees (DESIGN.md, "Orphans"). They exist because of the
//! seeds: MCP servers started as `uv tool uvx X` (plus the python it runs) keep
//! running, reparented to launchd or init, whenever whatever started them is
//! SIGKILLed — eleven such pairs after three days in seed 001 — and idle multi-GB
//! REPLs that nothing ever reaps pile up (seed 003). Nobody sees them because
//! nobody owns them any more; this module finds them and describes them so a
//! person (or the opt-in idle reaper) can act.
//!
//! Everything here is pure: a process table in, trees out. The engine keeps the
//! two pieces of history detection needs across scans — the [`Lineage`] journal
//! (who started whom, recorded while the parent lived) and the [`IdleTracker`]
//! (when each process last used CPU) — and a one-shot CLI simply passes empty
//! ones.
//!
//! A process is **reparented** when its parent is pid 1, or on Linux a subreaper
//! that is not the parent it started with ([`find_orphans`] lists the evidence it
//! accepts). A reparented process is an **orphan** when its group or session
//! leader is gone, when the lineage shows its original parent died, or when it
//! matches an `[orphans] match` pattern ([`OrphanReason`]).
//!
//! Layout: [`lineage`] and [`idle`] keep history across scans, [`trees`] is the
//! data detection produces, [`detection`] finds the trees, [`wrappers`] folds
//! launchers into their workers.

use leakwatch_probe::{ProcessInfo, ProcessState};
use std::collections::HashMap;
use std::time::Duration;

pub mod detection;
pub mod idle;
pub mod lineage;
pub mod trees;
pub mod wrappers;

pub use detection::find_orphans;
pub use idle::IdleTracker;
pub use lineage::{LINEAGE_CAPACITY, LINEAGE_RETENTION, Lineage, LineageEntry, ParentRecord};
pub use trees::{OrphanMember, OrphanReason, OrphanTree};
pub use wrappers::Wrapper;

/// A process that has exited but is not reaped yet is dead for every purpose
/// here: it holds no memory or descriptors, leads nothing and cannot be signalled.
/// (Some inits, like this project's CI machine's, reap slowly.)
fn is_dead(process: &ProcessInfo) -> bool {
    matches!(process.state, ProcessState::Zombie | ProcessState::Dead)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The live (not zombie) processes of a table by pid.
fn live_by_pid(table: &[ProcessInfo]) -> HashMap<u32, &ProcessInfo> {
    table.iter().filter(|p| !is_dead(p)).map(|p| (p.id.pid, p)).collect()
}

#[cfg(test)]
mod tests {
    use super::wrappers::basename;
    use super::*;
    use crate::model::UnixMillis;
    use leakwatch_probe::{ProcessId, StartTime};
    use regex::Regex;
    use std::time::UNIX_EPOCH;

    /// "Now" in the made-up tables: a day after the epoch.
    const NOW: UnixMillis = 86_400_000;

    /// A made-up process: its own group and session leader unless changed, 1 MiB
    /// resident, started `pid` seconds after the epoch (so lower pids are older).
    fn process(pid: u32, ppid: u32, argv: &[&str]) -> ProcessInfo {
        let name = argv.first().map_or("?", |a| basename(a)).chars().take(15).collect();
        ProcessInfo {
            id: ProcessId { pid, start_time: StartTime(u64::from(pid) * 100) },
            ppid,
            pgid: pid,
            sid: pid,
            uid: 1000,
            state: ProcessState::Sleeping,
            name,
            exe: None,
            argv: argv.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>().into(),
            rss_bytes: Some(1 << 20),
            cpu_time: Some(Duration::from_millis(10)),
            threads: Some(1),
            started_at: UNIX_EPOCH + Duration::from_secs(u64::from(pid)),
            is_kernel_thread: false,
        }
    }

    fn in_group(mut p: ProcessInfo, pgid: u32, sid: u32) -> ProcessInfo {
        p.pgid = pgid;
        p.sid = sid;
        p
    }

    fn init() -> ProcessInfo {
        process(1, 0, &["/sbin/launchd"])
    }

    fn find(table: &[ProcessInfo], lineage: &Lineage, patterns: &[Regex]) -> Vec<OrphanTree> {
        find_orphans(
            table,
            lineage,
            &IdleTracker::new(),
            patterns,
            Some(1000),
            |pid| Some(u64::from(pid % 7)),
            NOW,
        )
    }

    fn pids(tree: &OrphanTree) -> Vec<u32> {
        tree.members.iter().map(|m| m.id.pid).collect()
    }

    /// Seed 001: copilot (600, in the login shell's session) started `uv tool uvx
    /// microsoft-fabric-rti-mcp` in its own process group; copilot was SIGKILLed,
    /// so uv and its python are reparented to launchd and their group leader is
    /// gone.
    fn seed_001() -> Vec<ProcessInfo> {
        vec![
            init(),
            in_group(process(500, 1, &["-zsh"]), 500, 500),
            in_group(process(700, 1, &["uv", "tool", "uvx", "microsoft-fabric-rti-mcp"]), 600, 500),
            in_group(
                process(
                    701,
                    700,
                    &["/Users/me/.cache/uv/archive-v0/x/bin/python", "microsoft-fabric-rti-mcp"],
                ),
                600,
                500,
            ),
        ]
    }

    #[test]
    fn sigkilled_parent_leaves_a_uvx_python_pair() {
        let trees = find(&seed_001(), &Lineage::new(), &[]);
        assert_eq!(trees.len(), 1, "{trees:#?}");
        let tree = &trees[0];
        assert_eq!(tree.root.pid, 700);
        assert_eq!(tree.reason, OrphanReason::LeaderGone);
        assert_eq!(pids(tree), [700, 701]);
        assert_eq!(tree.label, "uvx microsoft-fabric-rti-mcp (uv → python)");
        assert_eq!(tree.members[1].folded_into, Some(700));
        assert_eq!(tree.members[1].depth, 1);
        assert_eq!(tree.total_rss_bytes, 2 << 20);
        assert_eq!(tree.total_fds, 1, "pid % 7 each: 0 + 1");
        assert_eq!(tree.age, Duration::from_secs(86_400 - 700));
        assert_eq!(tree.idle_for, None, "never observed");
        // One row for the pair.
        let rows: Vec<(usize, u32)> = tree.rows().iter().map(|(d, m)| (*d, m.id.pid)).collect();
        assert_eq!(rows, [(0, 700)]);
        assert_eq!(tree.ids().len(), 2);
    }

    #[test]
    fn a_launchd_agent_leading_its_own_group_is_not_an_orphan() {
        let table = vec![
            init(),
            process(800, 1, &["/Applications/Agent.app/Contents/MacOS/agent"]),
            in_group(process(801, 800, &["agent-helper"]), 800, 800),
            // A daemon leading its own session: the same.
            process(900, 1, &["/usr/sbin/cupsd", "-l"]),
        ];
        assert!(find(&table, &Lineage::new(), &[]).is_empty());
        // Leading its group but not its session, whose leader is gone: a job of a
        // closed terminal.
        let mut table = table;
        table.push(in_group(process(950, 1, &["server"]), 950, 940));
        let trees = find(&table, &Lineage::new(), &[]);
        assert_eq!(trees.iter().map(|t| t.root.pid).collect::<Vec<_>>(), [950]);
        assert_eq!(trees[0].reason, OrphanReason::LeaderGone);
    }

    #[test]
    fn ids_of_zero_are_outside_the_namespace_not_gone() {
        let table = vec![init(), in_group(process(13_640, 1, &["memfd:sealed"]), 13_640, 0)];
        assert!(find(&table, &Lineage::new(), &[]).is_empty());
    }

    #[test]
    fn a_pattern_makes_a_self_led_process_an_orphan() {
        let table = vec![
            init(),
            process(900, 1, &["julia", "--project", "-e", "Gate.serve()"]),
            process(910, 1, &["/usr/sbin/cupsd"]),
            // Not reparented: a pattern alone does not make an orphan.
            process(920, 900, &["julia", "worker"]),
        ];
        let patterns = [Regex::new("^julia .*Gate").unwrap(), Regex::new("worker").unwrap()];
        let trees = find(&table, &Lineage::new(), &patterns);
        assert_eq!(trees.len(), 1);
        assert_eq!(trees[0].reason, OrphanReason::Pattern("^julia .*Gate".into()));
        assert_eq!(pids(&trees[0]), [900, 920]);
        assert_eq!(trees[0].reason.to_string(), "matches /^julia .*Gate/");
    }

    #[test]
    fn a_pattern_on_the_worker_counts_for_its_wrapper() {
        let table = vec![
            init(),
            process(300, 1, &["npm exec @playwright/mcp@latest"]),
            in_group(process(301, 300, &["sh", "-c", "mcp-server-playwright"]), 300, 300),
            in_group(process(302, 301, &["node", "/x/bin/mcp-server-playwright"]), 300, 300),
        ];
        let patterns = [Regex::new("mcp-server-playwright$").unwrap()];
        let trees = find(&table, &Lineage::new(), &patterns);
        assert_eq!(trees.len(), 1);
        assert_eq!(trees[0].label, "npm exec @playwright/mcp@latest (npm → sh → node)");
        assert!(matches!(trees[0].reason, OrphanReason::Pattern(_)));
        assert_eq!(trees[0].rows().len(), 1);
    }

    #[test]
    fn lineage_sees_the_original_parent_die() {
        // 100 (an editor) started 101, a server leading its own group and session:
        // after 100 dies, only the lineage can tell 101 from a daemon.
        let before =
            vec![init(), process(100, 1, &["editor"]), process(101, 100, &["server", "--stdio"])];
        let mut lineage = Lineage::new();
        lineage.record(&before, NOW - 10_000);
        let record = lineage.original_parent(&before[2].id).unwrap();
        assert_eq!(record.id.pid, 100);
        assert_eq!(record.name, "editor");
        assert!(lineage.original_parent(&before[1].id).is_none(), "ppid 1: nothing to learn");
        assert!(!lineage.parent_died(&before[2].id, &before));
        assert!(find(&before, &lineage, &[]).is_empty());

        let after = vec![init(), process(101, 1, &["server", "--stdio"])];
        assert!(lineage.parent_died(&after[1].id, &after));
        assert!(find(&after, &Lineage::new(), &[]).is_empty(), "no history, no evidence");
        let trees = find(&after, &lineage, &[]);
        assert_eq!(trees.len(), 1);
        assert_eq!(trees[0].reason, OrphanReason::ParentDied);
        assert_eq!(trees[0].original_parent.as_ref().map(|p| p.id.pid), Some(100));

        // A zombie parent is dead too; a pid reused by a newcomer is not the parent.
        let mut zombie = before.clone();
        zombie[1].state = ProcessState::Zombie;
        assert!(lineage.parent_died(&before[2].id, &zombie));
        let mut reused = before;
        reused[1].id.start_time = StartTime(999_999);
        assert!(lineage.parent_died(&reused[2].id, &reused));
    }

    #[test]
    fn lineage_keeps_the_first_parent_and_is_bounded() {
        let mut lineage = Lineage::with_limits(Duration::from_secs(60), 3);
        let table = vec![init(), process(10, 1, &["a"]), process(11, 10, &["b"])];
        lineage.record(&table, 0);
        // Reparented later: the first parent stays the record.
        let moved = vec![init(), process(11, 1, &["b"])];
        lineage.record(&moved, 1_000);
        assert_eq!(lineage.original_parent(&table[2].id).map(|p| p.id.pid), Some(10));
        // A parent younger than the child was not its original parent.
        let young = vec![init(), process(50, 1, &["subreaper"]), process(40, 50, &["c"])];
        lineage.record(&young, 2_000);
        assert!(lineage.entry(&young[2].id).is_none());
        // Gone for longer than the retention: forgotten.
        lineage.record(&[init()], 60_000);
        assert_eq!(lineage.len(), 1);
        lineage.record(&[init()], 62_000);
        assert!(lineage.is_empty());
        // The capacity holds even for a table of live processes.
        let mut big = vec![init(), process(2_000, 1, &["root"])];
        big.extend((2_001..2_010).map(|pid| process(pid, 2_000, &["kid"])));
        lineage.record(&big, 70_000);
        assert_eq!(lineage.len(), 3);
        // Gone entries go before live ones.
        let mut next = vec![init(), process(2_000, 1, &["root"])];
        next.extend((3_001..3_003).map(|pid| process(pid, 2_000, &["kid"])));
        lineage.record(&next, 71_000);
        assert_eq!(lineage.len(), 3);
        assert!(lineage.entry(&next[2].id).is_some() && lineage.entry(&next[3].id).is_some());
    }

    #[test]
    fn idle_time_is_cpu_time_unchanged_since() {
        let mut a = process(10, 1, &["a"]);
        let b = process(11, 1, &["b"]);
        let mut idle = IdleTracker::new();
        idle.observe(&[a.clone(), b.clone()], 1_000);
        assert_eq!(idle.idle_for(&a.id, 1_000), Some(Duration::ZERO));
        a.cpu_time = Some(Duration::from_millis(20));
        idle.observe(&[a.clone(), b.clone()], 5_000);
        assert_eq!(idle.idle_for(&a.id, 9_000), Some(Duration::from_secs(4)));
        assert_eq!(idle.idle_for(&b.id, 9_000), Some(Duration::from_secs(8)));
        // Gone identities are dropped; CPU hidden by the OS is unknown.
        let mut hidden = process(12, 1, &["c"]);
        hidden.cpu_time = None;
        idle.observe(&[b.clone(), hidden.clone()], 10_000);
        assert_eq!(idle.len(), 1);
        assert_eq!(idle.idle_for(&a.id, 10_000), None);
        assert_eq!(idle.idle_for(&hidden.id, 10_000), None);
    }

    #[test]
    fn a_tree_is_idle_only_while_every_member_is() {
        let mut table = seed_001();
        let mut idle = IdleTracker::new();
        idle.observe(&table, NOW - 60_000);
        table[3].cpu_time = Some(Duration::from_secs(1));
        idle.observe(&table, NOW - 20_000);
        let trees = find_orphans(&table, &Lineage::new(), &idle, &[], Some(1000), |_| None, NOW);
        assert_eq!(trees[0].idle_for, Some(Duration::from_secs(20)));
        assert_eq!(trees[0].total_fds, 0);
    }

    #[test]
    fn a_subreaper_inherits_an_orphan() {
        // 10 is a subreaper (a desktop session manager); 20, its child, started 30.
        let before = vec![
            init(),
            process(10, 1, &["session-manager"]),
            process(20, 10, &["host"]),
            process(30, 20, &["mcp-server"]),
        ];
        let mut lineage = Lineage::new();
        lineage.record(&before, NOW - 1_000);
        // 20 is SIGKILLed; the kernel hands 30 to the subreaper, not to pid 1.
        let after =
            vec![init(), process(10, 1, &["session-manager"]), process(30, 10, &["mcp-server"])];
        lineage.record(&after, NOW);
        let trees = find(&after, &lineage, &[]);
        assert_eq!(trees.iter().map(|t| t.root.pid).collect::<Vec<_>>(), [30]);
        assert_eq!(trees[0].reason, OrphanReason::ParentDied);
        // Without history a subreaper older than the child tells nothing...
        assert!(find(&after, &Lineage::new(), &[]).is_empty());
        // ...but `systemd --user` is known to be one, and a subreaper younger than
        // the child cannot be its original parent.
        let systemd = vec![
            init(),
            process(10, 1, &["/usr/lib/systemd/systemd", "--user"]),
            in_group(process(30, 10, &["mcp-server"]), 20, 20),
            // A service it started itself leads its own group and session.
            process(31, 10, &["/usr/bin/pipewire"]),
        ];
        let trees = find(&systemd, &Lineage::new(), &[]);
        assert_eq!(trees.iter().map(|t| t.root.pid).collect::<Vec<_>>(), [30]);
        assert_eq!(trees[0].reason, OrphanReason::LeaderGone);
        let younger =
            vec![init(), process(50, 1, &["reaper"]), in_group(process(40, 50, &["x"]), 20, 20)];
        assert_eq!(find(&younger, &Lineage::new(), &[]).len(), 1);
        // A child the lineage saw started by its current parent is not reparented.
        let mut lineage = Lineage::new();
        lineage.record(&systemd, NOW);
        assert!(find(&systemd, &lineage, &[]).is_empty());
    }

    #[test]
    fn a_candidate_inside_another_tree_belongs_to_it() {
        let before = vec![
            init(),
            in_group(process(100, 1, &["outer"]), 90, 90),
            process(110, 100, &["reaper"]),
            process(120, 110, &["middle"]),
            process(130, 120, &["inner"]),
        ];
        let mut lineage = Lineage::new();
        lineage.record(&before, NOW - 1);
        let mut after = before;
        after.remove(3);
        after[3].ppid = 110;
        let trees = find(&after, &lineage, &[]);
        assert_eq!(trees.len(), 1);
        assert_eq!(pids(&trees[0]), [100, 110, 130]);
    }

    #[test]
    fn zombies_kernel_threads_other_users_and_leakwatch_are_left_out() {
        let own = std::process::id();
        let mut zombie = in_group(process(700, 1, &["gone"]), 600, 600);
        zombie.state = ProcessState::Zombie;
        let mut kthread = in_group(process(3, 2, &[]), 0, 0);
        kthread.is_kernel_thread = true;
        let mut kthreadd = process(2, 0, &[]);
        kthreadd.is_kernel_thread = true;
        let mut other = in_group(process(710, 1, &["theirs"]), 600, 600);
        other.uid = 0;
        let me = in_group(process(own, 1, &["leakwatch", "daemon"]), 600, 600);
        let parent_of_me = in_group(process(720, 1, &["sh"]), 600, 600);
        let mut child = in_group(process(721, 720, &["sleep"]), 600, 600);
        child.state = ProcessState::Zombie;
        let mut me_below = me.clone();
        me_below.ppid = 720;
        let table = vec![init(), kthreadd.clone(), kthread.clone(), zombie, other, me, child];
        assert!(find(&table, &Lineage::new(), &[]).is_empty());
        // A tree holding leakwatch is never reported: reaping it would end us.
        let table = vec![init(), kthreadd, kthread, parent_of_me, me_below];
        assert!(find(&table, &Lineage::new(), &[]).is_empty());
        // Another leakwatch (a detached daemon, another build) neither.
        let mut me = in_group(process(own, 30, &["leakwatch", "orphans"]), 30, 30);
        me.exe = Some("/usr/bin/leakwatch".into());
        let mut daemon = in_group(process(730, 1, &["leakwatch", "daemon"]), 600, 600);
        daemon.exe = Some("/home/me/src/leakwatch/target/debug/leakwatch".into());
        let mut renamed = in_group(process(740, 1, &["lw", "daemon"]), 600, 600);
        renamed.exe = me.exe.clone();
        let server = in_group(process(750, 1, &["server"]), 600, 600);
        let table = vec![init(), process(30, 1, &["zsh"]), me, daemon, renamed, server];
        let trees = find(&table, &Lineage::new(), &[]);
        assert_eq!(trees.iter().map(|t| t.root.pid).collect::<Vec<_>>(), [750]);
        // All users: the other user's tree appears.
        let mut other = in_group(process(710, 1, &["theirs"]), 600, 600);
        other.uid = 0;
        let trees = find_orphans(
            &[init(), other],
            &Lineage::new(),
            &IdleTracker::new(),
            &[],
            None,
            |_| None,
            NOW,
        );
        assert_eq!(trees.len(), 1);
    }

    #[test]
    fn zombie_members_are_dead() {
        let mut table = seed_001();
        table[3].state = ProcessState::Zombie;
        let trees = find(&table, &Lineage::new(), &[]);
        assert_eq!(pids(&trees[0]), [700]);
        assert_eq!(trees[0].label, "uvx microsoft-fabric-rti-mcp");
    }

    #[test]
    fn wrapper_labels() {
        let label = |argv: &[&str]| {
            let argv: Vec<String> = argv.iter().map(|a| (*a).to_owned()).collect();
            Wrapper::parse(&argv).map(|w| (w.launch(), w.program))
        };
        let some = |launch: &str, program: &str| Some((launch.to_owned(), program.to_owned()));
        assert_eq!(
            label(&["/opt/homebrew/bin/uv", "tool", "uvx", "microsoft-fabric-rti-mcp"]),
            some("uvx microsoft-fabric-rti-mcp", "uv")
        );
        assert_eq!(
            label(&[
                "uvx",
                "--from",
                "git+https://x/y",
                "--python=3.12",
                "-q",
                "mcp-x",
                "--port",
                "1"
            ]),
            some("uvx mcp-x", "uvx")
        );
        assert_eq!(
            label(&["npm exec @playwright/mcp@latest"]),
            some("npm exec @playwright/mcp@latest", "npm")
        );
        assert_eq!(
            label(&[
                "node",
                "/usr/lib/node_modules/npm/bin/npx-cli.js",
                "-y",
                "@scope/server",
                "/tmp"
            ]),
            some("npx @scope/server", "npx")
        );
        assert_eq!(label(&["npx", "-p", "pkg", "--", "cmd"]), some("npx cmd", "npx"));
        assert_eq!(label(&["npx", "-c", "serve --port 1"]), some("npx serve --port 1", "npx"));
        assert_eq!(label(&["pnpm", "dlx", "create-x"]), some("pnpm dlx create-x", "pnpm"));
        assert_eq!(label(&["bun", "x", "cowsay"]), some("bunx cowsay", "bun"));
        assert_eq!(label(&["pipx", "run", "--spec", "a==1", "a"]), some("pipx run a", "pipx"));
        assert_eq!(label(&["uv", "run", "script.py"]), None);
        assert_eq!(label(&["npm", "start"]), None);
        assert_eq!(label(&["node", "server.js"]), None);
        assert_eq!(label(&["uvx"]), None, "no target: not a launch");
        assert_eq!(label(&[]), None);
    }

    #[test]
    fn a_tree_holding_a_watched_target_is_flagged_and_not_chosen_by_default() {
        let table = vec![
            init(),
            in_group(process(700, 1, &["python3", "agent_server.py"]), 600, 600),
            in_group(process(701, 700, &["python3", "worker.py"]), 600, 600),
            in_group(process(800, 1, &["node", "mcp.js"]), 610, 610),
        ];
        let mut trees = find(&table, &Lineage::new(), &[]);
        assert_eq!(trees.len(), 2);
        let worker = table[2].id;
        let elsewhere = ProcessId { pid: 999, start_time: StartTime(1) };
        for tree in &mut trees {
            tree.mark_watched([("agent-server", worker), ("other", elsewhere)]);
        }
        let holding = trees.iter().find(|t| t.root.pid == 700).unwrap();
        assert_eq!(holding.watched, ["agent-server"]);
        assert!(!holding.chosen_by_default());
        let free = trees.iter().find(|t| t.root.pid == 800).unwrap();
        assert!(free.watched.is_empty());
        assert!(free.chosen_by_default());
        // The same pid with another start time is another process: not a member.
        let reused = ProcessId { pid: 701, start_time: StartTime(u64::MAX) };
        let mut tree = holding.clone();
        tree.mark_watched([("agent-server", reused)]);
        assert!(tree.chosen_by_default());
    }

    #[test]
    fn a_wrapper_with_several_children_is_not_folded() {
        let table = vec![
            init(),
            in_group(process(700, 1, &["uvx", "tool-x"]), 600, 600),
            in_group(process(701, 700, &["python", "a"]), 600, 600),
            in_group(process(702, 700, &["python", "b"]), 600, 600),
            // A member wrapper folds with its worker; the worker's child stays a row.
            in_group(process(703, 701, &["uvx", "inner"]), 600, 600),
            in_group(process(704, 703, &["uv", "tool", "uvx", "inner"]), 600, 600),
            in_group(process(705, 704, &["python3", "inner"]), 600, 600),
            in_group(process(706, 705, &["child-of-worker"]), 600, 600),
        ];
        let trees = find(&table, &Lineage::new(), &[]);
        let tree = &trees[0];
        assert_eq!(tree.label, "uvx tool-x");
        let rows: Vec<(usize, u32, String)> =
            tree.rows().iter().map(|(d, m)| (*d, m.id.pid, m.display())).collect();
        assert_eq!(
            rows,
            [
                (0, 700, "uvx tool-x".to_owned()),
                (1, 701, "python a".to_owned()),
                (2, 703, "uvx inner (uvx → uv → python3)".to_owned()),
                (3, 706, "child-of-worker".to_owned()),
                (1, 702, "python b".to_owned()),
            ]
        );
    }

    #[test]
    fn trees_serialise_with_reason_and_seconds() {
        let mut idle = IdleTracker::new();
        idle.observe(&seed_001(), NOW - 5_000);
        let trees = find_orphans(&seed_001(), &Lineage::new(), &idle, &[], None, |_| Some(3), NOW);
        let json = serde_json::to_value(&trees[0]).unwrap();
        assert_eq!(json["reason"], "leader_gone");
        assert!(json.get("pattern").is_none());
        assert_eq!(json["root"]["pid"], 700);
        assert_eq!(json["root"]["start_time"], 70_000);
        assert_eq!(json["total_fds"], 6);
        assert_eq!(json["idle_seconds"], 5.0);
        assert_eq!(json["age_seconds"], 85_700.0);
        assert_eq!(json["members"][1]["folded_into"], 700);
        assert_eq!(json["members"][1]["pid"], 701);
        assert!(json["members"][0].get("folded_into").is_none());
        let pattern = OrphanTree {
            reason: OrphanReason::Pattern("uvx".into()),
            idle_for: None,
            ..trees[0].clone()
        };
        let json = serde_json::to_value(&pattern).unwrap();
        assert_eq!((&json["reason"], &json["pattern"]), (&"pattern".into(), &"uvx".into()));
        assert!(json["idle_seconds"].is_null());
        assert_eq!(OrphanReason::ParentDied.name(), "parent_died");
    }

    /// issue 12: two orphan trees running the same command looked the same; the
    /// hint names what differs (root pid, and the parent that started each).
    #[test]
    fn twins_are_told_apart_by_pid_and_original_parent() {
        let mut table = seed_001();
        table.push(in_group(
            process(800, 1, &["uv", "tool", "uvx", "microsoft-fabric-rti-mcp"]),
            650,
            500,
        ));
        table.push(in_group(process(801, 800, &["python", "microsoft-fabric-rti-mcp"]), 650, 500));
        table.push(in_group(process(900, 1, &["uvx", "other-server"]), 950, 500));
        let mut lineage = Lineage::new();
        let mut before = table.clone();
        before.push(process(650, 500, &["claude"]));
        before[4].ppid = 650; // 800, started by claude, which is gone now
        lineage.record(&before, NOW - 1000);
        let trees = find(&table, &lineage, &[]);
        assert_eq!(trees.len(), 3, "{trees:#?}");
        let by_root = |pid: u32| trees.iter().find(|t| t.root.pid == pid).unwrap();
        assert_eq!(by_root(700).label, by_root(800).label);
        assert_eq!(by_root(700).twin_hint(&trees).as_deref(), Some("pid 700"));
        assert_eq!(
            by_root(800).twin_hint(&trees).as_deref(),
            Some("pid 800, started by claude (pid 650)")
        );
        assert_eq!(by_root(900).twin_hint(&trees), None);
    }
}
