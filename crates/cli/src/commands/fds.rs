//! `leakwatch fds PID`: one process's descriptor table summarised, the view that
//! tells a kqueue-per-request leak from leaked SQLite connections at a glance.

use super::{explain, probe};
use crate::output::{self, Align, Table};
use leakwatch_core::FdSummary;
use leakwatch_probe::{Fd, FdLimit, LimitSource};
use serde::Serialize;
use std::fmt::Write as _;

/// Summarise the open file descriptors of one process: totals against the limit,
/// counts per kind and class, the most-held paths, sockets by endpoint.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "JSON (--json): an object with the fields\n  \
    pid, start_time (identity token), name, total, limit {soft, hard, source} (soft/hard \
    null = unlimited; source: proc_limits, getrlimit, launchd_default, configured), \
    kinds {<kind>: count} (canonical kind names: kqueue, epoll, eventfd, timerfd, signalfd, \
    inotify, fsevents, pidfd, unix, tcp, udp, socket, file, dir, device, shm, sem, pipe, \
    other), classes {event_loops, sockets, files, pipes, other}, paths [{path, kind, count, \
    companions [{suffix, count}]}] (SQLite -wal/-shm/-journal folded into their database), \
    endpoints [{kind, endpoint, count}], and with --list fds [{fd, kind, path?, endpoint?}].")]
pub(crate) struct Args {
    /// The process to inspect.
    pid: u32,
    /// Also list every descriptor.
    #[arg(long)]
    list: bool,
    /// How many paths and endpoints to show in the table view.
    #[arg(long, value_name = "N", default_value_t = 10)]
    top: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    pid: u32,
    start_time: u64,
    name: String,
    limit: Option<FdLimit>,
    #[serde(flatten)]
    summary: FdSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    fds: Option<Vec<Fd>>,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<String> {
    let mut probe = probe()?;
    let process = probe.process(args.pid).map_err(explain)?;
    let table = probe.fd_table(args.pid).map_err(explain)?;
    let limit = probe.fd_limit(args.pid).ok();
    let report = Report {
        pid: table.id.pid,
        start_time: table.id.start_time.0,
        name: process.name,
        limit,
        summary: FdSummary::from_fds(&table.fds),
        fds: args.list.then_some(table.fds),
    };
    if json {
        return output::json(&report);
    }
    Ok(render(&report, args.top))
}

fn render(report: &Report, top: usize) -> String {
    let mut out = String::new();
    let summary = &report.summary;
    let _ = write!(
        out,
        "pid {} ({}): {} descriptors",
        report.pid,
        output::escape(&report.name),
        summary.total
    );
    match report.limit {
        Some(limit) => {
            let _ = write!(out, ", limit {}", output::limit(limit.soft));
            if let Some(soft) = limit.soft.filter(|soft| *soft > 0) {
                let _ = write!(out, " ({:.0}% used)", summary.total as f64 * 100.0 / soft as f64);
            }
            let _ = writeln!(
                out,
                "; hard {}; from {}",
                output::limit(limit.hard),
                limit_source(limit.source)
            );
        }
        None => out.push('\n'),
    }
    out.push('\n');
    let mut kinds = Table::new(&[("KIND", Align::Left), ("COUNT", Align::Right)]);
    for (kind, count) in &summary.kinds {
        kinds.row(vec![kind.to_string(), count.to_string()]);
    }
    out.push_str(&kinds.render());
    let classes: Vec<String> =
        summary.classes.iter().map(|(class, count)| format!("{class} {count}")).collect();
    let _ = writeln!(out, "\nby class: {}", classes.join(", "));
    if !summary.paths.is_empty() {
        out.push_str("\ntop paths:\n");
        for group in summary.paths.iter().take(top) {
            let _ = writeln!(out, "  {:<6} {}", group.kind.name(), output::escape(&group.label()));
        }
    }
    if !summary.endpoints.is_empty() {
        out.push_str("\nsockets:\n");
        for group in summary.endpoints.iter().take(top) {
            let endpoint = group.endpoint.as_deref().unwrap_or("(unnamed)");
            let endpoint = output::escape(endpoint);
            let _ = writeln!(out, "  {:<6} {endpoint} ×{}", group.kind.name(), group.count);
        }
    }
    if let Some(fds) = &report.fds {
        out.push('\n');
        let mut list =
            Table::new(&[("FD", Align::Right), ("KIND", Align::Left), ("NAME", Align::Left)]);
        for fd in fds {
            let name = fd.path.as_deref().or(fd.endpoint.as_deref()).unwrap_or("");
            list.row(vec![fd.fd.to_string(), fd.kind.to_string(), name.to_owned()]);
        }
        out.push_str(&list.render());
    }
    out
}

fn limit_source(source: LimitSource) -> &'static str {
    match source {
        LimitSource::ProcLimits => "/proc/PID/limits",
        LimitSource::Getrlimit => "getrlimit (this process)",
        LimitSource::LaunchdDefault => {
            "the launchd default (`launchctl limit maxfiles`); macOS cannot read another \
             process's limit"
        }
        LimitSource::Configured => "the target's configured fd_limit",
    }
}
