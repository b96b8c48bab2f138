//! `leakwatch history TARGET`: what the store remembers of a target: its series
//! (one per process identity, so each restart starts a new one), their samples,
//! the events raised, and the forensic snapshots taken before restarts.

use super::{parse_duration, store_path};
use crate::output::{self, Align, Table};
use leakwatch_core::model::{Event, Sample, UnixMillis, unix_millis};
use leakwatch_core::store::{SeriesInfo, Snapshot, Store};
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// Show a target's recorded samples, events and snapshots.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "JSON (--json): an object with the fields target, since (Unix ms), \
    series [{id, target, process {pid, start_time}, name, argv, started_at, ended_at, samples [{at, \
    total, kinds, limit, rss_bytes, cpu_seconds, threads, descendants}]}], events [{at, \
    subject {type, name, instance}, pid, kind, rule, severity, value, message, notified (not \
    kept in the history: false)}], snapshots [{at, target, process {pid, \
    start_time}, reason, body}].")]
pub(crate) struct Args {
    /// The target's name, as in the config (or `name[pid]` for automatic targets).
    target: String,
    /// How far back to look.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    since: Duration,
    /// Rows per series in the table view (evenly spaced samples).
    #[arg(long, value_name = "N", default_value_t = 12)]
    rows: usize,
}

#[derive(Debug, Serialize)]
struct SeriesReport {
    #[serde(flatten)]
    info: SeriesInfo,
    samples: Vec<Sample>,
}

#[derive(Debug, Serialize)]
struct Report {
    target: String,
    since: UnixMillis,
    series: Vec<SeriesReport>,
    events: Vec<Event>,
    snapshots: Vec<Snapshot>,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<String> {
    let path = store_path()?;
    if !path.exists() {
        anyhow::bail!(
            "no history yet at {}: `leakwatch daemon` or `leakwatch watch` records it",
            path.display()
        );
    }
    let store = Store::open_read_only(&path)?;
    let now = unix_millis(SystemTime::now());
    let since = now.saturating_sub(u64::try_from(args.since.as_millis()).unwrap_or(u64::MAX));
    let series = store.series(&args.target)?;
    let events = store.events(Some(&args.target), since)?;
    let snapshots = store.snapshots(Some(&args.target), since)?;
    if series.is_empty() && events.is_empty() && snapshots.is_empty() {
        let known = store.targets()?;
        anyhow::bail!(
            "no history for target `{}`; recorded targets: {}",
            args.target,
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        );
    }
    let mut report =
        Report { target: args.target.clone(), since, series: Vec::new(), events, snapshots };
    for info in series {
        if info.ended_at.is_some_and(|end| end < since) {
            continue;
        }
        let samples = store.samples(info.id, since)?;
        report.series.push(SeriesReport { info, samples });
    }
    if json {
        return output::json(&report);
    }
    Ok(render(&report, now, args.rows))
}

fn render(report: &Report, now: UnixMillis, rows: usize) -> String {
    let ago = |at: UnixMillis| {
        format!("{} ago", output::age(Duration::from_millis(now.saturating_sub(at))))
    };
    let mut out =
        format!("{}: {} series since {}\n", report.target, report.series.len(), ago(report.since));
    for series in &report.series {
        let info = &series.info;
        let end = info.ended_at.map_or_else(|| "now".to_owned(), ago);
        out.push_str(&format!(
            "\nseries {}: pid {} ({}), from {} to {}, {} samples\n",
            info.id,
            info.process.pid,
            info.name,
            ago(info.started_at),
            end,
            series.samples.len()
        ));
        let mut table = Table::new(&[
            ("WHEN", Align::Right),
            ("FDS", Align::Right),
            ("LIMIT", Align::Right),
            ("TOP KIND", Align::Left),
            ("RSS", Align::Right),
        ]);
        let step = series.samples.len().div_ceil(rows.max(1)).max(1);
        let shown = series
            .samples
            .iter()
            .step_by(step)
            .chain(series.samples.last().filter(|_| (series.samples.len() - 1) % step != 0));
        for sample in shown {
            let top = sample
                .kinds
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map_or_else(String::new, |(kind, n)| format!("{kind} {n}"));
            table.row(vec![
                ago(sample.at),
                sample.total.to_string(),
                output::limit(sample.limit),
                top,
                sample.rss_bytes.map_or_else(|| "-".to_owned(), output::bytes),
            ]);
        }
        out.push_str(&table.render());
    }
    if !report.events.is_empty() {
        out.push_str("\nevents:\n");
        for event in &report.events {
            out.push_str(&format!("  {:>12}  {}\n", ago(event.at), event.message));
        }
    }
    if !report.snapshots.is_empty() {
        out.push_str("\nforensic snapshots:\n");
        for snapshot in &report.snapshots {
            out.push_str(&format!(
                "  {:>12}  pid {}: {}\n",
                ago(snapshot.at),
                snapshot.process.pid,
                snapshot.reason
            ));
        }
    }
    out
}
