//! `leakwatch config init | check | path | in-force | add | remove`: write a
//! commented example, validate a file with errors that name the file, line and
//! key, say where the config lives on this platform, show the config the running
//! engine has in force (the last good one while the file is broken), and add or
//! remove a `[[watch]]` target keeping the file's comments and layout.

use crate::output;
use leakwatch_core::config::Config;
use leakwatch_core::config_edit::{self, Locator, NewTarget};
use std::path::PathBuf;

/// Write, check, locate or show the config file, and the config in force.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Write a commented example config (every option, nothing active).
    Init {
        /// Where to write it (default: `leakwatch config path`).
        path: Option<PathBuf>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Validate a config file; errors name the file, line and key.
    Check {
        /// The file to check (default: `leakwatch config path`).
        path: Option<PathBuf>,
    },
    /// Print where the config file is read from.
    Path,
    /// Print the config the running engine has in force: the text it runs on,
    /// which is its last good one while the file is broken, and whether the file
    /// still says the same. Asks the engine over its socket; starts nothing
    /// (exit code 3 when no engine runs, as `leakwatch status`).
    InForce,
    /// Add a [[watch]] target, keeping the file's comments and layout; the result
    /// must pass `config check` or nothing is written. Give exactly one locator.
    #[command(group(clap::ArgGroup::new("locator").required(true).multiple(false)))]
    Add {
        /// The target's name (unique in the file).
        name: String,
        /// The process listening on this TCP port.
        #[arg(long, group = "locator", value_name = "N")]
        port: Option<u16>,
        /// The pid written in this file.
        #[arg(long, group = "locator", value_name = "P")]
        pidfile: Option<PathBuf>,
        /// A regex on the process name.
        #[arg(long, group = "locator", value_name = "RE")]
        process: Option<String>,
        /// A regex on the whole command line.
        #[arg(long, group = "locator", value_name = "RE")]
        argv: Option<String>,
        /// A launchd job label (macOS).
        #[arg(long, group = "locator", value_name = "L")]
        launchd: Option<String>,
        /// A systemd user unit (Linux).
        #[arg(long, group = "locator", value_name = "U")]
        systemd: Option<String>,
        /// The descriptor limit to measure against where the process's own cannot
        /// be read.
        #[arg(long, value_name = "N")]
        fd_limit: Option<u64>,
        /// The file to edit (default: `leakwatch config path`); created if missing.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Remove the [[watch]] target NAME, keeping the rest of the file as it is.
    Remove {
        name: String,
        /// The file to edit (default: `leakwatch config path`).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<String> {
    match &args.action {
        Action::Init { path, force } => {
            let path = resolve(path.as_ref())?;
            if path.exists() && !force {
                anyhow::bail!("{} exists; pass --force to overwrite it", path.display());
            }
            // Owner-only: a config names the user's services, paths and commands.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                && let Some(fixed) = leakwatch_core::private::create_dir(dir)
                    .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?
            {
                tracing::warn!("{fixed}");
            }
            leakwatch_core::private::write(&path, Config::EXAMPLE.as_bytes())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            message(json, &path, &format!("wrote an example config to {}", path.display()))
        }
        Action::Check { path } => {
            let path = resolve(path.as_ref())?;
            let config = Config::load(&path)?;
            let text = format!(
                "{}: valid, {} target{}{}",
                path.display(),
                config.watch.len(),
                if config.watch.len() == 1 { "" } else { "s" },
                if config.watch.is_empty() {
                    " (the engine will watch your top descriptor holders)".to_owned()
                } else {
                    format!(
                        ": {}",
                        config
                            .watch
                            .iter()
                            .map(|t| format!("{} ({})", t.name, t.selector))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
            message(json, &path, &text)
        }
        Action::Path => {
            let path = resolve(None)?;
            message(json, &path, &path.display().to_string())
        }
        Action::InForce => in_force(json),
        Action::Add { name, port, pidfile, process, argv, launchd, systemd, fd_limit, config } => {
            let locator = port
                .map(Locator::Port)
                .or_else(|| pidfile.clone().map(Locator::Pidfile))
                .or_else(|| process.clone().map(Locator::Process))
                .or_else(|| argv.clone().map(Locator::Argv))
                .or_else(|| launchd.clone().map(Locator::Launchd))
                .or_else(|| systemd.clone().map(Locator::Systemd))
                .ok_or_else(|| anyhow::anyhow!("give one locator: --port, --pidfile, ..."))?;
            let path = resolve(config.as_ref())?;
            let target = NewTarget { name: name.clone(), locator, fd_limit: *fd_limit };
            config_edit::edit_file(&path, |text| config_edit::add_target(text, &target, &path))?;
            let text =
                format!("added {name} ({}) to {}", target.locator.describe(), path.display());
            message(json, &path, &text)
        }
        Action::Remove { name, config } => {
            let path = resolve(config.as_ref())?;
            if !path.exists() {
                anyhow::bail!("{}: no such file, so no target named `{name}`", path.display());
            }
            config_edit::edit_file(&path, |text| config_edit::remove_target(text, name, &path))?;
            message(json, &path, &format!("removed {name} from {}", path.display()))
        }
    }
}

/// `config in-force`: the running engine's config, from `GET /v1/config`.
fn in_force(json: bool) -> anyhow::Result<String> {
    use leakwatch_core::api;
    let dir = Config::data_dir()
        .ok_or_else(|| anyhow::anyhow!("no data directory: set LEAKWATCH_DATA_DIR or HOME"))?;
    let socket = api::socket_path(&dir);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let in_force = match runtime.block_on(api::config(&socket)) {
        Ok(in_force) => in_force,
        // The engine's own words (say, no config in force since it started on
        // a broken file), not the HTTP exchange around them.
        Err(refused @ api::ClientError::Status { .. }) => anyhow::bail!("{}", refused.message()),
        Err(error) => return Err(error.into()),
    };
    // Only a regular file is read: a FIFO in its place would hang the command.
    let file = in_force.path.as_deref().and_then(|path| match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => std::fs::read_to_string(path).ok(),
        _ => None,
    });
    let same = in_force.text == file;
    if json {
        return output::json(&serde_json::json!({
            "path": in_force.path,
            "text": in_force.text,
            "file_matches": same,
        }));
    }
    Ok(match (&in_force.path, &in_force.text) {
        (Some(path), Some(text)) => {
            let note = if same {
                "the file says the same".to_owned()
            } else {
                format!(
                    "the file has changed since the engine read it: `leakwatch config check {}` \
                     says whether the engine will take it",
                    path.display()
                )
            };
            format!("# in force, read from {} ({note})\n{text}", path.display())
        }
        _ => "# in force: the built-in defaults (no config file): the engine watches your \
              top descriptor holders\n"
            .to_owned(),
    })
}

fn resolve(path: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    path.cloned().or_else(Config::default_path).ok_or_else(|| {
        anyhow::anyhow!("no config directory on this system: set LEAKWATCH_CONFIG or pass a path")
    })
}

fn message(json: bool, path: &std::path::Path, text: &str) -> anyhow::Result<String> {
    if json {
        return output::json(&serde_json::json!({
            "path": path.display().to_string(),
            "exists": path.exists(),
            "message": text,
        }));
    }
    Ok(format!("{text}\n"))
}
