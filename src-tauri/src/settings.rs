//! The settings screen's model and its round trip to `config.toml`. The file is
//! the user's, with their comments and layout, so it is edited in place with
//! `toml_edit` (never re-serialised from the model), and the edited text is
//! validated by the same parser the engine uses before anything is written: a
//! bad value is refused with the parser's reason and the file stays as it was.

use crate::error::{AppError, ErrorKind};
use leakwatch_core::Config;
use leakwatch_core::config_form::{self, TargetForm};
use serde::{Deserialize, Serialize};
use std::path::Path;
use toml_edit::{DocumentMut, value};

/// What the settings screen edits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Settings {
    pub launch_at_login: bool,
    /// `[defaults] interval`, in whole seconds.
    pub interval_seconds: u32,
    /// `[notify] enabled`.
    pub notifications: bool,
    /// The file these come from (read-only in the UI).
    pub config_path: Option<String>,
    /// The `[[watch]]` targets, as the target form edits them; saved one at a
    /// time (`save_target`, `remove_target`), never by `save_settings`.
    pub targets: Vec<TargetForm>,
}

/// Reads the settings from the file at `path` (defaults when it does not exist).
pub fn read(path: Option<&Path>, launch_at_login: bool) -> Result<Settings, AppError> {
    let text = match path {
        Some(path) if path.exists() => std::fs::read_to_string(path)?,
        _ => String::new(),
    };
    let config = match path {
        Some(path) if path.exists() => Config::parse(&text, path)?,
        _ => Config::default(),
    };
    let targets = match path {
        Some(path) if path.exists() => config_form::read_forms(&text, path)?,
        _ => Vec::new(),
    };
    Ok(Settings {
        launch_at_login,
        interval_seconds: u32::try_from(config.defaults.interval.as_secs()).unwrap_or(u32::MAX),
        notifications: config.notify.enabled,
        config_path: path.map(|p| p.display().to_string()),
        targets,
    })
}

/// `text` with `settings` applied, validated with [`Config::parse`] (as `path`).
/// Keeps every comment and key it does not set. Targets are not touched here:
/// each is saved through its own form ([`config_form::save_form`]).
pub fn apply(text: &str, settings: &Settings, path: &Path) -> Result<String, AppError> {
    let invalid = |message: String| AppError::new(ErrorKind::InvalidSettings, message);
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| invalid(format!("{}: {e}", path.display())))?;
    if settings.interval_seconds == 0 {
        return Err(invalid("the poll interval must be at least 1 second".to_owned()));
    }
    let current = Config::parse(text, path).unwrap_or_default();
    if current.defaults.interval.as_secs() != u64::from(settings.interval_seconds) {
        doc["defaults"]["interval"] = value(format!("{}s", settings.interval_seconds));
    }
    if current.notify.enabled != settings.notifications {
        doc["notify"]["enabled"] = value(settings.notifications);
    }
    let edited = doc.to_string();
    Config::parse(&edited, path).map_err(|e| invalid(e.to_string()))?;
    Ok(edited)
}

/// Applies `settings` to the file at `path` (created if missing) and writes it
/// atomically, only when valid.
pub fn save(path: &Path, settings: &Settings) -> Result<(), AppError> {
    let text = if path.exists() { std::fs::read_to_string(path)? } else { String::new() };
    let edited = apply(&text, settings, path)?;
    if edited == text {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        leakwatch_core::private::create_dir(dir)?;
    }
    leakwatch_core::private::write(path, edited.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# my servers
[defaults]
interval = "2s"   # fast

[[watch]]
name = "copilot"
port = 4321
# keep this comment

[watch.rules]
kqueue = { warn = 500 }

[[watch]]
name = "webui"
process = "^webui$"
"#;

    fn path() -> std::path::PathBuf {
        std::path::PathBuf::from("/tmp/leakwatch-settings-test/config.toml")
    }

    fn settings() -> Settings {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.toml");
        std::fs::write(&file, TEXT).expect("write");
        read(Some(&file), false).expect("read")
    }

    #[test]
    fn reads_what_the_file_says() {
        let s = settings();
        assert_eq!(s.interval_seconds, 2);
        assert!(s.notifications);
        assert_eq!(s.targets.len(), 2);
        assert_eq!(s.targets[0].name, "copilot");
        assert_eq!(s.targets[0].locator_value, "4321");
        assert_eq!(s.targets[1].locator_value, "^webui$");
        assert_eq!(s.targets[0].fds_warn, "");
    }

    #[test]
    fn edits_keep_comments_and_validate() -> Result<(), AppError> {
        let mut s = settings();
        s.interval_seconds = 5;
        s.notifications = false;
        let edited = apply(TEXT, &s, &path())?;
        assert!(edited.contains("# keep this comment"), "{edited}");
        assert!(edited.contains("# my servers"));
        assert!(edited.contains("interval = \"5s\""), "{edited}");
        let config = Config::parse(&edited, &path())?;
        assert!(!config.notify.enabled);
        assert_eq!(config.defaults.interval.as_secs(), 5);
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("config.toml");
        std::fs::write(&file, &edited)?;
        let again = read(Some(&file), false)?;
        // Unchanged settings change nothing; the targets are left to their form.
        assert_eq!(apply(&edited, &again, &path())?, edited);
        Ok(())
    }

    #[test]
    fn a_bad_value_is_refused_with_the_reason() {
        let mut s = settings();
        s.interval_seconds = 0;
        assert_eq!(apply(TEXT, &s, &path()).map_err(|e| e.kind), Err(ErrorKind::InvalidSettings));
    }

    #[test]
    fn save_writes_only_valid_files() -> Result<(), AppError> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("sub/config.toml");
        let mut s = read(Some(&file), true)?;
        s.interval_seconds = 10;
        save(&file, &s)?;
        assert_eq!(Config::load(&file)?.defaults.interval.as_secs(), 10);
        Ok(())
    }
}
