//! Adding and removing `[[watch]]` targets in the user's own config file, for
//! `leakwatch config add | remove` and the app's Watch and Settings. The file is
//! the user's, with their comments and layout, so it is edited in place with
//! `toml_edit` and never re-serialised from the model; the edited text must
//! pass the same parser as `leakwatch config check` before it is written, and it
//! replaces the file atomically, so a running engine never reads half of it.

use crate::config::{Config, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

/// How a new target finds its process: one of the config's selectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "key", content = "value", rename_all = "snake_case")]
pub enum Locator {
    Port(u16),
    Pidfile(PathBuf),
    /// A regex on the process name.
    Process(String),
    /// A regex on the command line.
    Argv(String),
    Launchd(String),
    Systemd(String),
}

impl Locator {
    /// The config key (`port`, `pidfile`, ...).
    pub const fn key(&self) -> &'static str {
        match self {
            Locator::Port(_) => "port",
            Locator::Pidfile(_) => "pidfile",
            Locator::Process(_) => "process",
            Locator::Argv(_) => "argv",
            Locator::Launchd(_) => "launchd",
            Locator::Systemd(_) => "systemd",
        }
    }

    fn item(&self) -> Item {
        match self {
            Locator::Port(port) => value(i64::from(*port)),
            Locator::Pidfile(path) => value(path.display().to_string()),
            Locator::Process(text)
            | Locator::Argv(text)
            | Locator::Launchd(text)
            | Locator::Systemd(text) => value(text.as_str()),
        }
    }

    /// As the config and the status write it: `port 4321`.
    pub fn describe(&self) -> String {
        match self {
            Locator::Port(port) => format!("port {port}"),
            Locator::Pidfile(path) => format!("pidfile {}", path.display()),
            Locator::Process(text)
            | Locator::Argv(text)
            | Locator::Launchd(text)
            | Locator::Systemd(text) => format!("{} {text}", self.key()),
        }
    }
}

/// A `[[watch]]` entry to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTarget {
    pub name: String,
    pub locator: Locator,
    /// The limit to measure against where the process's own cannot be read.
    pub fd_limit: Option<u64>,
}

/// Why an edit was refused; the file is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{}: not valid TOML, fix it first: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{}: `watch` is not a list of [[watch]] tables", path.display())]
    NotATableList { path: PathBuf },
    #[error("{}: a target named `{name}` exists already", path.display())]
    Exists { path: PathBuf, name: String },
    #[error("{}: no target named `{name}`", path.display())]
    NoSuchTarget { path: PathBuf, name: String },
    /// The edited file does not pass `leakwatch config check`.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

fn document(text: &str, path: &Path) -> Result<DocumentMut, EditError> {
    text.parse().map_err(|e: toml_edit::TomlError| EditError::Syntax {
        path: path.to_path_buf(),
        message: e.message().to_owned(),
    })
}

