//! Where the configuration comes from. A path alone cannot say whether its file
//! may be missing: the platform's default file is absent on every fresh machine
//! (a new user runs in automatic mode), while a file someone named with
//! `--config` or `LEAKWATCH_CONFIG` and that is missing is a mistake to report.
//! Every face resolves its source once, here, and the engine, the CLI and the
//! app then agree on what a missing file means.

use crate::config::{CONFIG_ENV, Config, ConfigError};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The origin of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// The platform's default file (`None` when there is no home directory to
    /// put it in). It may not exist: then the built-in defaults apply and the
    /// top descriptor holders are watched (automatic mode).
    Default(Option<PathBuf>),
    /// A file the user named (`--config` or `LEAKWATCH_CONFIG`): it must exist.
    Named(PathBuf),
}

impl ConfigSource {
    /// `flag` when given, else `LEAKWATCH_CONFIG` when set and not empty, else
    /// the platform's default file.
    pub fn resolve(flag: Option<PathBuf>) -> Self {
        Self::resolve_with(flag, std::env::var_os(CONFIG_ENV))
    }

    /// [`ConfigSource::resolve`] with the environment variable's value given,
    /// so that tests need not change the process's environment.
    pub fn resolve_with(flag: Option<PathBuf>, env: Option<OsString>) -> Self {
        if let Some(path) = flag {
            return Self::Named(path);
        }
        match env.filter(|v| !v.is_empty()) {
            Some(path) => Self::Named(PathBuf::from(path)),
            None => Self::Default(Config::platform_path()),
        }
    }

    /// The file, if there is one to read or write.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Default(path) => path.as_deref(),
            Self::Named(path) => Some(path),
        }
    }

    /// Reads the configuration: `Ok(None)` when the default file does not exist
    /// (automatic mode); a named file that does not exist is an error naming it.
    pub fn load(&self) -> Result<Option<Config>, ConfigError> {
        match self {
            Self::Named(path) => {
                if !path.exists() {
                    return Err(ConfigError {
                        path: path.clone(),
                        line: 0,
                        key: String::new(),
                        message: format!(
                            "no such file (named by --config or {CONFIG_ENV}; \
                             `leakwatch config init` writes one)"
                        ),
                    });
                }
                Config::load(path).map(Some)
            }
            Self::Default(Some(path)) if path.exists() => Config::load(path).map(Some),
            Self::Default(_) => Ok(None),
        }
    }

    /// [`ConfigSource::load`], with the built-in defaults for an absent default
    /// file.
    pub fn load_or_default(&self) -> Result<Config, ConfigError> {
        Ok(self.load()?.unwrap_or_default())
    }
}

impl Config {
    /// Loads the file at [`Config::default_path`]: a missing file at the platform
    /// default is the default configuration; a missing file named by
    /// `LEAKWATCH_CONFIG` is an error (someone asked for it).
    pub fn load_default() -> Result<Config, ConfigError> {
        ConfigSource::resolve(None).load_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_wins_over_the_environment() {
        let source = ConfigSource::resolve_with(Some("/a.toml".into()), Some("/b.toml".into()));
        assert_eq!(source, ConfigSource::Named("/a.toml".into()));
    }

    #[test]
    fn the_environment_names_a_file() {
        let source = ConfigSource::resolve_with(None, Some("/b.toml".into()));
        assert_eq!(source, ConfigSource::Named("/b.toml".into()));
    }

    #[test]
    fn an_empty_environment_variable_means_the_platform_default() {
        let source = ConfigSource::resolve_with(None, Some(OsString::new()));
        assert!(matches!(source, ConfigSource::Default(_)), "{source:?}");
    }

    #[test]
    fn a_missing_default_file_is_automatic_mode() {
        let dir = tempfile::tempdir().unwrap();
        let source = ConfigSource::Default(Some(dir.path().join("config.toml")));
        assert!(source.load().unwrap().is_none());
        assert!(source.load_or_default().unwrap().watch.is_empty());
        assert!(ConfigSource::Default(None).load().unwrap().is_none());
    }

    #[test]
    fn a_missing_named_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.toml");
        let error = ConfigSource::Named(path.clone()).load().unwrap_err();
        assert_eq!(error.path(), path);
        assert!(error.to_string().contains("no such file"), "{error}");
        assert!(error.to_string().contains("LEAKWATCH_CONFIG"), "{error}");
    }

    #[test]
    fn a_broken_default_file_is_an_error_with_its_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "# mine\n[defaults]\ninterval = \"2x\"\n").unwrap();
        let error = ConfigSource::Default(Some(path)).load().unwrap_err();
        assert_eq!(error.line(), 3);
        assert_eq!(error.key(), "defaults.interval");
    }
}
