//! `leakwatch orphans`: the process trees left running after whatever started
//! them died (DESIGN.md, "Orphans"): the `uv tool uvx` MCP servers and their
//! pythons that pile up under launchd when an app is SIGKILLed (seed 001), the
//! idle multi-GB REPLs nobody reaps (seed 003). It shows what each tree holds
//! (memory, descriptors), how old it is, whether it is doing anything, and why it
//! counts as an orphan, so a person can decide what to clean up.
//!
//! A one-shot has no history, unlike the engine: there is no lineage journal, so
//! an orphan is found by its group or session leader being gone or by an
//! `[orphans] match` pattern, never by "its original parent died"; and idle time
//! cannot be known, so the command reads CPU times twice [`IDLE_PROBE`] apart and
//! reports whether each tree is idle *now*.

use super::{explain, probe};
use crate::output::{self, Align, Table};
use leakwatch_core::Config;
use leakwatch_core::model::unix_millis;
use leakwatch_core::orphans::{IdleTracker, Lineage, OrphanTree, find_orphans};
use leakwatch_probe::{Probe, ProcessInfo};
use regex::Regex;
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// How far apart the two CPU readings of "idle now" are. Long enough for a busy
/// process to use a few clock ticks (Linux counts CPU time in 10 ms ticks), short
/// enough not to make the command feel slow. Skipped when there are no orphans.
pub(crate) const IDLE_PROBE: Duration = Duration::from_millis(300);

/// List orphaned process trees: reparented processes left behind by a parent
/// that died, with RSS, FDs, age and whether they are idle.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "List orphaned process trees: processes reparented to init or launchd \
    (or `systemd --user`) whose process-group or session leader is gone, or whose command \
    line matches an [orphans] match pattern of the config (or --match). A launchd agent or \
    systemd service leads its own group and session, so it is never taken for one. Each \
    tree is the reparented root and all its descendants; a launcher (`uv tool uvx X`, \
    `npm exec X`, `npx X`, `pnpm dlx X`) is shown on one row with the worker it runs.\n\n\
    Unlike the engine (`leakwatch watch`, the daemon), a one-shot has no history: it cannot \
    tell that an orphan's original parent died unless the leader rule or a pattern shows it, \
    and it cannot know for how long a tree has been idle. IDLE is `idle` when none of the \
    tree's processes used CPU over 0.3 s (Linux counts CPU time in 10 ms ticks), `busy` \
    otherwise.",
    after_long_help = "JSON (--json): an array of trees, most resident memory first, each \
    with the fields\n  root {pid, start_time}, reason (leader_gone, parent_died or pattern; \
    for pattern the regex is in `pattern`), label (the root's command, a launcher folded \
    with its worker: \"uvx X (uv → python)\"), members [{pid, start_time, ppid, depth, name, \
    argv, rss_bytes, fds (null when not permitted), cpu_seconds, label (launchers only), \
    folded_into (for a launcher's worker: the pid of the launcher's row)}] root first, then \
    depth first, total_rss_bytes, total_fds, age_seconds, idle_seconds (always null here: a \
    one-shot has no history; the engine's status has it), idle_now (true when no member's \
    CPU time moved over 0.3 s; null when the OS hides it)."
)]
pub(crate) struct Args {
    /// Include other users' orphans (acting on them needs root).
    #[arg(long)]
    all_users: bool,
    /// Also count reparented processes whose command line matches this regex as
    /// orphans; repeatable, added to the config's `[orphans] match`.
    #[arg(long = "match", value_name = "RE", value_parser = parse_regex)]
    patterns: Vec<Regex>,
}

pub(crate) fn parse_regex(text: &str) -> Result<Regex, String> {
    Regex::new(text).map_err(|e| format!("invalid regex: {e}"))
}

