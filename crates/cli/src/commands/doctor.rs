//! `leakwatch doctor`: the facts behind the numbers. Which descriptor limits are in
//! force and where each comes from (on macOS a launchd job's limit is not the
//! shell's), which config is in use and whether it is valid, and where the history
//! lives: the first things to check when an alert seems wrong.

use super::{probe, store_path};
use crate::output;
use leakwatch_core::api;
use leakwatch_core::config::Config;
use leakwatch_core::owner::{Face, read_owner};
use leakwatch_probe::{FdLimit, SystemLimit};
use serde::Serialize;

/// Show the effective FD limits and their sources, the config in use, and the store.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "JSON (--json): an object with the fields platform, \
    own_limit {soft, hard, source}, system_limits [{name, value, source}], config {path, \
    exists, valid, error, targets}, store {path, exists, size_bytes, problem}, engine {running, \
    pid, face (daemon, watch, app, other), since (Unix ms), socket}: the engine that owns the \
    data directory, if one answers on its socket. store.problem is null for a healthy history, \
    else why it cannot be read or what its integrity check found.")]
pub(crate) struct Args {
    /// Check this config file instead of the default one.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct ConfigReport {
    path: Option<String>,
    exists: bool,
    valid: bool,
    error: Option<String>,
    targets: Vec<String>,
}

#[derive(Debug, Serialize)]
struct StoreReport {
    path: Option<String>,
    exists: bool,
    size_bytes: Option<u64>,
    /// Why the database cannot be read, or what its integrity check found.
    problem: Option<String>,
}

/// The engine that owns the data directory: running when it answers on its
/// socket (the lock file alone may be left from one that has exited).
#[derive(Debug, Serialize)]
struct EngineReport {
    running: bool,
    pid: Option<u32>,
    face: Option<Face>,
    since: Option<u64>,
    socket: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    platform: &'static str,
    own_limit: Option<FdLimit>,
    system_limits: Vec<SystemLimit>,
    config: ConfigReport,
    store: StoreReport,
    engine: EngineReport,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<String> {
    let probe = probe()?;
    let source = leakwatch_core::ConfigSource::resolve(args.config.clone());
    let config_path = source.path().map(std::path::Path::to_path_buf);
    let exists = config_path.as_deref().is_some_and(std::path::Path::exists);
    // A missing default file is automatic mode; a missing named one is an error.
    let loaded = source.load().transpose();
    let config = ConfigReport {
        path: config_path.as_ref().map(|p| p.display().to_string()),
        exists,
        valid: loaded.as_ref().is_none_or(Result::is_ok),
        error: loaded.as_ref().and_then(|r| r.as_ref().err()).map(ToString::to_string),
        targets: loaded
            .as_ref()
            .and_then(|r| r.as_ref().ok())
            .map(|c| c.watch.iter().map(|t| format!("{} ({})", t.name, t.selector)).collect())
            .unwrap_or_default(),
    };
    let store_file = store_path().ok();
    let store = StoreReport {
        exists: store_file.as_deref().is_some_and(std::path::Path::exists),
        size_bytes: store_file.as_deref().and_then(|p| {
            let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).ok();
            let wal = p.with_extension("sqlite3-wal");
            Some(size(p)? + size(&wal).unwrap_or(0))
        }),
        problem: store_file.as_deref().filter(|p| p.exists()).and_then(store_problem),
        path: store_file.map(|p| p.display().to_string()),
    };
    let report = Report {
        platform: std::env::consts::OS,
        own_limit: probe.fd_limit(std::process::id()).ok(),
        system_limits: probe.system_limits(),
        config,
        store,
        engine: engine_report(),
    };
    if json {
        return output::json(&report);
    }
    Ok(render(&report))
}

