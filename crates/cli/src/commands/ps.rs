//! `leakwatch ps`: processes with their descriptor count and limit, the first
//! place to look for a leak ("which of my servers holds 9,000 descriptors?").

use super::{age_since, explain, probe};
use crate::output::{self, Align, Table};
use leakwatch_probe::{ErrorKind, FdLimit, ProcessInfo};
use serde::Serialize;

/// List processes with their FD count, FD limit, RSS, age and command.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "JSON (--json): an array of objects with the fields\n  \
    pid, start_time (identity token), ppid, uid, name, state, fds (null when not \
    permitted), fd_limit {soft, hard, source} (null when not permitted; soft/hard null = \
    unlimited), rss_bytes, cpu_seconds, started_at (Unix ms), age_seconds, argv.")]
pub(crate) struct Args {
    /// Sort by this column (largest first; name alphabetically).
    #[arg(long, value_enum, default_value_t = SortKey::Fds)]
    sort: SortKey,
    /// Include other users' processes (their descriptors need root to count).
    #[arg(long)]
    all_users: bool,
    /// Show at most this many processes.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SortKey {
    Fds,
    Rss,
    Cpu,
    Name,
}

#[derive(Debug, Serialize)]
struct Row {
    pid: u32,
    start_time: u64,
    ppid: u32,
    uid: u32,
    name: String,
    state: leakwatch_probe::ProcessState,
    fds: Option<usize>,
    fd_limit: Option<FdLimit>,
    rss_bytes: Option<u64>,
    cpu_seconds: Option<f64>,
    started_at: u64,
    age_seconds: u64,
    argv: Vec<String>,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<String> {
    let mut probe = probe()?;
    let me = leakwatch_probe::current_uid();
    let processes: Vec<ProcessInfo> = probe
        .processes()
        .map_err(explain)?
        .into_iter()
        .filter(|p| !p.is_kernel_thread && (args.all_users || p.uid == me))
        .collect();
    let mut rows = Vec::with_capacity(processes.len());
    for process in processes {
        let fds = match probe.fd_count(process.id.pid) {
            Ok(count) => Some(count),
            Err(e) if e.kind() == ErrorKind::NoSuchProcess => continue,
            Err(_) => None,
        };
        rows.push((process, fds));
    }
    sort(&mut rows, args.sort);
    if let Some(limit) = args.limit {
        rows.truncate(limit);
    }
    // Limits cost a file read each: only for the rows shown.
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|(process, fds)| {
            let fd_limit = probe.fd_limit(process.id.pid).ok();
            Row {
                pid: process.id.pid,
                start_time: process.id.start_time.0,
                ppid: process.ppid,
                uid: process.uid,
                state: process.state,
                fds,
                fd_limit,
                rss_bytes: process.rss_bytes,
                cpu_seconds: process.cpu_time.map(|d| d.as_secs_f64()),
                started_at: process
                    .started_at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                age_seconds: age_since(process.started_at).as_secs(),
                argv: if process.argv.is_empty() { Vec::new() } else { process.argv.to_vec() },
                name: process.name,
            }
        })
        .collect();
    if json {
        return output::json(&rows);
    }
    let mut table = Table::new(&[
        ("PID", Align::Right),
        ("FDS", Align::Right),
        ("LIMIT", Align::Right),
        ("RSS", Align::Right),
        ("AGE", Align::Right),
        ("COMMAND", Align::Left),
    ]);
    for row in &rows {
        let command =
            if row.argv.is_empty() { format!("[{}]", row.name) } else { row.argv.join(" ") };
        table.row(vec![
            row.pid.to_string(),
            row.fds.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            row.fd_limit.map_or_else(|| "-".to_owned(), |l| output::limit(l.soft)),
            row.rss_bytes.map_or_else(|| "-".to_owned(), output::bytes),
            output::age(std::time::Duration::from_secs(row.age_seconds)),
            command,
        ]);
    }
    Ok(table.render())
}

fn sort(rows: &mut [(ProcessInfo, Option<usize>)], key: SortKey) {
    match key {
        SortKey::Fds => rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.id.pid.cmp(&b.0.id.pid))),
        SortKey::Rss => rows.sort_by_key(|row| std::cmp::Reverse(row.0.rss_bytes)),
        SortKey::Cpu => rows.sort_by_key(|row| std::cmp::Reverse(row.0.cpu_time)),
        SortKey::Name => rows.sort_by(|a, b| a.0.name.cmp(&b.0.name)),
    }
}
