//! `leakwatch tree PID`: a process and everything below it, with memory and
//! descriptors per process and in total: what a kill-tree would take down.

use super::{explain, probe};
use crate::output::{self, Align, Table};
use leakwatch_core::ProcessTree;
use serde::Serialize;

/// Show a process and its descendants with RSS and FD counts.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "JSON (--json): an object with the fields\n  \
    root (pid), total_rss_bytes, total_fds, and processes [{pid, start_time, ppid, depth, \
    name, state, rss_bytes, fds (null when not permitted), argv}] depth first, root first.")]
pub(crate) struct Args {
    /// The root of the tree.
    pid: u32,
}

#[derive(Debug, Serialize)]
struct Node {
    pid: u32,
    start_time: u64,
    ppid: u32,
    depth: usize,
    name: String,
    state: leakwatch_probe::ProcessState,
    rss_bytes: Option<u64>,
    fds: Option<usize>,
    argv: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    root: u32,
    total_rss_bytes: u64,
    total_fds: usize,
    processes: Vec<Node>,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<String> {
    let mut probe = probe()?;
    // Fail with the probe's own words (gone, or not permitted) for the root.
    probe.process(args.pid).map_err(explain)?;
    let table = probe.processes().map_err(explain)?;
    let tree = ProcessTree::new(&table);
    let nodes = tree
        .subtree(args.pid)
        .ok_or_else(|| anyhow::anyhow!("pid {}: no such process", args.pid))?;
    let processes: Vec<Node> = nodes
        .iter()
        .map(|node| {
            let p = node.process;
            Node {
                pid: p.id.pid,
                start_time: p.id.start_time.0,
                ppid: p.ppid,
                depth: node.depth,
                name: p.name.clone(),
                state: p.state,
                rss_bytes: p.rss_bytes,
                fds: probe.fd_count(p.id.pid).ok(),
                argv: p.argv.to_vec(),
            }
        })
        .collect();
    let report = Report {
        root: args.pid,
        total_rss_bytes: processes.iter().filter_map(|p| p.rss_bytes).sum(),
        total_fds: processes.iter().filter_map(|p| p.fds).sum(),
        processes,
    };
    if json {
        return output::json(&report);
    }
    let mut out = Table::new(&[
        ("PID", Align::Right),
        ("RSS", Align::Right),
        ("FDS", Align::Right),
        ("COMMAND", Align::Left),
    ]);
    for node in &report.processes {
        let command =
            if node.argv.is_empty() { format!("[{}]", node.name) } else { node.argv.join(" ") };
        out.row(vec![
            node.pid.to_string(),
            node.rss_bytes.map_or_else(|| "-".to_owned(), output::bytes),
            node.fds.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            format!("{}{command}", "  ".repeat(node.depth)),
        ]);
    }
    let mut text = out.render();
    text.push_str(&format!(
        "\n{} processes, {} resident, {} descriptors\n",
        report.processes.len(),
        output::bytes(report.total_rss_bytes),
        report.total_fds
    ));
    Ok(text)
}
