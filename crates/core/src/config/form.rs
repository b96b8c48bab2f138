//! One `[[watch]]` target as the app's Settings form edits it: its locator,
//! descriptor thresholds, `fd_limit` and `[watch.restart]`. The form holds what
//! the user typed, as text, and is written into the user's file with
//! `toml_edit` (their comments and layout kept, only changed keys touched);
//! the result must pass [`Config::parse`], the parser of `leakwatch config
//! check`, so the UI re-implements no rule. A refusal is mapped back from the
//! key the parser names (`watch[2].restart.health`) to the form's field, and
//! is given in words, without a file and line the user never wrote.

use crate::config::edit::EditError;
use crate::config::{Config, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, Value, value};

/// How the target is found: the config key of its selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum LocatorKey {
    Port,
    Pidfile,
    Process,
    Argv,
    Launchd,
    Systemd,
}

const LOCATOR_KEYS: [(LocatorKey, &str); 6] = [
    (LocatorKey::Port, "port"),
    (LocatorKey::Pidfile, "pidfile"),
    (LocatorKey::Process, "process"),
    (LocatorKey::Argv, "argv"),
    (LocatorKey::Launchd, "launchd"),
    (LocatorKey::Systemd, "systemd"),
];

impl LocatorKey {
    /// The config key (`port`, `pidfile`, ...).
    pub fn key(self) -> &'static str {
        LOCATOR_KEYS.iter().find(|(k, _)| *k == self).map_or("port", |(_, name)| name)
    }
}

/// How the target is restarted (`[watch.restart]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum RestartWay {
    /// No `[watch.restart]`: the app offers no Restart for it.
    None,
    /// `command = [...]`, with `cwd` and `health`.
    Command,
    /// `launchd = "label"`.
    Launchd,
    /// `systemd = "unit"`.
    Systemd,
}

/// A `[[watch]]` target as typed in Settings. Empty text means "not set".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TargetForm {
    pub name: String,
    pub locator: LocatorKey,
    /// The port, pidfile path, regex, label or unit, as typed.
    pub locator_value: String,
    /// The descriptor limit to measure against where the OS cannot tell.
    pub fd_limit: String,
    /// `[watch.rules] fds` thresholds: a count like `500` or a share like `80%`.
    pub fds_warn: String,
    pub fds_critical: String,
    pub restart: RestartWay,
    /// The command line, split as a POSIX shell would (quotes group words).
    pub restart_command: String,
    pub restart_cwd: String,
    /// An `http://` URL answering 2xx, or `tcp:HOST:PORT`.
    pub restart_health: String,
    /// The launchd label or systemd unit, with those restart ways.
    pub restart_service: String,
}

/// A field of [`TargetForm`], named by an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum FormField {
    Name,
    Locator,
    FdLimit,
    FdsWarn,
    FdsCritical,
    Restart,
    RestartCommand,
    RestartCwd,
    RestartHealth,
    RestartService,
}

/// Why a form was not saved; the file is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    /// A value of the form was refused: the message is in words, for the
    /// field it concerns.
    #[error("{message}")]
    Field { field: FormField, message: String },
    /// The file could not be edited, or holds an error elsewhere.
    #[error(transparent)]
    Edit(#[from] EditError),
}

fn document(text: &str, path: &Path) -> Result<DocumentMut, EditError> {
    text.parse().map_err(|e: toml_edit::TomlError| EditError::Syntax {
        path: path.to_path_buf(),
        message: e.message().to_owned(),
    })
}

/// The `[[watch]]` targets of `text` as the form shows them. The text must
/// pass [`Config::parse`] (as `path`) first, so each target has its name and
/// one selector.
pub fn read_forms(text: &str, path: &Path) -> Result<Vec<TargetForm>, EditError> {
    Config::parse(text, path)?;
    let doc = document(text, path)?;
    let Some(list) = doc.get("watch").and_then(Item::as_array_of_tables) else {
        return Ok(Vec::new());
    };
    Ok(list.iter().map(form_of).collect())
}

