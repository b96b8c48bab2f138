//! One module per subcommand. Each returns the text to print, so `main` alone
//! decides how output and errors reach the terminal.

pub(crate) mod clean_orphans;
pub(crate) mod config;
pub(crate) mod daemon;
pub(crate) mod doctor;
pub(crate) mod explain;
pub(crate) mod fds;
pub(crate) mod history;
pub(crate) mod kill_tree;
pub(crate) mod orphans;
pub(crate) mod ps;
pub(crate) mod restart;
pub(crate) mod status;
pub(crate) mod tree;
pub(crate) mod watch;

use leakwatch_probe::{ErrorKind, Probe};
use std::time::{Duration, SystemTime};

/// Opens the probe, saying so when this OS has none.
pub(crate) fn probe() -> anyhow::Result<Probe> {
    Ok(Probe::new()?)
}

/// Adds what a user can do about a probe error to its message.
pub(crate) fn explain(error: leakwatch_probe::Error) -> anyhow::Error {
    match error.kind() {
        ErrorKind::PermissionDenied => anyhow::anyhow!(
            "{error}; only its owner (or root) may inspect it: try `sudo leakwatch ...`"
        ),
        _ => error.into(),
    }
}

/// How long ago `started_at` was.
pub(crate) fn age_since(started_at: SystemTime) -> Duration {
    SystemTime::now().duration_since(started_at).unwrap_or_default()
}

/// Options every engine-driving command shares.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct EngineArgs {
    /// The config file (default: the platform's, see `leakwatch config path`;
    /// the LEAKWATCH_CONFIG environment variable also sets it).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<std::path::PathBuf>,
    /// Keep no history (the store lives in the platform's data directory, or
    /// LEAKWATCH_DATA_DIR).
    #[arg(long)]
    pub(crate) no_store: bool,
}

impl EngineArgs {
    /// Engine options with `notifier`, the history store unless `--no-store`.
    pub(crate) fn options(
        &self,
        notifier: std::sync::Arc<dyn leakwatch_core::notifier::Notifier>,
        interval: Option<Duration>,
    ) -> anyhow::Result<leakwatch_core::engine::EngineOptions> {
        let store_path = if self.no_store { None } else { Some(store_path()?) };
        Ok(leakwatch_core::engine::EngineOptions {
            config: leakwatch_core::ConfigSource::resolve(self.config.clone()),
            store_path,
            notifier,
            interval,
        })
    }
}

/// Loads the config (`path`, else the platform's) and finds the target `name`
/// in it: the prologue of every command that acts on one configured target. An
/// unknown name is an error listing the configured ones.
pub(crate) fn configured_target(
    path: Option<&std::path::Path>,
    name: &str,
) -> anyhow::Result<(leakwatch_core::Config, leakwatch_core::config::Target)> {
    let config = match path {
        Some(path) => leakwatch_core::Config::load(path)?,
        None => leakwatch_core::Config::load_default()?,
    };
    let Some(target) = config.target(name).cloned() else {
        let names: Vec<&str> = config.watch.iter().map(|t| t.name.as_str()).collect();
        anyhow::bail!(
            "no target `{name}` in the config; configured: {}",
            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
        );
    };
    Ok((config, target))
}

/// The running engine's API socket (in the data directory).
pub(crate) fn engine_socket() -> anyhow::Result<std::path::PathBuf> {
    let dir = leakwatch_core::config::Config::data_dir()
        .ok_or_else(|| anyhow::anyhow!("no data directory: set LEAKWATCH_DATA_DIR or HOME"))?;
    Ok(leakwatch_core::api::socket_path(&dir))
}

/// Where the history database lives.
pub(crate) fn store_path() -> anyhow::Result<std::path::PathBuf> {
    let dir = leakwatch_core::config::Config::data_dir().ok_or_else(|| {
        anyhow::anyhow!("no data directory: set LEAKWATCH_DATA_DIR or HOME, or pass --no-store")
    })?;
    Ok(dir.join("history.sqlite3"))
}

/// A tokio runtime for the engine: two workers are plenty for a poll loop.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .thread_name("leakwatch")
        .enable_all()
        .build()?)
}

/// Parses `2s`, `1h30m` for clap: the config's rule, capped at
/// [`leakwatch_core::config::MAX_DURATION`].
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    leakwatch_core::config::parse_duration(text)
}

/// Asks before signalling: `yes` (from `--yes`) answers at once; otherwise, when
/// stdin and stdout are both terminals, prints `plan_text` and asks "Proceed?
/// [y/N]" (true only for y/yes); anywhere else it refuses, so a script never
/// signals anything by accident. Shared by kill-tree, clean-orphans and restart.
pub(crate) fn confirm(plan_text: &str, yes: bool) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(true);
    }
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        anyhow::bail!("refusing to signal without --yes when not on a terminal");
    }
    let mut out = std::io::stdout().lock();
    write!(out, "{}\nProceed? [y/N] ", plan_text.trim_end())?;
    out.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// A kill-tree report as a table: one row per process and what became of it
/// (`killed`, `survived (uninterruptible (D state))`).
pub(crate) fn outcome_table(report: &leakwatch_core::actions::kill::KillReport) -> String {
    use crate::output::{Align, Table};
    let mut table =
        Table::new(&[("PID", Align::Right), ("NAME", Align::Left), ("OUTCOME", Align::Left)]);
    for process in &report.processes {
        table.row(vec![
            process.id.pid.to_string(),
            process.name.clone(),
            process.outcome.to_string(),
        ]);
    }
    table.render()
}
