//! `leakwatch kill-tree PID...`: stop processes and everything below them with
//! the escalation of DESIGN.md (SIGTERM, a grace, SIGTERM again, SIGSTOP and
//! SIGKILL), after showing the plan and asking. The work is `leakwatch_core::actions::kill`,
//! the one routine the app and the auto-policy use too.

use super::{confirm, outcome_table, parse_duration, probe};
use crate::output;
use leakwatch_core::actions::kill::{self, Guard, KillPlan, KillReport, OutcomeKind};
use leakwatch_core::config::Config;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Stop a process tree: SIGTERM, wait, SIGTERM the rest, then SIGSTOP + SIGKILL.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Every process is signalled only after its start time was \
    checked again (on Linux through a pidfd), so a pid reused by another process is never \
    hit. Never signalled, whatever the options: pid 0 and 1, leakwatch and its ancestors, \
    kernel threads, other users' processes (unless root with allow_other_users = true in the \
    config), and anything on the config's protect list.\n\n\
    Without --yes, leakwatch shows the plan and asks on a terminal, and refuses (exit 1, \
    nothing signalled) when stdin or stdout is not a terminal.\n\n\
    Exit status: 0 when done (protected processes are left alone on purpose); 1 when a \
    process survived, a root is refused or does not exist, or the plan was not confirmed.\n\n\
    JSON (--json): an object with the fields\n  \
    dry_run, plan {roots [{pid, start_time}], grace_seconds, processes [{pid, start_time, \
    ppid, depth, name, argv, rss_bytes, protected (why it is left alone, a refusal, else \
    null)}] depth first}, and report (null with --dry-run) {processes [{pid, start_time, name, \
    outcome, reason (protected: a refusal; survived: a survival)}], elapsed_seconds}. outcome \
    is one of exited_after_term, killed, already_gone, identity_changed, protected, survived; \
    newcomers (started during the kill) follow the planned processes. A refusal is \
    {code, ...}: pid_zero, init, leakwatch, leakwatch_parent, leakwatch_ancestor, \
    kernel_thread, other_user_not_allowed {uid}, other_user {uid, own_uid}, protect_pattern \
    {pattern}, unreadable {uid}, not_running, pid_reused {pid}. A survival is {code, ...}: \
    uninterruptible, traced, after_sigkill, still_running, signal_failed {signal, error}, \
    unreadable {error}, unknown.")]
pub(crate) struct Args {
    /// The root of each tree to stop.
    #[arg(required = true, value_name = "PID")]
    pids: Vec<u32>,
    /// How long each SIGTERM step waits before escalating.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    grace: Duration,
    /// Print the plan and send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation (required when not on a terminal).
    #[arg(short = 'y', long)]
    yes: bool,
    /// The config whose protect list and allow_other_users apply (default: the
    /// platform's, or LEAKWATCH_CONFIG).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Output {
    dry_run: bool,
    plan: KillPlan,
    report: Option<KillReport>,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<String> {
    // The protections of the config are part of the safety net: a config that
    // does not load is an error, never "no protections".
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::load_default()?,
    };
    let guard = Guard::from_config(&config);
    let mut probe = probe()?;
    let plan = kill::plan(&mut probe, &args.pids, args.grace, &guard)?;
    if args.dry_run {
        return render(&Output { dry_run: true, plan, report: None }, json);
    }
    if !confirm(&plan.describe(), args.yes)? {
        anyhow::bail!("not confirmed; nothing was signalled");
    }
    let report = kill::execute(&mut probe, &plan, &guard);
    let survivors = report.with_outcome(OutcomeKind::Survived).len();
    let text = render(&Output { dry_run: false, plan, report: Some(report) }, json)?;
    if survivors > 0 {
        output::print(&text)?;
        anyhow::bail!(
            "{survivors} {} survived",
            if survivors == 1 { "process" } else { "processes" }
        );
    }
    Ok(text)
}

fn render(out: &Output, json: bool) -> anyhow::Result<String> {
    if json {
        return output::json(out);
    }
    let Some(report) = &out.report else {
        return Ok(format!("{}\nDry run: nothing was signalled.\n", out.plan.describe()));
    };
    let mut text = outcome_table(report);
    let counts: Vec<String> = [
        (OutcomeKind::ExitedAfterTerm, "exited after SIGTERM"),
        (OutcomeKind::Killed, "killed"),
        (OutcomeKind::AlreadyGone, "already gone"),
        (OutcomeKind::IdentityChanged, "replaced by another process"),
        (OutcomeKind::Protected, "left alone (protected)"),
        (OutcomeKind::Survived, "survived"),
    ]
    .into_iter()
    .filter_map(|(kind, words)| {
        let n = report.with_outcome(kind).len();
        (n > 0).then(|| format!("{n} {words}"))
    })
    .collect();
    let planned = out.plan.processes.len();
    let newcomers = report.processes.len().saturating_sub(planned);
    text.push_str(&format!(
        "\n{} {}{} in {:.1} s: {}\n",
        report.processes.len(),
        if report.processes.len() == 1 { "process" } else { "processes" },
        if newcomers > 0 {
            format!(" ({newcomers} started during the kill)")
        } else {
            String::new()
        },
        report.elapsed.as_secs_f64(),
        counts.join(", ")
    ));
    Ok(text)
}
