//! The settings screen's model and its round trip to `config.toml`. The file is
//! the user's, with their comments and layout, so it is edited in place with
//! `toml_edit` (never re-serialised from the model), and the edited text is
//! validated by the same parser the engine uses before anything is written: a
//! bad value is refused with the parser's reason and the file stays as it was.

use crate::error::{AppError, ErrorKind};
use leakwatch_core::Config;
use serde::{Deserialize, Serialize};
use std::path::Path;
use toml_edit::{DocumentMut, Item, value};

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
    pub targets: Vec<TargetSettings>,
}

/// A `[[watch]]` entry's descriptor thresholds (`[watch.rules] fds`): `"500"` or
/// `"80%"`; `None` inherits `[defaults.rules]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct TargetSettings {
    pub name: String,
    pub fds_warn: Option<String>,
    pub fds_critical: Option<String>,
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
    let doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| AppError::new(ErrorKind::Config, e.to_string()))?;
    let targets = config
        .watch
        .iter()
        .map(|target| {
            let fds = watch_table(&doc, &target.name).and_then(|t| t.get("rules")?.get("fds"));
            let threshold = |key: &str| fds.and_then(|fds| fds.get(key)).and_then(threshold_text);
            TargetSettings {
                name: target.name.clone(),
                fds_warn: threshold("warn"),
                fds_critical: threshold("critical"),
            }
        })
        .collect();
    Ok(Settings {
        launch_at_login,
        interval_seconds: u32::try_from(config.defaults.interval.as_secs()).unwrap_or(u32::MAX),
        notifications: config.notify.enabled,
        config_path: path.map(|p| p.display().to_string()),
        targets,
    })
}

/// `text` with `settings` applied, validated with [`Config::parse`] (as `path`).
/// Keeps every comment and key it does not set.
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
    for target in &settings.targets {
        let Some(table) = watch_table_mut(&mut doc, &target.name) else {
            return Err(invalid(format!("no target `{}` in {}", target.name, path.display())));
        };
        set_threshold(table, "warn", target.fds_warn.as_deref());
        set_threshold(table, "critical", target.fds_critical.as_deref());
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

fn watch_table<'a>(doc: &'a DocumentMut, name: &str) -> Option<&'a toml_edit::Table> {
    doc.get("watch")?
        .as_array_of_tables()?
        .iter()
        .find(|t| t.get("name").and_then(Item::as_str) == Some(name))
}

fn watch_table_mut<'a>(doc: &'a mut DocumentMut, name: &str) -> Option<&'a mut toml_edit::Table> {
    doc.get_mut("watch")?
        .as_array_of_tables_mut()?
        .iter_mut()
        .find(|t| t.get("name").and_then(Item::as_str) == Some(name))
}

/// A threshold as the UI edits it: `500` → `"500"`, `"80%"` → `"80%"`.
fn threshold_text(item: &Item) -> Option<String> {
    match item.as_value()? {
        toml_edit::Value::Integer(n) => Some(n.value().to_string()),
        toml_edit::Value::String(s) => Some(s.value().clone()),
        other => Some(other.to_string().trim().to_owned()),
    }
}

/// Sets (or with `None`, removes) `rules.fds.<key>` of one `[[watch]]` table. A
/// plain number is written as a TOML integer, anything else as a string, which
/// the parser then accepts or refuses.
fn set_threshold(table: &mut toml_edit::Table, key: &str, text: Option<&str>) {
    let text = text.map(str::trim).filter(|t| !t.is_empty());
    let existing = table
        .get("rules")
        .and_then(|r| r.get("fds"))
        .and_then(|f| f.get(key))
        .and_then(threshold_text);
    if existing.as_deref() == text {
        return;
    }
    match text {
        Some(text) => {
            let new = match text.parse::<i64>() {
                Ok(n) => value(n),
                Err(_) => value(text),
            };
            if table.get("rules").is_none() {
                let mut rules = toml_edit::Table::new();
                rules.set_implicit(false);
                table.insert("rules", Item::Table(rules));
            }
            let rules = &mut table["rules"];
            if rules.get("fds").is_none() {
                let mut fds = toml_edit::InlineTable::new();
                fds.set_dotted(false);
                rules["fds"] = value(fds);
            }
            rules["fds"][key] = new;
        }
        None => {
            if let Some(fds) = table
                .get_mut("rules")
                .and_then(|r| r.get_mut("fds"))
                .and_then(Item::as_table_like_mut)
            {
                fds.remove(key);
            }
        }
    }
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
        assert_eq!(s.targets[0].fds_warn, None);
    }

    #[test]
    fn edits_keep_comments_and_validate() -> Result<(), AppError> {
        let mut s = settings();
        s.interval_seconds = 5;
        s.notifications = false;
        s.targets[0].fds_warn = Some("800".to_owned());
        s.targets[1].fds_critical = Some("95%".to_owned());
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
        assert_eq!(again.targets[0].fds_warn.as_deref(), Some("800"));
        assert_eq!(again.targets[1].fds_critical.as_deref(), Some("95%"));
        // Unchanged settings change nothing.
        assert_eq!(apply(&edited, &again, &path())?, edited);
        Ok(())
    }

    #[test]
    fn a_bad_value_is_refused_with_the_reason() {
        let mut s = settings();
        s.targets[0].fds_warn = Some("lots".to_owned());
        let err = apply(TEXT, &s, &path()).expect_err("refused");
        assert_eq!(err.kind, ErrorKind::InvalidSettings);
        assert!(err.message.contains("fds"), "{}", err.message);
        s.targets[0].fds_warn = None;
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