/// Asks the data directory's socket who runs, and the lock file since when.
fn engine_report() -> EngineReport {
    let Some(dir) = Config::data_dir() else {
        return EngineReport { running: false, pid: None, face: None, since: None, socket: None };
    };
    let socket = api::socket_path(&dir);
    let answered = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
        .and_then(|rt| rt.block_on(api::request(&socket, api::Method::GET, "/v1/status")).ok())
        .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok());
    let pid = answered
        .as_ref()
        .and_then(|status| status["own"]["pid"].as_u64())
        .and_then(|pid| u32::try_from(pid).ok());
    let owner = read_owner(&dir).filter(|owner| Some(owner.pid) == pid);
    EngineReport {
        running: answered.is_some(),
        pid,
        face: owner.as_ref().map(|o| o.face),
        since: owner.as_ref().map(|o| o.since),
        socket: Some(socket.display().to_string()),
    }
}

/// What is wrong with the history database at `path`, if anything: read-only,
/// as the daemon may be writing it (it moves a corrupt file aside itself when it
/// next starts).
fn store_problem(path: &std::path::Path) -> Option<String> {
    let store = match leakwatch_core::Store::open_read_only(path) {
        Ok(store) => store,
        Err(error) => return Some(error.to_string()),
    };
    match store.integrity_problems() {
        Ok(problems) if problems.is_empty() => None,
        Ok(problems) => Some(format!("integrity check failed: {}", problems.join("; "))),
        Err(error) => Some(error.to_string()),
    }
}

fn render(report: &Report) -> String {
    let mut out = format!("platform: {}\n\ndescriptor limits:\n", report.platform);
    if let Some(limit) = report.own_limit {
        out.push_str(&format!(
            "  this shell's processes (inherited by leakwatch): soft {}, hard {} ({})\n",
            output::limit(limit.soft),
            output::limit(limit.hard),
            limit.source.name()
        ));
    }
    for limit in &report.system_limits {
        out.push_str(&format!(
            "  {}: {}  (from {})\n",
            limit.name,
            output::limit(limit.value),
            limit.source
        ));
    }
    if report.platform == "macos" {
        out.push_str(
            "  note: macOS cannot read another process's limit; leakwatch uses a target's \
             `fd_limit` from the config, else launchd's default above.\n",
        );
    }
    let config = &report.config;
    out.push_str("\nconfig: ");
    match (&config.path, config.exists, &config.error) {
        (None, _, _) => out.push_str("no config directory; built-in defaults\n"),
        (Some(path), false, _) => out.push_str(&format!(
            "{path} (absent: built-in defaults, watching your top descriptor holders; \
             `leakwatch config init` writes an example)\n"
        )),
        (Some(path), true, Some(error)) => {
            out.push_str(&format!("{path}\n  INVALID: {error}\n"));
        }
        (Some(path), true, None) => {
            out.push_str(&format!("{path} (valid, {} targets)\n", config.targets.len()));
            for target in &config.targets {
                out.push_str(&format!("  {target}\n"));
            }
        }
    }
    let store = &report.store;
    out.push_str("\nhistory: ");
    match (&store.path, store.exists) {
        (Some(path), true) => {
            out.push_str(&format!("{path}, {}\n", output::bytes(store.size_bytes.unwrap_or(0))));
            if let Some(problem) = &store.problem {
                out.push_str(&format!(
                    "  DAMAGED: {problem}\n  (the daemon moves a damaged history aside and \
                     starts a new one when it next starts)\n"
                ));
            }
        }
        (Some(path), false) => out.push_str(&format!("{path} (not created yet)\n")),
        (None, _) => out.push_str("no data directory\n"),
    }
    let engine = &report.engine;
    out.push_str("\nengine: ");
    let socket = engine.socket.as_deref().unwrap_or("-");
    match (engine.running, engine.pid) {
        (true, Some(pid)) => {
            let face = engine.face.map_or_else(|| "unknown".to_owned(), |f| f.to_string());
            let since = engine.since.map_or_else(
                || "?".to_owned(),
                |ms| {
                    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                    humantime::format_rfc3339_seconds(at).to_string()
                },
            );
            out.push_str(&format!("{face}, pid {pid}, since {since}, socket {socket}\n"));
        }
        _ => out.push_str(&format!("none running (no answer on {socket})\n")),
    }
    out
}
