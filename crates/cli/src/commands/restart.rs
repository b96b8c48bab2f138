//! `leakwatch restart TARGET`: the graceful restart a leaking server needs, done
//! the way its supervisor expects (launchd, systemd) or by Leakwatch itself for a
//! `command` target, with a forensic snapshot saved first so the evidence of the
//! leak outlives the process.

use super::{configured_target, confirm, engine_socket, store_path};
use crate::output;
use leakwatch_core::actions::kill::{self, Guard};
use leakwatch_core::actions::restart::{self, RestartReport};
use leakwatch_core::api::{self, ClientError};
use leakwatch_core::store::Store;
use leakwatch_probe::Probe;
use serde::Serialize;

/// Restart a configured target (stop its tree, start it again, wait until healthy).
#[derive(Debug, clap::Args)]
#[command(after_long_help = "The target's `[watch.restart]` says how: `launchd = \"label\"` \
    (launchctl kickstart -k), `systemd = \"unit\"` (systemctl --user restart), or `command = \
    [...]` (Leakwatch stops the tree with SIGTERM, waits `grace`, SIGKILLs survivors, waits \
    for the port to be free, starts the command detached in its own session with `cwd`, `env` \
    and `log`, and waits for `health`).\n\nJSON (--json): {plan, report: {target, strategy, \
    previous {pid, start_time}, stopped {processes [{pid, start_time, name, outcome, \
    reason?}], elapsed_seconds}, spawned_pid, new_pid, healthy_after (seconds), \
    snapshot_saved}}.")]
pub(crate) struct Args {
    /// The target's name, as in the config.
    target: String,
    /// Show what would happen and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation (required when not on a terminal).
    #[arg(long)]
    yes: bool,
    /// The config file (default: `leakwatch config path`).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct Output {
    plan: String,
    report: Option<RestartReport>,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<String> {
    let (config, target) = configured_target(args.config.as_deref(), &args.target)?;
    let target = &target;
    if target.restart.is_none() {
        anyhow::bail!(
            "target `{}` has no `[watch.restart]`: add launchd = \"label\", systemd = \"unit\" \
             or command = [...] to the config",
            target.name
        );
    }
    let guard = Guard::from_config(&config);
    let mut probe = Probe::new()?;
    let previous = restart::find_process(&mut probe, target);
    let grace = match &target.restart {
        Some(leakwatch_core::config::Restart::Command { grace, .. }) => *grace,
        _ => leakwatch_core::config::DEFAULT_GRACE,
    };
    let plan = match previous.process() {
        Some(id)
            if matches!(target.restart, Some(leakwatch_core::config::Restart::Command { .. })) =>
        {
            Some(kill::plan_ids(&mut probe, &[id], grace, &guard)?)
        }
        _ => None,
    };
    let plan_text = restart::describe(target, &previous, plan.as_ref());
    if args.dry_run {
        return render(&Output { plan: plan_text, report: None }, json);
    }
    if !confirm(&plan_text, args.yes)? {
        anyhow::bail!("not restarted");
    }
    let store =
        store_path().ok().and_then(|path| Store::open(&path).ok()).map(|opened| opened.store);
    let mut save = |snapshot| {
        if let Some(store) = &store
            && let Err(e) = store.record_snapshot(&snapshot)
        {
            eprintln!("leakwatch: forensic snapshot not saved: {e}");
        }
    };
    let diagnosis = engine_diagnosis(&target.name);
    let (report, _child) = restart::restart(
        &mut probe,
        target,
        &guard,
        "manual restart (leakwatch restart)",
        diagnosis.as_deref(),
        &mut save,
    )?;
    render(&Output { plan: plan_text, report: Some(report) }, json)
}

/// The running engine's diagnosis of `target`, for the forensic snapshot; none
/// when no engine runs (this command does not watch long enough to make one).
fn engine_diagnosis(target: &str) -> Option<String> {
    let socket = engine_socket().ok()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    match runtime.block_on(api::target_diagnosis(&socket, target)) {
        Ok(line) => line,
        Err(ClientError::NoEngine { .. }) => None,
        Err(e) => {
            eprintln!(
                "leakwatch: the snapshot goes without the engine's diagnosis: {}",
                e.message()
            );
            None
        }
    }
}

fn render(out: &Output, json: bool) -> anyhow::Result<String> {
    if json {
        return output::json(out);
    }
    let Some(report) = &out.report else {
        return Ok(format!("dry run, nothing done. Would do:\n{}\n", out.plan));
    };
    let mut text = String::new();
    if let Some(stopped) = &report.stopped {
        text.push_str(
            "stopped:
",
        );
        text.push_str(&super::outcome_table(stopped));
    }
    text.push_str(&format!(
        "{} restarted via {}: {}{}{}\n",
        report.target,
        report.strategy,
        report.new_pid.map_or_else(|| "new pid unknown".to_owned(), |pid| format!("now pid {pid}")),
        report
            .healthy_after
            .map_or_else(String::new, |d| format!(", healthy after {:.1} s", d.as_secs_f64())),
        if report.snapshot_saved {
            "; forensic snapshot saved (see `leakwatch history`)"
        } else {
            ""
        }
    ));
    Ok(text)
}