fn form_of(table: &Table) -> TargetForm {
    let text = |item: Option<&Item>| item.and_then(item_text).unwrap_or_default();
    let (locator, locator_value) = LOCATOR_KEYS
        .iter()
        .find_map(|(key, name)| table.get(name).map(|item| (*key, text(Some(item)))))
        .unwrap_or((LocatorKey::Port, String::new()));
    let fds = table.get("rules").and_then(|r| r.get("fds"));
    let restart = table.get("restart").and_then(Item::as_table_like);
    let in_restart = |key: &str| restart.and_then(|r| r.get(key));
    let (way, service) = if let Some(label) = in_restart("launchd") {
        (RestartWay::Launchd, text(Some(label)))
    } else if let Some(unit) = in_restart("systemd") {
        (RestartWay::Systemd, text(Some(unit)))
    } else if in_restart("command").is_some() {
        (RestartWay::Command, String::new())
    } else {
        (RestartWay::None, String::new())
    };
    let command = in_restart("command")
        .and_then(Item::as_array)
        .map(|parts| {
            let words: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
            shlex::try_join(words.iter().copied()).unwrap_or_else(|_| words.join(" "))
        })
        .unwrap_or_default();
    TargetForm {
        name: text(table.get("name")),
        locator,
        locator_value,
        fd_limit: text(table.get("fd_limit")),
        fds_warn: text(fds.and_then(|f| f.get("warn"))),
        fds_critical: text(fds.and_then(|f| f.get("critical"))),
        restart: way,
        restart_command: command,
        restart_cwd: text(in_restart("cwd")),
        restart_health: text(in_restart("health")),
        restart_service: service,
    }
}

/// A scalar as the form edits it: `500` → `"500"`, `"80%"` → `"80%"`.
fn item_text(item: &Item) -> Option<String> {
    match item.as_value()? {
        Value::Integer(n) => Some(n.value().to_string()),
        Value::String(s) => Some(s.value().clone()),
        other => Some(other.to_string().trim().to_owned()),
    }
}

/// What the user typed, as TOML: a whole number as an integer, anything else
/// as a string, which the parser then accepts or refuses with its reason.
fn typed(text: &str) -> Item {
    match text.parse::<i64>() {
        Ok(n) => value(n),
        Err(_) => value(text),
    }
}

/// Sets `key` of `table` to what was typed (removes it when `text` is empty),
/// leaving the key and its comment alone when the value is the same.
fn set_text(table: &mut dyn toml_edit::TableLike, key: &str, text: &str, as_number: bool) {
    let text = text.trim();
    if text.is_empty() {
        table.remove(key);
        return;
    }
    if table.get(key).and_then(item_text).as_deref() == Some(text) {
        return;
    }
    let new = if as_number { typed(text) } else { value(text) };
    match table.get_mut(key).and_then(Item::as_value_mut) {
        // Keep the value's own decor (a trailing comment).
        Some(old) => {
            let decor = old.decor().clone();
            if let Item::Value(mut v) = new {
                *v.decor_mut() = decor;
                *old = v;
            }
        }
        None => {
            table.insert(key, new);
        }
    }
}

