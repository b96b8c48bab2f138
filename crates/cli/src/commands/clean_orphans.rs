//! `leakwatch clean-orphans`: removes orphaned process trees (the uvx MCP servers
//! a SIGKILLed parent left behind, the idle REPLs nobody reaps) with the same
//! kill-tree escalation as every other action: SIGTERM, grace, SIGKILL, identity
//! re-checked before every signal.

use super::confirm;
use super::orphans::{Row, collect, parse_regex, render as render_trees};
use crate::output;
use leakwatch_core::actions::kill::{self, Guard, KillPlan, KillReport, OutcomeKind};
use leakwatch_core::config::{Config, DEFAULT_GRACE};
use leakwatch_probe::Probe;
use regex::Regex;
use serde::Serialize;
use std::time::Duration;

/// Kill orphaned process trees (all of them, or those matching --match / --older-than).
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Which trees: those `leakwatch orphans` lists (with --match also \
    counting as orphans), narrowed to trees where some member's command line matches every \
    --match and whose root is older than --older-than.\n\nHow: the kill-tree escalation \
    (SIGTERM the roots, wait --grace, SIGTERM survivors and newcomers, wait, SIGSTOP + \
    SIGKILL what is left), each process's identity re-checked before every signal; \
    protected processes (pid 1, leakwatch and its ancestors, the config's `protect`) are \
    never signalled.\n\nJSON (--json): {dry_run, trees [orphan trees as in `orphans \
    --json`], plan {roots, grace_seconds, processes [{pid, start_time, ppid, depth, name, \
    argv, rss_bytes, protected}]}, report {processes [{pid, start_time, name, outcome, \
    reason?}], elapsed_seconds} (null with --dry-run or when nothing matched)}.")]
pub(crate) struct Args {
    /// Only trees with a member whose command line matches this regex (repeatable).
    #[arg(long = "match", value_name = "RE", value_parser = parse_regex)]
    patterns: Vec<Regex>,
    /// Only trees whose root is older than this (e.g. 1h).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    older_than: Option<Duration>,
    /// Include other users' orphans (needs root and `allow_other_users` in the config).
    #[arg(long)]
    all_users: bool,
    /// How long each SIGTERM round waits before escalating.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = super::parse_duration)]
    grace: Duration,
    /// Show the plan and send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation (required when not on a terminal).
    #[arg(short, long)]
    yes: bool,
}

#[derive(Debug, Serialize)]
struct Output {
    dry_run: bool,
    trees: Vec<Row>,
    plan: Option<KillPlan>,
    report: Option<KillReport>,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<String> {
    let guard = match Config::load_default() {
        Ok(config) => Guard::from_config(&config),
        // Protections come from the config: never act without them.
        Err(error) => anyhow::bail!("{error}; fix the config before cleaning up"),
    };
    let trees: Vec<Row> = collect(args.all_users, &args.patterns)?
        .into_iter()
        .filter(|row| {
            args.patterns.iter().all(|re| {
                row.tree
                    .members
                    .iter()
                    .any(|m| re.is_match(&m.argv.join(" ")) || re.is_match(&m.name))
            })
        })
        .filter(|row| args.older_than.is_none_or(|age| row.tree.age >= age))
        .collect();
    let mut out = Output { dry_run: args.dry_run, trees, plan: None, report: None };
    if out.trees.is_empty() {
        return if json {
            output::json(&out)
        } else {
            Ok("no orphaned trees to clean up\n".to_owned())
        };
    }
    let roots: Vec<_> = out.trees.iter().map(|row| row.tree.root).collect();
    let mut probe = Probe::new()?;
    let grace = if args.grace.is_zero() { DEFAULT_GRACE } else { args.grace };
    // One protected tree is reported and left alone; the others are cleaned up.
    let plan = kill::plan_trees(&mut probe, &roots, grace, &guard)?;
    let plan_text = format!("{}\n{}", render_trees(&out.trees).trim_end(), plan.describe());
    if !args.dry_run {
        if !confirm(&plan_text, args.yes)? {
            anyhow::bail!("nothing cleaned up");
        }
        out.report = Some(kill::execute(&mut probe, &plan, &guard));
    }
    out.plan = Some(plan);
    if json {
        return output::json(&out);
    }
    let Some(report) = &out.report else {
        return Ok(format!("dry run, nothing sent. Would do:\n{plan_text}\n"));
    };
    let mut text = super::outcome_table(report);
    let protected: Vec<_> =
        report.with_outcome(OutcomeKind::Protected).iter().map(|p| p.id).collect();
    let cleaned: Vec<&Row> =
        out.trees.iter().filter(|row| !protected.contains(&row.tree.root)).collect();
    let freed: u64 = cleaned.iter().map(|row| row.tree.total_rss_bytes).sum();
    let all_gone = report
        .processes
        .iter()
        .all(|p| p.outcome.is_gone() || p.outcome.kind() == OutcomeKind::Protected);
    text.push_str(&format!(
        "\n{} trees, {} processes, {} resident: {}\n",
        cleaned.len(),
        report.processes.len() - protected.len(),
        output::bytes(freed),
        if all_gone { "all gone" } else { "some processes survived (see above)" }
    ));
    if !protected.is_empty() {
        text.push_str(&format!(
            "{} protected tree(s) left alone (see above)\n",
            out.trees.len() - cleaned.len()
        ));
    }
    if !all_gone {
        output::print(&text)?;
        anyhow::bail!("some processes survived");
    }
    Ok(text)
}