/// One tree as printed: the core's tree and the one-shot's idle reading.
#[derive(Debug, Serialize)]
pub(crate) struct Row {
    #[serde(flatten)]
    pub(crate) tree: OrphanTree,
    pub(crate) idle_now: Option<bool>,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<String> {
    let rows = collect(args.all_users, &args.patterns)?;
    if json {
        return output::json(&rows);
    }
    Ok(render(&rows))
}

/// The orphan trees now, with the config's `[orphans] match` patterns plus
/// `extra`, and an "idle now" reading: shared by `orphans` and `clean-orphans`.
pub(crate) fn collect(all_users: bool, extra: &[Regex]) -> anyhow::Result<Vec<Row>> {
    let mut patterns = match Config::load_default() {
        Ok(config) => config.orphans.patterns,
        Err(error) => {
            // Listing should not fail over a config typo: say so and go on.
            eprintln!("leakwatch: warning: {error}; using only --match patterns");
            Vec::new()
        }
    };
    patterns.extend(extra.iter().cloned());
    let only_uid = (!all_users).then(leakwatch_probe::current_uid);
    let mut probe = probe()?;
    let mut idle = IdleTracker::new();

    let first = probe.processes().map_err(explain)?;
    let mut now = unix_millis(SystemTime::now());
    idle.observe(&first, now);
    let mut trees = detect(&probe, &first, &idle, &patterns, only_uid, now);
    if !trees.is_empty() {
        drop(first);
        std::thread::sleep(IDLE_PROBE);
        let table = probe.processes().map_err(explain)?;
        now = unix_millis(SystemTime::now());
        idle.observe(&table, now);
        trees = detect(&probe, &table, &idle, &patterns, only_uid, now);
    }
    Ok(trees
        .into_iter()
        .map(|mut tree| {
            // Unchanged since the first reading: idle for the whole probe. Without a
            // first reading (a newcomer) it is zero, so busy: no evidence of idling.
            let idle_now = tree.idle_for.take().map(|d| !d.is_zero());
            Row { tree, idle_now }
        })
        .collect())
}

fn detect(
    probe: &Probe,
    table: &[ProcessInfo],
    idle: &IdleTracker,
    patterns: &[Regex],
    only_uid: Option<u32>,
    now: u64,
) -> Vec<OrphanTree> {
    find_orphans(
        table,
        &Lineage::new(),
        idle,
        patterns,
        only_uid,
        |pid| probe.fd_count(pid).ok().map(|n| n as u64),
        now,
    )
}

pub(crate) fn render(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "no orphaned process trees\n".to_owned();
    }
    let mut table = Table::new(&[
        ("PID", Align::Right),
        ("PROCS", Align::Right),
        ("RSS", Align::Right),
        ("FDS", Align::Right),
        ("AGE", Align::Right),
        ("IDLE", Align::Left),
        ("REASON", Align::Left),
        ("COMMAND", Align::Left),
    ]);
    let trees: Vec<OrphanTree> = rows.iter().map(|r| r.tree.clone()).collect();
    for row in rows {
        let tree = &row.tree;
        let idle = match row.idle_now {
            Some(true) => "idle",
            Some(false) => "busy",
            None => "-",
        };
        table.row(vec![
            tree.root.pid.to_string(),
            tree.members.len().to_string(),
            output::bytes(tree.total_rss_bytes),
            tree.total_fds.to_string(),
            output::age(tree.age),
            idle.to_owned(),
            tree.reason.to_string(),
            // Two trees of the same command: say what tells them apart (issue 12).
            match tree.twin_hint(&trees) {
                Some(hint) => format!("{} [{hint}]", tree.label),
                None => tree.label.clone(),
            },
        ]);
        // The members below the root, a launcher and its worker as one row.
        for (depth, member) in tree.rows().into_iter().skip(1) {
            table.row(vec![
                member.id.pid.to_string(),
                String::new(),
                member.rss_bytes.map_or_else(|| "-".to_owned(), output::bytes),
                member.fds.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                String::new(),
                String::new(),
                String::new(),
                format!("{}{}", "  ".repeat(depth), member.display()),
            ]);
        }
    }
    let processes: usize = rows.iter().map(|r| r.tree.members.len()).sum();
    let rss: u64 = rows.iter().map(|r| r.tree.total_rss_bytes).sum();
    let fds: u64 = rows.iter().map(|r| r.tree.total_fds).sum();
    let mut text = table.render();
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    text.push_str(&format!(
        "\n{}, {}, {} resident, {fds} descriptors (a tree's first row shows its totals)\n",
        plural(rows.len(), "orphaned tree", "orphaned trees"),
        plural(processes, "process", "processes"),
        output::bytes(rss),
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use leakwatch_core::orphans::{OrphanMember, OrphanReason};
    use leakwatch_probe::{ProcessId, StartTime};

    fn member(pid: u32, ppid: u32, depth: usize, argv: &[&str]) -> OrphanMember {
        OrphanMember {
            id: ProcessId { pid, start_time: StartTime(1) },
            ppid,
            depth,
            name: "x".into(),
            argv: argv.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>().into(),
            rss_bytes: Some(1 << 20),
            fds: Some(4),
            cpu_seconds: Some(0.0),
            label: None,
            folded_into: None,
        }
    }

    #[test]
    fn renders_trees_with_totals_and_folded_rows() {
        let mut wrapper = member(700, 1, 0, &["uv", "tool", "uvx", "mcp"]);
        wrapper.label = Some("uvx mcp (uv → python)".into());
        let mut worker = member(701, 700, 1, &["python", "mcp"]);
        worker.folded_into = Some(700);
        let tree = OrphanTree {
            root: wrapper.id,
            reason: OrphanReason::LeaderGone,
            original_parent: None,
            label: "uvx mcp (uv → python)".into(),
            members: vec![wrapper, worker, member(702, 701, 2, &["sleep", "1"])],
            total_rss_bytes: 3 << 20,
            total_fds: 12,
            age: Duration::from_secs(3 * 86_400),
            idle_for: None,
            watched: Vec::new(),
        };
        let text = render(&[Row { tree, idle_now: Some(true) }]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("PID  PROCS"), "{text}");
        assert!(lines[1].contains("3 MiB") && lines[1].contains("leader gone"), "{text}");
        assert!(lines[1].ends_with("uvx mcp (uv → python)"), "{text}");
        assert!(lines[1].contains("idle") && lines[1].contains("3d 0h"), "{text}");
        assert!(lines[2].trim_start().starts_with("702") && lines[2].ends_with("  sleep 1"));
        assert!(!text.contains("701"), "the worker shares its launcher's row: {text}");
        assert!(text.contains("1 orphaned tree, 3 processes, 3 MiB resident, 12 descriptors"));
        assert_eq!(render(&[]), "no orphaned process trees\n");
    }

    /// issue 12: two trees of the same command are told apart in the listing.
    #[test]
    fn twin_trees_say_what_differs() {
        let tree = |pid: u32| OrphanTree {
            root: ProcessId { pid, start_time: StartTime(1) },
            reason: OrphanReason::LeaderGone,
            original_parent: None,
            label: "node server.js".into(),
            members: vec![member(pid, 1, 0, &["node", "server.js"])],
            total_rss_bytes: 1 << 20,
            total_fds: 4,
            age: Duration::from_secs(60),
            idle_for: None,
            watched: Vec::new(),
        };
        let text = render(&[
            Row { tree: tree(700), idle_now: None },
            Row { tree: tree(800), idle_now: None },
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].ends_with("node server.js [pid 700]"), "{text}");
        assert!(lines[2].ends_with("node server.js [pid 800]"), "{text}");
    }
}