/// `text` with the target `previous` (or, with `None`, a new target) set to
/// `form`, validated as `path` by the parser of `leakwatch config check`.
pub fn put_target(
    text: &str,
    previous: Option<&str>,
    form: &TargetForm,
    path: &Path,
) -> Result<String, FormError> {
    let mut doc = document(text, path)?;
    let name = form.name.trim();
    let command = if form.restart == RestartWay::Command {
        let words = shlex::split(&form.restart_command).ok_or_else(|| FormError::Field {
            field: FormField::RestartCommand,
            message: "a quote is not closed".to_owned(),
        })?;
        if words.is_empty() {
            return Err(FormError::Field {
                field: FormField::RestartCommand,
                message: "the command to start it, like python3 server.py".to_owned(),
            });
        }
        words
    } else {
        Vec::new()
    };
    if !doc.contains_key("watch") {
        doc.insert("watch", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    let list = doc
        .get_mut("watch")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| EditError::NotATableList { path: path.to_path_buf() })?;
    let named = |t: &Table, n: &str| t.get("name").and_then(Item::as_str) == Some(n);
    let index = match previous {
        Some(previous) => list.iter().position(|t| named(t, previous)).ok_or_else(|| {
            EditError::NoSuchTarget { path: path.to_path_buf(), name: previous.to_owned() }
        })?,
        None => {
            list.push(Table::new());
            list.len() - 1
        }
    };
    if list.iter().enumerate().any(|(i, t)| i != index && named(t, name)) {
        return Err(FormError::Field {
            field: FormField::Name,
            message: format!("another target is called {name:?} already"),
        });
    }
    let table = list.get_mut(index).ok_or_else(|| EditError::NoSuchTarget {
        path: path.to_path_buf(),
        name: name.to_owned(),
    })?;
    if item_text_at(table, "name").as_deref() != Some(name) {
        table.insert("name", value(name));
    }
    for (key, other) in LOCATOR_KEYS {
        if key != form.locator {
            table.remove(other);
        }
    }
    // An empty locator is written as such, so the parser names what it needs.
    if form.locator_value.trim().is_empty() {
        table.insert(form.locator.key(), value(""));
    } else {
        set_text(table, form.locator.key(), &form.locator_value, form.locator == LocatorKey::Port);
    }
    set_text(table, "fd_limit", &form.fd_limit, true);
    set_thresholds(table, &form.fds_warn, &form.fds_critical);
    set_restart(table, form, &command);
    if previous.is_none() {
        crate::config::edit::keep_notes_above_the_last_target(&mut doc);
    }
    let edited = doc.to_string();
    Config::parse(&edited, path).map_err(|error| refusal(error, index))?;
    Ok(edited)
}

fn item_text_at(table: &Table, key: &str) -> Option<String> {
    table.get(key).and_then(item_text)
}

fn set_thresholds(table: &mut Table, warn: &str, critical: &str) {
    let wanted = !warn.trim().is_empty() || !critical.trim().is_empty();
    if wanted && table.get("rules").and_then(|r| r.get("fds")).is_none() {
        if table.get("rules").is_none() {
            let mut rules = Table::new();
            rules.set_implicit(false);
            table.insert("rules", Item::Table(rules));
        }
        if let Some(rules) = table.get_mut("rules").and_then(Item::as_table_like_mut) {
            let mut fds = toml_edit::InlineTable::new();
            fds.set_dotted(false);
            rules.insert("fds", value(fds));
        }
    }
    let Some(rules) = table.get_mut("rules").and_then(Item::as_table_like_mut) else {
        return;
    };
    if let Some(fds) = rules.get_mut("fds").and_then(Item::as_table_like_mut) {
        set_text(fds, "warn", warn, true);
        set_text(fds, "critical", critical, true);
        // An emptied rule would be "a rule needs warn, critical or both":
        // emptying both fields means "inherit the defaults".
        if fds.is_empty() {
            rules.remove("fds");
        }
    }
    if rules.is_empty() {
        table.remove("rules");
    }
}

fn set_restart(table: &mut Table, form: &TargetForm, command: &[String]) {
    if form.restart == RestartWay::None {
        table.remove("restart");
        return;
    }
    if table.get("restart").is_none() {
        let mut restart = Table::new();
        restart.set_implicit(false);
        table.insert("restart", Item::Table(restart));
    }
    let Some(restart) = table.get_mut("restart").and_then(Item::as_table_like_mut) else {
        return;
    };
    let own = match form.restart {
        RestartWay::Command => "command",
        RestartWay::Launchd => "launchd",
        _ => "systemd",
    };
    for way in ["command", "launchd", "systemd"] {
        if way != own {
            restart.remove(way);
        }
    }
    if form.restart == RestartWay::Command {
        let same = restart.get("command").and_then(Item::as_array).is_some_and(|old| {
            old.iter().map(Value::as_str).eq(command.iter().map(|w| Some(w.as_str())))
        });
        if !same {
            restart.insert("command", value(command.iter().map(String::as_str).collect::<Array>()));
        }
        set_text(restart, "cwd", &form.restart_cwd, false);
        set_text(restart, "health", &form.restart_health, false);
    } else {
        // launchd and systemd start the service themselves: the command's
        // settings do not apply (the parser refuses them).
        for key in ["cwd", "env", "log", "health", "health_timeout", "grace"] {
            restart.remove(key);
        }
        if form.restart_service.trim().is_empty() {
            restart.insert(own, value(""));
        } else {
            set_text(restart, own, &form.restart_service, false);
        }
    }
}

/// The parser's refusal of the edited file, as the form shows it: on the field
/// its key names when it concerns the target at `index`; otherwise the file
/// holds an error elsewhere, which is reported with its file, line and key.
fn refusal(error: ConfigError, index: usize) -> FormError {
    let prefix = format!("watch[{index}]");
    let rest = error
        .key()
        .strip_prefix(&prefix)
        .and_then(|r| if r.is_empty() { Some("") } else { r.strip_prefix('.') });
    let Some(field) = rest.and_then(field_of_key) else {
        return FormError::Edit(EditError::Invalid(error));
    };
    FormError::Field { field, message: error.message().to_owned() }
}

/// The form field a key below `watch[N]` belongs to.
fn field_of_key(key: &str) -> Option<FormField> {
    let field = match key {
        "name" => FormField::Name,
        "fd_limit" => FormField::FdLimit,
        "rules.fds.warn" | "rules.fds" => FormField::FdsWarn,
        "rules.fds.critical" => FormField::FdsCritical,
        "restart.command" => FormField::RestartCommand,
        "restart.cwd" => FormField::RestartCwd,
        "restart.health" => FormField::RestartHealth,
        "restart.launchd" | "restart.systemd" => FormField::RestartService,
        "restart" | "auto_restart" => FormField::Restart,
        // A table-level refusal of the target itself: it lacks a selector
        // (the form always writes a name).
        "" => FormField::Locator,
        other if LOCATOR_KEYS.iter().any(|(_, name)| *name == other) => FormField::Locator,
        other if other.starts_with("restart.") => FormField::Restart,
        _ => return None,
    };
    Some(field)
}

/// [`put_target`] on the file at `path` (created if absent), written atomically.
pub fn save_form(path: &Path, previous: Option<&str>, form: &TargetForm) -> Result<(), FormError> {
    crate::config::edit::edit_file(path, |text| put_target(text, previous, form, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::edit::remove_target;
    use crate::config::{Health, Restart, Selector};
    use std::path::PathBuf;

    fn path() -> PathBuf {
        PathBuf::from("/home/me/.config/leakwatch/config.toml")
    }

    const MINE: &str = "# my settings: keep this\n[defaults]\ninterval = \"5s\"  # slower\n\n# the api\n[[watch]]\nname = \"api\"\nport = 4321 # its port\n\n[watch.rules]\nkqueue = { warn = 500 } # mine\n";

    fn form(name: &str, locator: LocatorKey, value: &str) -> TargetForm {
        TargetForm {
            name: name.to_owned(),
            locator,
            locator_value: value.to_owned(),
            fd_limit: String::new(),
            fds_warn: String::new(),
            fds_critical: String::new(),
            restart: RestartWay::None,
            restart_command: String::new(),
            restart_cwd: String::new(),
            restart_health: String::new(),
            restart_service: String::new(),
        }
    }

    fn field_error(result: Result<String, FormError>) -> (FormField, String) {
        match result {
            Err(FormError::Field { field, message }) => (field, message),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn settings_adds_each_locator_kind_and_reads_it_back() {
        let kinds = [
            (LocatorKey::Port, "8787", "port 8787"),
            (LocatorKey::Pidfile, "/run/web.pid", "pidfile /run/web.pid"),
            (LocatorKey::Process, "^web$", "process /^web$/"),
            (LocatorKey::Argv, "^node .*server\\.js", "argv /^node .*server\\.js/"),
            (LocatorKey::Launchd, "com.example.web", "launchd com.example.web"),
            (LocatorKey::Systemd, "web.service", "systemd web.service"),
        ];
        for (key, value, shown) in kinds {
            let new = form("web", key, value);
            let edited = put_target(MINE, None, &new, &path()).unwrap();
            assert!(edited.starts_with(MINE), "{edited}");
            let config = Config::parse(&edited, &path()).unwrap();
            assert_eq!(config.watch[1].selector.to_string(), shown);
            assert_eq!(read_forms(&edited, &path()).unwrap()[1], new);
            // Removing it gives the file back as it was.
            let removed = remove_target(&edited, "web", &path()).unwrap();
            assert_eq!(removed.trim_end(), MINE.trim_end());
        }
    }

    #[test]
    fn settings_adds_below_a_file_of_notes_and_removes_back_to_it() {
        let mut new = form("web", LocatorKey::Port, "8787");
        new.restart = RestartWay::Systemd;
        new.restart_service = "web.service".into();
        new.fds_warn = "500".into();
        let edited = put_target("# my notes\n", None, &new, &path()).unwrap();
        assert!(edited.starts_with("# my notes\n"), "{edited}");
        let removed = remove_target(&edited, "web", &path()).unwrap();
        assert_eq!(removed.trim_end(), "# my notes");
    }

    #[test]
    fn settings_edits_thresholds_limit_and_restart_keeping_comments() {
        let mut edit = read_forms(MINE, &path()).unwrap().remove(0);
        assert_eq!(edit, form("api", LocatorKey::Port, "4321"));
        edit.fd_limit = "10240".into();
        edit.fds_warn = "500".into();
        edit.fds_critical = "95%".into();
        edit.restart = RestartWay::Command;
        edit.restart_command = "python3 'my server.py' --foreground".into();
        edit.restart_cwd = "/srv/api".into();
        edit.restart_health = "http://127.0.0.1:4321/health".into();
        let edited = put_target(MINE, Some("api"), &edit, &path()).unwrap();
        for kept in ["# my settings: keep this", "# the api", "port = 4321 # its port", "# mine"] {
            assert!(edited.contains(kept), "{kept} lost:\n{edited}");
        }
        let config = Config::parse(&edited, &path()).unwrap();
        let api = &config.watch[0];
        assert_eq!(api.fd_limit, Some(10_240));
        assert!(api.rules.contains_key("kqueue"), "other rules kept");
        assert!(api.rules.contains_key("fds"));
        let Some(Restart::Command { argv, cwd, health, .. }) = &api.restart else {
            panic!("no command restart: {:?}", api.restart);
        };
        assert_eq!(argv, &["python3", "my server.py", "--foreground"]);
        assert_eq!(cwd.as_deref(), Some(Path::new("/srv/api")));
        assert_eq!(health, &Some(Health::Http("http://127.0.0.1:4321/health".into())));
        let again = read_forms(&edited, &path()).unwrap().remove(0);
        assert_eq!(again, edit);
        // Saving what was read changes nothing.
        assert_eq!(put_target(&edited, Some("api"), &again, &path()).unwrap(), edited);

        // Switching to a service manager drops the command's settings.
        let mut launchd = again.clone();
        launchd.restart = RestartWay::Launchd;
        launchd.restart_service = "com.example.api".into();
        let switched = put_target(&edited, Some("api"), &launchd, &path()).unwrap();
        let config = Config::parse(&switched, &path()).unwrap();
        assert_eq!(config.watch[0].restart, Some(Restart::Launchd("com.example.api".into())));
        let mut systemd = launchd.clone();
        systemd.restart = RestartWay::Systemd;
        systemd.restart_service = "api.service".into();
        let switched = put_target(&switched, Some("api"), &systemd, &path()).unwrap();
        let config = Config::parse(&switched, &path()).unwrap();
        assert_eq!(config.watch[0].restart, Some(Restart::Systemd("api.service".into())));

        // Emptying the fields goes back to the defaults and to no restart.
        let mut cleared = systemd;
        cleared.fd_limit.clear();
        cleared.fds_warn.clear();
        cleared.fds_critical.clear();
        cleared.restart = RestartWay::None;
        let back = put_target(&switched, Some("api"), &cleared, &path()).unwrap();
        assert_eq!(back, MINE);
    }

    #[test]
    fn settings_renames_and_changes_the_locator() {
        let mut edit = read_forms(MINE, &path()).unwrap().remove(0);
        edit.name = "backend".into();
        edit.locator = LocatorKey::Argv;
        edit.locator_value = "^node api\\.js".into();
        let edited = put_target(MINE, Some("api"), &edit, &path()).unwrap();
        let config = Config::parse(&edited, &path()).unwrap();
        assert_eq!(config.watch[0].name, "backend");
        assert!(matches!(config.watch[0].selector, Selector::Argv(_)));
        assert!(edited.contains("# the api"), "{edited}");
    }

    #[test]
    fn settings_errors_name_the_field_in_words() {
        type Change = dyn Fn(&mut TargetForm);
        let cases: &[(&Change, FormField, &str)] = &[
            (&|f| f.locator_value = "abc".into(), FormField::Locator, "TCP port"),
            (&|f| f.locator_value = "70000".into(), FormField::Locator, "TCP port"),
            (&|f| f.locator_value = String::new(), FormField::Locator, "TCP port"),
            (
                &|f| {
                    f.locator = LocatorKey::Process;
                    f.locator_value = "(".into();
                },
                FormField::Locator,
                "regex",
            ),
            (&|f| f.name = String::new(), FormField::Name, "name"),
            (&|f| f.name = "api".into(), FormField::Name, "already"),
            (&|f| f.fd_limit = "lots".into(), FormField::FdLimit, "limit"),
            (&|f| f.fds_warn = "lots".into(), FormField::FdsWarn, "lots"),
            (
                &|f| {
                    f.fds_warn = "90%".into();
                    f.fds_critical = "80%".into();
                },
                FormField::FdsCritical,
                "above warn",
            ),
            (
                &|f| {
                    f.restart = RestartWay::Command;
                    f.restart_command = "python3 'server.py".into();
                },
                FormField::RestartCommand,
                "quote",
            ),
            (
                &|f| {
                    f.restart = RestartWay::Command;
                    f.restart_command = "python3 server.py".into();
                    f.restart_health = "ftp://x".into();
                },
                FormField::RestartHealth,
                "http://",
            ),
            (
                &|f| {
                    f.restart = RestartWay::Command;
                    f.restart_command = "python3 server.py".into();
                    f.restart_cwd = " ".into();
                    f.restart_health = "tcp:nowhere".into();
                },
                FormField::RestartHealth,
                "tcp:HOST:PORT",
            ),
            (&|f| f.restart = RestartWay::Launchd, FormField::RestartService, "launchd label"),
        ];
        for (change, field, words) in cases {
            let mut new = form("web", LocatorKey::Port, "8787");
            change(&mut new);
            let (got, message) = field_error(put_target(MINE, None, &new, &path()));
            assert_eq!(got, *field, "{new:?}: {message}");
            assert!(message.contains(words), "{new:?}: {message}");
            // In words: no file and line of a file never written.
            assert!(!message.contains("config.toml"), "{message}");
        }
    }

    #[test]
    fn removing_the_restart_of_an_auto_restarted_target_is_refused_on_restart() {
        let text = "[[watch]]\nname = \"a\"\nport = 1\n\n[watch.restart]\nsystemd = \"a.service\"\n\n[watch.auto_restart]\nmax = 2\n";
        let mut edit = read_forms(text, &path()).unwrap().remove(0);
        assert_eq!(edit.restart, RestartWay::Systemd);
        edit.restart = RestartWay::None;
        let (field, message) = field_error(put_target(text, Some("a"), &edit, &path()));
        assert_eq!(field, FormField::Restart);
        assert!(message.contains("auto_restart"), "{message}");
    }

    #[test]
    fn an_error_elsewhere_in_the_file_is_reported_with_its_place() {
        let text = "[[watch]]\nname = \"a\"\nport = 1\n\n[[watch]]\nname = \"b\"\nport = \"x\"\n";
        let result = put_target(text, None, &form("web", LocatorKey::Port, "8787"), &path());
        let Err(FormError::Edit(EditError::Invalid(error))) = result else {
            panic!("{result:?}");
        };
        assert_eq!(error.key(), "watch[1].port");
        assert_eq!(error.line(), 7);
    }

    #[test]
    fn save_form_writes_only_a_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/config.toml");
        save_form(&file, None, &form("web", LocatorKey::Port, "8787")).unwrap();
        assert_eq!(Config::load(&file).unwrap().watch[0].name, "web");
        let before = std::fs::read_to_string(&file).unwrap();
        let mut bad = form("web", LocatorKey::Port, "8787");
        bad.fd_limit = "0".into();
        let Err(FormError::Field { field: FormField::FdLimit, .. }) =
            save_form(&file, Some("web"), &bad)
        else {
            panic!("a zero limit was accepted");
        };
        assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    }
}
