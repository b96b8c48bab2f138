//! Loading a configuration from a file or text, the platform paths it comes
//! from, and the queries a face asks of a loaded one (the interval, window, rules
//! and protect list in force for a target).

use super::document::{Doc, Table, too_big};
use super::parser::Parser;
use super::rule::{Metric, RuleSpec};
use super::schema::{CONFIG_ENV, Config, ConfigError, DATA_DIR_ENV, MAX_CONFIG_BYTES, Target};
use regex::Regex;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::de::DeTable;

// ---------------------------------------------------------------------------------
// Loading and queries
// ---------------------------------------------------------------------------------

impl Config {
    /// A commented example, written by `leakwatch config init`. As written it is
    /// the default configuration plus the seed orphan patterns: every option is
    /// shown, but lines that would act (targets, restarts, reaping, a metrics
    /// port) are commented out with a bare `#`, so that a fresh file never restarts
    /// or kills anything by surprise. Removing the `#` in front of them gives a
    /// valid file too.
    pub const EXAMPLE: &'static str = include_str!("example.toml");

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        let error = |message: String| ConfigError {
            path: path.to_path_buf(),
            line: 0,
            key: String::new(),
            message,
        };
        let file = std::fs::File::open(path)
            .map_err(|e| error(format!("cannot read the configuration: {e}")))?;
        // Read one byte past the limit, so a bigger file is told apart unread.
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| error(format!("cannot read the configuration: {e}")))?;
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(error(too_big()));
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| error(format!("cannot read the configuration: not UTF-8: {e}")))?;
        Self::parse(&text, path)
    }

    /// Validates `text`; `path` is named in errors, and relative paths in the file
    /// (pidfile, cwd, log) are taken relative to its directory when it is absolute.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError {
                path: path.to_path_buf(),
                line: 0,
                key: String::new(),
                message: too_big(),
            });
        }
        let doc = Doc { text, path };
        let root = DeTable::parse(text).map_err(|e| doc.syntax_error(&e))?;
        let root = Table { path: String::new(), span: 0..0, map: root.get_ref() };
        let mut config = Parser { doc: &doc }.config(&root)?;
        config.text = Some(text.into());
        Ok(config)
    }

    /// The config file: `LEAKWATCH_CONFIG` when set, else `config.toml` in the
    /// platform's config directory (`~/.config/leakwatch` on Linux,
    /// `~/Library/Application Support/dev.leakwatch.Leakwatch` on macOS).
    pub fn default_path() -> Option<PathBuf> {
        resolve_dir(std::env::var_os(CONFIG_ENV), |dirs| dirs.config_dir().join("config.toml"))
    }

    /// The platform's config file, whatever `LEAKWATCH_CONFIG` says: the file a
    /// new user has not written yet.
    pub fn platform_path() -> Option<PathBuf> {
        resolve_dir(None, |dirs| dirs.config_dir().join("config.toml"))
    }

    /// The data directory (the store): `LEAKWATCH_DATA_DIR` when set, else the
    /// platform's data directory (`~/.local/share/leakwatch` on Linux,
    /// `~/Library/Application Support/dev.leakwatch.Leakwatch` on macOS).
    pub fn data_dir() -> Option<PathBuf> {
        resolve_dir(std::env::var_os(DATA_DIR_ENV), |dirs| dirs.data_dir().to_path_buf())
    }

    /// The target called `name`.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.watch.iter().find(|t| t.name == name)
    }

    /// The poll interval in force for `target`.
    pub fn interval(&self, target: &Target) -> Duration {
        target.interval.unwrap_or(self.defaults.interval)
    }

    /// The trend window in force for `target`.
    pub fn window(&self, target: &Target) -> Duration {
        target.window.unwrap_or(self.defaults.window)
    }

    /// The fallback FD limit for `target`, where the OS cannot tell.
    pub fn fd_limit(&self, target: &Target) -> Option<u64> {
        target.fd_limit.or(self.defaults.fd_limit)
    }

    /// The rules in force for `target`: the defaults with the target's merged over
    /// them (the target wins per metric key; `key = false` removes one), in key
    /// order.
    pub fn effective_rules(&self, target: &Target) -> Vec<RuleSpec> {
        let mut merged = self.defaults.rules.clone();
        for (key, spec) in &target.rules {
            merged.insert(key.clone(), spec.clone());
        }
        merged.into_values().flatten().collect()
    }

    /// The rules for processes watched without configuration (the top FD
    /// holders): the defaults less `down`, since such a process going away is
    /// not an outage.
    pub fn auto_rules(&self) -> Vec<RuleSpec> {
        self.defaults
            .rules
            .values()
            .flatten()
            .filter(|spec| spec.metric != Metric::Down)
            .cloned()
            .collect()
    }
}

/// The first of the `protect` patterns that matches a process with this name and
/// argv\[0\] (tried whole and by its last path component), if any. The one
/// protect matcher: the config's queries and the actions' guard
/// (`kill::Guard`, which names the pattern in its refusal) both ask it, so what
/// `config check` promises is what a signal obeys.
pub fn protect_match<'p>(
    protect: &'p [Regex],
    name: &str,
    argv0: Option<&str>,
) -> Option<&'p Regex> {
    let base = argv0.map(|a| a.rsplit('/').next().unwrap_or(a));
    protect.iter().find(|re| {
        re.is_match(name)
            || argv0.is_some_and(|a| re.is_match(a))
            || base.is_some_and(|b| re.is_match(b))
    })
}

pub(super) fn resolve_dir(
    env: Option<OsString>,
    from_project: impl FnOnce(&directories::ProjectDirs) -> PathBuf,
) -> Option<PathBuf> {
    if let Some(value) = env.filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(value));
    }
    directories::ProjectDirs::from("dev", "leakwatch", "Leakwatch").map(|dirs| from_project(&dirs))
}