/// `text` with `target` appended as a `[[watch]]` table, validated as `path`.
pub fn add_target(text: &str, target: &NewTarget, path: &Path) -> Result<String, EditError> {
    let mut doc = document(text, path)?;
    let not_a_list = || EditError::NotATableList { path: path.to_path_buf() };
    if !doc.contains_key("watch") {
        doc.insert("watch", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    let list =
        doc.get_mut("watch").and_then(Item::as_array_of_tables_mut).ok_or_else(not_a_list)?;
    if list.iter().any(|t| t.get("name").and_then(Item::as_str) == Some(target.name.as_str())) {
        return Err(EditError::Exists { path: path.to_path_buf(), name: target.name.clone() });
    }
    let mut table = Table::new();
    table.insert("name", value(target.name.as_str()));
    table.insert(target.locator.key(), target.locator.item());
    if let Some(limit) = target.fd_limit {
        table.insert("fd_limit", value(i64::try_from(limit).unwrap_or(i64::MAX)));
    }
    list.push(table);
    keep_notes_above_the_last_target(&mut doc);
    let edited = doc.to_string();
    Config::parse(&edited, path)?;
    Ok(edited)
}

/// Comments at the end of the file (all of a file that holds only notes)
/// stay above a `[[watch]]` table just appended rather than end up below it.
pub(crate) fn keep_notes_above_the_last_target(doc: &mut DocumentMut) {
    let trailing = doc.trailing().as_str().unwrap_or("").to_owned();
    if trailing.contains('#')
        && let Some(added) = doc
            .get_mut("watch")
            .and_then(Item::as_array_of_tables_mut)
            .and_then(|l| l.iter_mut().last())
    {
        let own = added.decor().prefix().and_then(|p| p.as_str()).unwrap_or("").to_owned();
        added.decor_mut().set_prefix(format!("{trailing}\n{own}"));
        doc.set_trailing("");
    }
}

/// `text` without the `[[watch]]` table called `name`, validated as `path`.
pub fn remove_target(text: &str, name: &str, path: &Path) -> Result<String, EditError> {
    let mut doc = document(text, path)?;
    let missing = || EditError::NoSuchTarget { path: path.to_path_buf(), name: name.to_owned() };
    let list = doc.get_mut("watch").and_then(Item::as_array_of_tables_mut).ok_or_else(missing)?;
    let index = list
        .iter()
        .position(|t| t.get("name").and_then(Item::as_str) == Some(name))
        .ok_or_else(missing)?;
    // Comments above a table belong to it in toml_edit, but they may be the
    // file's own header: a user's comment is never dropped, it moves on to
    // what followed the removed table.
    let comments = list
        .get(index)
        .and_then(|t| t.decor().prefix())
        .and_then(|p| p.as_str())
        .filter(|p| p.contains('#'))
        .map(str::to_owned);
    list.remove(index);
    if let Some(comments) = &comments
        && let Some(next) = list.get_mut(index)
    {
        let own = next.decor().prefix().and_then(|p| p.as_str()).unwrap_or("").to_owned();
        next.decor_mut().set_prefix(format!("{comments}{own}"));
    } else if let Some(comments) = &comments {
        let trailing = doc.trailing().as_str().unwrap_or("").to_owned();
        doc.set_trailing(format!("{trailing}{comments}"));
    }
    if doc.get("watch").and_then(Item::as_array_of_tables).is_some_and(ArrayOfTables::is_empty) {
        doc.remove("watch");
    }
    let edited = doc.to_string();
    Config::parse(&edited, path)?;
    Ok(edited)
}

/// `text` with the `[[watch]]` table `name`'s `fd_limit` set (or removed with
/// `None`), validated as `path`: what "Set limit…" writes.
pub fn set_fd_limit(
    text: &str,
    name: &str,
    limit: Option<u64>,
    path: &Path,
) -> Result<String, EditError> {
    let mut doc = document(text, path)?;
    let missing = || EditError::NoSuchTarget { path: path.to_path_buf(), name: name.to_owned() };
    let list = doc.get_mut("watch").and_then(Item::as_array_of_tables_mut).ok_or_else(missing)?;
    let table = list
        .iter_mut()
        .find(|t| t.get("name").and_then(Item::as_str) == Some(name))
        .ok_or_else(missing)?;
    match limit {
        Some(limit) => {
            table.insert("fd_limit", value(i64::try_from(limit).unwrap_or(i64::MAX)));
        }
        None => {
            table.remove("fd_limit");
        }
    }
    let edited = doc.to_string();
    Config::parse(&edited, path)?;
    Ok(edited)
}

/// Applies `edit` to the file at `path` (an absent file is empty: the first
/// target creates it, and its directory) and replaces it atomically.
/// The edit's own error type may say more than [`EditError`] (the Settings
/// form's per-field refusals).
pub fn edit_file<E: From<EditError>>(
    path: &Path,
    edit: impl FnOnce(&str) -> Result<String, E>,
) -> Result<(), E> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(EditError::Read { path: path.to_path_buf(), source }.into()),
    };
    let edited = edit(&text)?;
    Ok(write_atomically(path, &edited)?)
}

fn write_atomically(path: &Path, edited: &str) -> Result<(), EditError> {
    let write_error = |source| EditError::Write { path: path.to_path_buf(), source };
    // A directory it creates is owner-only; one that exists is the user's
    // (their home, say) and left as it is.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        crate::private::create_dir(dir).map_err(write_error)?;
    }
    // 0600 like every file Leakwatch writes, through a temporary file and a
    // rename: a plain write would leave the new file at the umask's 0644.
    crate::private::write(path, edited.as_bytes()).map_err(write_error)
}

