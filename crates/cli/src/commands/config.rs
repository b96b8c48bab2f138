//! `leakwatch config init | check | path`: write a commented example, validate a
//! file with errors that name the file, line and key, and say where the config
//! lives on this platform.

use crate::output;
use leakwatch_core::config::Config;
use std::path::PathBuf;

/// Write, check or locate the config file.
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
    }
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
