//! `leakwatch status`: one answer from the running engine, through its local API
//! (see `leakwatch_core::api`), without starting an engine of its own: quick
//! enough for a shell prompt or an xbar/SwiftBar plugin.

use leakwatch_core::api::{self, ClientError};
use leakwatch_core::escape::escape;
use serde_json::Value;

/// Exit code when no engine runs for the data directory.
pub(crate) const NO_ENGINE_EXIT: u8 = 3;

/// Show the running engine's status (the daemon's, the app's or `watch`'s).
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Asks the engine that owns the data directory (LEAKWATCH_DATA_DIR, \
    see `leakwatch doctor`) over its Unix socket; starts nothing.\n\nExit codes: 0 the engine \
    answered; 3 no engine is running; 1 anything else.\n\nJSON (--json): the engine's status, \
    the same object as one line of `leakwatch watch --json`.")]
pub(crate) struct Args {}

pub(crate) fn run(_args: &Args, json: bool) -> anyhow::Result<String> {
    let dir = leakwatch_core::config::Config::data_dir()
        .ok_or_else(|| anyhow::anyhow!("no data directory: set LEAKWATCH_DATA_DIR or HOME"))?;
    let socket = api::socket_path(&dir);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let body = runtime.block_on(api::request(&socket, api::Method::GET, "/v1/status"))?;
    if json {
        let mut text = String::from_utf8_lossy(&body).into_owned();
        text.push('\n');
        return Ok(text);
    }
    let status: Value = serde_json::from_slice(&body)?;
    Ok(human(&status))
}

/// Whether `error` means no engine runs (exit code [`NO_ENGINE_EXIT`]).
pub(crate) fn is_no_engine(error: &anyhow::Error) -> bool {
    matches!(error.downcast_ref::<ClientError>(), Some(ClientError::NoEngine { .. }))
}

/// One line for the engine, one per target: name, state, descriptors against
/// the limit, severity.
fn human(status: &Value) -> String {
    let own = &status["own"];
    let targets = status["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = format!(
        "engine pid {} · tick {} · {} watched · worst {}\n",
        own["pid"],
        status["tick"],
        targets.len(),
        worst(targets)
    );
    for target in targets {
        let name = escape(target["name"].as_str().unwrap_or("?"));
        let state = target["state"].as_str().unwrap_or("?");
        let fds = &target["sample"]["total"];
        let limit = &target["limit"]["soft"];
        let fds = match (fds.as_u64(), limit.as_u64()) {
            (Some(n), Some(l)) => format!("{n}/{l} fds"),
            (Some(n), None) => format!("{n} fds"),
            _ => "-".to_owned(),
        };
        let severity = target["severity"].as_str().unwrap_or("?");
        out.push_str(&format!("{name}: {state}, {fds}, {severity}\n"));
    }
    out
}

fn worst(targets: &[Value]) -> &'static str {
    let rank = |s: &str| match s {
        "critical" => 2,
        "warning" => 1,
        _ => 0,
    };
    match targets.iter().filter_map(|t| t["severity"].as_str()).map(rank).max() {
        Some(2) => "critical",
        Some(1) => "warning",
        _ => "ok",
    }
}