#[cfg(test)]
mod tests {
    /// Regression (issue 10, item 2): `config add`/`remove` and the app's Watch
    /// rewrote the config at the umask's 0644, whatever it was before.
    #[cfg(unix)]
    #[test]
    fn edited_config_file_and_created_directory_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new/config.toml");
        super::edit_file(&path, |_| Ok::<_, EditError>("# one\n".to_owned())).expect("created");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().expect("dir")), 0o700);
        // An existing directory (the user's) keeps its mode.
        let loose = dir.path().join("config.toml");
        std::fs::write(&loose, "").expect("write");
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let before = mode(dir.path());
        super::edit_file(&loose, |_| Ok::<_, EditError>("# two\n".to_owned())).expect("edited");
        assert_eq!(mode(&loose), 0o600);
        assert_eq!(std::fs::read_to_string(&loose).expect("read"), "# two\n");
        assert_eq!(mode(dir.path()), before);
    }

    use super::*;

    fn path() -> PathBuf {
        PathBuf::from("/home/me/.config/leakwatch/config.toml")
    }

    const MINE: &str = "# my settings: keep this\n[defaults]\ninterval = \"5s\"  # slower\n";

    #[test]
    fn adding_keeps_comments_and_layout() {
        let target =
            NewTarget { name: "web".into(), locator: Locator::Port(4321), fd_limit: Some(10_240) };
        let edited = add_target(MINE, &target, &path()).unwrap();
        assert!(edited.starts_with(MINE), "{edited}");
        let config = Config::parse(&edited, &path()).unwrap();
        assert_eq!(config.watch.len(), 1);
        assert_eq!(config.watch[0].name, "web");
        assert_eq!(config.watch[0].selector.to_string(), "port 4321");
        assert_eq!(config.watch[0].fd_limit, Some(10_240));
    }

    #[test]
    fn a_file_of_notes_keeps_them_above_the_first_target() {
        let target = NewTarget { name: "web".into(), locator: Locator::Port(1), fd_limit: None };
        let edited = add_target("# my notes\n", &target, &path()).unwrap();
        assert!(edited.starts_with("# my notes\n"), "{edited}");
        let removed = remove_target(&edited, "web", &path()).unwrap();
        assert_eq!(removed.trim_end(), "# my notes");
    }

    #[test]
    fn removing_gives_back_the_file_as_it_was() {
        let target = NewTarget {
            name: "api".into(),
            locator: Locator::Argv("^node .*server\\.js".into()),
            fd_limit: None,
        };
        let added = add_target(MINE, &target, &path()).unwrap();
        let removed = remove_target(&added, "api", &path()).unwrap();
        assert_eq!(removed.trim_end(), MINE.trim_end());
    }

    #[test]
    fn removing_one_of_two_keeps_the_other_and_its_comment() {
        let text = "# top\n[[watch]]\nname = \"a\"\nport = 1\n\n# about b\n[[watch]]\nname = \"b\"\nport = 2\n";
        let edited = remove_target(text, "a", &path()).unwrap();
        assert!(edited.starts_with("# top"), "{edited}");
        assert!(edited.contains("# about b"), "{edited}");
        let config = Config::parse(&edited, &path()).unwrap();
        assert_eq!(config.watch.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn removing_the_last_target_keeps_its_comment() {
        let text =
            "[defaults]\ninterval = \"5s\"\n\n# my server\n[[watch]]\nname = \"a\"\nport = 1\n";
        let edited = remove_target(text, "a", &path()).unwrap();
        assert!(edited.contains("# my server"), "{edited}");
        assert!(!edited.contains("[[watch]]"), "{edited}");
        assert!(Config::parse(&edited, &path()).unwrap().watch.is_empty());
    }

    #[test]
    fn a_duplicate_name_or_a_missing_target_is_refused() {
        let target = NewTarget { name: "web".into(), locator: Locator::Port(1), fd_limit: None };
        let once = add_target("", &target, &path()).unwrap();
        assert!(matches!(add_target(&once, &target, &path()), Err(EditError::Exists { .. })));
        assert!(matches!(
            remove_target(&once, "nope", &path()),
            Err(EditError::NoSuchTarget { .. })
        ));
    }

    #[test]
    fn an_invalid_locator_is_refused_by_the_config_parser_with_its_key() {
        let target =
            NewTarget { name: "bad".into(), locator: Locator::Process("(".into()), fd_limit: None };
        let Err(EditError::Invalid(error)) = add_target(MINE, &target, &path()) else {
            panic!("accepted a bad regex");
        };
        assert_eq!(error.key(), "watch[0].process");
        assert!(error.line() > 0);
    }

    #[test]
    fn a_file_that_is_not_toml_is_not_touched() {
        let target = NewTarget { name: "web".into(), locator: Locator::Port(1), fd_limit: None };
        assert!(matches!(
            add_target("[defaults\n", &target, &path()),
            Err(EditError::Syntax { .. })
        ));
    }

    #[test]
    fn set_limit_writes_fd_limit_on_that_target_only() {
        let text = "# mine\n[[watch]]\nname = \"a\"\nport = 1 # the api\n\n[[watch]]\nname = \"b\"\nport = 2\n";
        let edited = set_fd_limit(text, "b", Some(4096), &path()).unwrap();
        assert!(edited.contains("port = 1 # the api"), "{edited}");
        let config = Config::parse(&edited, &path()).unwrap();
        assert_eq!(config.watch[0].fd_limit, None);
        assert_eq!(config.watch[1].fd_limit, Some(4096));
        let cleared = set_fd_limit(&edited, "b", None, &path()).unwrap();
        assert_eq!(cleared, text);
        assert!(matches!(
            set_fd_limit(text, "c", Some(1), &path()),
            Err(EditError::NoSuchTarget { .. })
        ));
    }
}
