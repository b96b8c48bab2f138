//! `leakwatch daemon install | uninstall`: the headless engine as a user service
//! that starts at login and comes back if it dies, under the platform's own
//! supervisor: a LaunchAgent on macOS (launchd.plist(5), `launchctl bootstrap`),
//! a systemd user unit on Linux (systemd.service(5), `systemctl --user`). The files
//! are the templates in `packaging/`, filled with this binary's path, so what is
//! installed is what the repository ships and documents.

use crate::output;
use anyhow::Context;
use leakwatch_core::actions::service;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The LaunchAgent's label, its file's name without `.plist`.
pub(crate) const LAUNCHD_LABEL: &str = "dev.leakwatch.daemon";
/// The systemd user unit.
pub(crate) const SYSTEMD_UNIT: &str = "leakwatch.service";
/// Puts the plist or unit in this directory instead of the platform's (for tests,
/// and for a home elsewhere).
const DIR_ENV: &str = "LEAKWATCH_SERVICE_DIR";

const PLIST_TEMPLATE: &str =
    include_str!("../../../../../packaging/launchd/dev.leakwatch.daemon.plist");
const UNIT_TEMPLATE: &str = include_str!("../../../../../packaging/systemd/leakwatch.service");

/// Install the daemon as a user service that starts at login.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "macOS: writes ~/Library/LaunchAgents/dev.leakwatch.daemon.plist \
    (logs in ~/Library/Logs/Leakwatch/daemon.log; PATH set to this shell's, for restart \
    commands) and runs `launchctl bootstrap gui/UID` on it, after booting out an older copy, \
    waiting until launchd no longer finds it and running `launchctl enable`; bootstrap is \
    retried on status 5. A status 5 that persists means the agent is switched off in System \
    Settings → General → Login Items: allow Leakwatch there and install again. Linux: writes ~/.config/systemd/user/leakwatch.service \
    ($XDG_CONFIG_HOME is honoured) and runs `systemctl --user daemon-reload` and \
    `systemctl --user enable --now leakwatch.service` (logs: `journalctl --user -u leakwatch`). \
    Either runs this very binary, so install it where it will stay first. This shell's \
    LEAKWATCH_CONFIG (unless --config is given) and LEAKWATCH_DATA_DIR are written into the \
    service's environment; a path with a control character (a newline, say) is refused.\n\n\
    --json prints {\"action\", \"manager\", \"file\", \"contents\", \"commands\", \"dry_run\"}.")]
pub(crate) struct InstallArgs {
    /// The config file the daemon reads (default: the platform's, as for `watch`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the file and the commands; change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Stop the daemon service and remove it.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "macOS: `launchctl bootout gui/UID/dev.leakwatch.daemon`, then \
    removes the plist. Linux: `systemctl --user disable --now leakwatch.service`, removes the \
    unit, `systemctl --user daemon-reload`. Not installed is not an error.\n\n\
    --json prints {\"action\", \"manager\", \"file\", \"contents\", \"commands\", \"dry_run\"}.")]
pub(crate) struct UninstallArgs {
    /// Print the commands; change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The service manager of this platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Manager {
    Launchd,
    Systemd,
}

impl Manager {
    fn here() -> anyhow::Result<Manager> {
        if cfg!(target_os = "macos") {
            Ok(Manager::Launchd)
        } else if cfg!(target_os = "linux") {
            Ok(Manager::Systemd)
        } else {
            anyhow::bail!(
                "`leakwatch daemon install` knows launchd (macOS) and systemd (Linux) only"
            )
        }
    }

    fn file_name(self) -> String {
        match self {
            Manager::Launchd => format!("{LAUNCHD_LABEL}.plist"),
            Manager::Systemd => SYSTEMD_UNIT.to_owned(),
        }
    }

    /// `~/Library/LaunchAgents` or `$XDG_CONFIG_HOME/systemd/user`.
    fn directory(self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = std::env::var_os(DIR_ENV) {
            return Ok(PathBuf::from(dir));
        }
        let dirs = directories::BaseDirs::new()
            .context("cannot tell the home directory (set HOME or LEAKWATCH_SERVICE_DIR)")?;
        Ok(match self {
            Manager::Launchd => dirs.home_dir().join("Library/LaunchAgents"),
            Manager::Systemd => dirs.config_dir().join("systemd/user"),
        })
    }
}

/// What `daemon install | uninstall` did; `action` in `--json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Install,
    Uninstall,
}

/// What was (or, with `--dry-run`, would be) done.
#[derive(Debug, Serialize)]
struct Report {
    action: Action,
    manager: Manager,
    file: PathBuf,
    /// The file written (install only).
    contents: Option<String>,
    commands: Vec<String>,
    dry_run: bool,
}

pub(crate) fn install(args: &InstallArgs, json: bool) -> anyhow::Result<String> {
    let manager = Manager::here()?;
    let exe = std::env::current_exe().context("cannot tell where this leakwatch binary is")?;
    // current_exe() may be a symlink (Homebrew's bin/leakwatch, on macOS always as
    // invoked): the service must run the binary itself.
    let exe = std::fs::canonicalize(&exe).with_context(|| {
        format!("cannot resolve this leakwatch binary's path {}", exe.display())
    })?;
    let mut argv = vec![exe.display().to_string(), "daemon".to_owned()];
    if let Some(config) = &args.config {
        let config = std::path::absolute(config)
            .with_context(|| format!("config path {}", config.display()))?;
        argv.extend(["--config".to_owned(), config.display().to_string()]);
    }
    for word in &argv {
        reject_control_characters(word)?;
    }
    let env = carried_environment(args.config.is_some())?;
    let file = manager.directory()?.join(manager.file_name());
    let (contents, log_dir, commands) = match manager {
        Manager::Launchd => {
            let log_dir = log_directory()?;
            let uid = leakwatch_probe::current_uid();
            let commands =
                service::launchd_install(&file.display().to_string(), LAUNCHD_LABEL, uid);
            (render_plist(&argv, &log_dir, &install_path(), &env), Some(log_dir), commands)
        }
        Manager::Systemd => {
            (render_unit(&argv, &env), None, service::systemd_install(SYSTEMD_UNIT))
        }
    };
    if !args.dry_run {
        write_atomically(&file, &contents)?;
        if let Some(log_dir) = &log_dir {
            std::fs::create_dir_all(log_dir)
                .with_context(|| format!("creating the log directory {}", log_dir.display()))?;
        }
        service::run_all(&commands)
            .with_context(|| format!("{} was written, but loading it failed", file.display()))?;
    }
    let report = Report {
        action: Action::Install,
        manager,
        file,
        contents: Some(contents),
        commands: commands.iter().map(ToString::to_string).collect(),
        dry_run: args.dry_run,
    };
    render(&report, json)
}

pub(crate) fn uninstall(args: &UninstallArgs, json: bool) -> anyhow::Result<String> {
    let manager = Manager::here()?;
    let file = manager.directory()?.join(manager.file_name());
    // Stop the service, remove its file, then (systemd) forget it.
    let (stop, forget) = match manager {
        Manager::Launchd => {
            (service::launchd_uninstall(LAUNCHD_LABEL, leakwatch_probe::current_uid()), Vec::new())
        }
        Manager::Systemd => (service::systemd_uninstall(SYSTEMD_UNIT), service::systemd_reload()),
    };
    let installed = file.exists();
    if installed && !args.dry_run {
        service::run_all(&stop)?;
        std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        service::run_all(&forget)?;
    }
    let commands = if installed {
        stop.iter().chain(&forget).map(ToString::to_string).collect()
    } else {
        Vec::new()
    };
    let report = Report {
        action: Action::Uninstall,
        manager,
        file,
        contents: None,
        commands,
        dry_run: args.dry_run,
    };
    render(&report, json)
}

/// Where the LaunchAgent's output goes (macOS; unused on Linux, where the
/// journal keeps it).
fn log_directory() -> anyhow::Result<PathBuf> {
    let dirs = directories::BaseDirs::new().context("cannot tell the home directory")?;
    Ok(dirs.home_dir().join("Library/Logs/Leakwatch"))
}

fn render(report: &Report, json: bool) -> anyhow::Result<String> {
    if json {
        return output::json(report);
    }
    let file = report.file.display();
    let mut out = String::new();
    let verb = if report.dry_run { "would run" } else { "ran" };
    match (report.action, report.dry_run, report.commands.is_empty()) {
        (Action::Uninstall, _, true) => {
            out.push_str(&format!("not installed ({file} does not exist)\n"));
        }
        (Action::Uninstall, false, false) => out.push_str(&format!("removed {file}\n")),
        (Action::Uninstall, true, false) => out.push_str(&format!("would remove {file}\n")),
        (Action::Install, false, _) => out.push_str(&format!("installed {file}\n")),
        (Action::Install, true, _) => {
            out.push_str(&format!("would write {file}:\n\n"));
            out.push_str(report.contents.as_deref().unwrap_or_default());
            out.push('\n');
        }
    }
    for command in &report.commands {
        out.push_str(&format!("{verb}: {command}\n"));
    }
    Ok(out)
}

/// The environment variables that chose this shell's config and data directory,
/// so the installed daemon reads and writes what `leakwatch` does here:
/// `LEAKWATCH_CONFIG` (unless `--config` was given, which wins) and
/// `LEAKWATCH_DATA_DIR`, made absolute.
fn carried_environment(config_given: bool) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    for name in ["LEAKWATCH_CONFIG", "LEAKWATCH_DATA_DIR"] {
        if name == "LEAKWATCH_CONFIG" && config_given {
            continue;
        }
        let Some(value) = std::env::var_os(name).filter(|v| !v.is_empty()) else { continue };
        let path = std::path::absolute(&value)
            .with_context(|| format!("{name}={}", Path::new(&value).display()))?;
        let text = path
            .to_str()
            .with_context(|| format!("{name}={}: not UTF-8", path.display()))?
            .to_owned();
        reject_control_characters(&text).context(name)?;
        out.push((name, text));
    }
    Ok(out)
}

/// The PATH the LaunchAgent runs with: the installing shell's, with launchd's
/// own directories kept.
fn install_path() -> String {
    const LAUNCHD_PATH: [&str; 4] = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"];
    let mut dirs: Vec<String> = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(str::to_owned)
        .collect();
    for dir in LAUNCHD_PATH {
        if !dirs.iter().any(|d| d == dir) {
            dirs.push(dir.to_owned());
        }
    }
    dirs.join(":")
}

/// A newline (or any control character) in a path would end the unit's line or
/// break the plist, letting a path inject settings: refused, naming it.
fn reject_control_characters(word: &str) -> anyhow::Result<()> {
    if let Some(c) = word.chars().find(|c| c.is_control()) {
        anyhow::bail!(
            "{:?} contains the control character {c:?}: a service file cannot hold it safely; \
             use a path without it",
            word.chars().take(200).collect::<String>()
        );
    }
    Ok(())
}

/// A word in double quotes for systemd: `\` and `"` escaped, `%` (a specifier)
/// doubled, and `$` (a variable, in command lines) doubled where `dollar`.
fn systemd_quote(word: &str, dollar: bool) -> String {
    let mut escaped = word.replace('\\', "\\\\").replace('"', "\\\"").replace('%', "%%");
    if dollar {
        escaped = escaped.replace('$', "$$");
    }
    format!("\"{escaped}\"")
}

/// The unit with `ExecStart=` set to `argv`, each word quoted for systemd
/// (systemd.service(5), "Command lines": `%` and `$` are specifiers there), and
/// an `Environment=` line for each of `env`.
fn render_unit(argv: &[String], env: &[(&str, String)]) -> String {
    let quoted: Vec<String> = argv.iter().map(|word| systemd_quote(word, true)).collect();
    let mut unit = UNIT_TEMPLATE.replace("@EXEC_START@", &quoted.join(" "));
    let lines: String = env
        .iter()
        .map(|(name, value)| {
            format!("Environment={}\n", systemd_quote(&format!("{name}={value}"), false))
        })
        .collect();
    unit = unit.replacen(
        "Environment=LEAKWATCH_LOG=info\n",
        &format!("Environment=LEAKWATCH_LOG=info\n{lines}"),
        1,
    );
    unit
}

/// The plist with `ProgramArguments` set to `argv`, its logs in `log_dir`,
/// `PATH` set to `path`, and `env` added to its `EnvironmentVariables`.
fn render_plist(argv: &[String], log_dir: &Path, path: &str, env: &[(&str, String)]) -> String {
    let arguments: Vec<String> =
        argv.iter().map(|word| format!("\t\t<string>{}</string>", xml_escape(word))).collect();
    let variables: String = env
        .iter()
        .map(|(name, value)| {
            format!("\t\t<key>{name}</key>\n\t\t<string>{}</string>\n", xml_escape(value))
        })
        .collect();
    PLIST_TEMPLATE
        .replace("@PROGRAM_ARGUMENTS@", &arguments.join("\n"))
        .replace("@LOG_DIR@", &xml_escape(&log_dir.display().to_string()))
        .replace("@PATH@", &xml_escape(path))
        .replacen(
            "\t\t<key>LEAKWATCH_LOG</key>\n",
            &format!("{variables}\t\t<key>LEAKWATCH_LOG</key>\n"),
            1,
        )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Writes `contents` to `path` through a temporary file and a rename, so a
/// service manager never reads half a file.
fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    let dir = path.parent().context("the service file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Issue 13: the report's action was a bare string, and the text output
    /// took any action that was not the word "uninstall" for an install. It
    /// is a fixed set, with the JSON words kept.
    #[test]
    fn reports_say_their_action_in_json_and_in_words() {
        let report = |action, dry_run, commands: &[&str]| Report {
            action,
            manager: Manager::Systemd,
            file: PathBuf::from("/u/leakwatch.service"),
            contents: (action == Action::Install).then(|| "[Unit]".to_owned()),
            commands: commands.iter().map(|c| (*c).to_owned()).collect(),
            dry_run,
        };
        let json = |r: &Report| serde_json::to_value(r).unwrap()["action"].clone();
        assert_eq!(json(&report(Action::Install, false, &[])), "install");
        assert_eq!(json(&report(Action::Uninstall, false, &[])), "uninstall");
        let text = |r: Report| render(&r, false).unwrap();
        assert!(text(report(Action::Install, false, &["x"])).starts_with("installed /u/"));
        assert!(text(report(Action::Install, true, &["x"])).starts_with("would write /u/"));
        assert!(text(report(Action::Uninstall, false, &["x"])).starts_with("removed /u/"));
        assert!(text(report(Action::Uninstall, true, &["x"])).starts_with("would remove /u/"));
        assert!(text(report(Action::Uninstall, true, &[])).starts_with("not installed"));
    }

    #[test]
    fn unit_words_are_quoted_for_systemd() {
        let unit = render_unit(
            &[
                "/opt/my tools/leakwatch".to_owned(),
                "daemon".to_owned(),
                "--config".to_owned(),
                "/home/a/100%\"$x\".toml".to_owned(),
            ],
            &[],
        );
        assert!(unit.contains(
            "ExecStart=\"/opt/my tools/leakwatch\" \"daemon\" \"--config\" \
             \"/home/a/100%%\\\"$$x\\\".toml\"\n"
        ));
        assert!(!unit.contains('@'), "a placeholder is left: {unit}");
        assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    }

    /// Regression (issue 10, item 16): a newline or quote in `--config` wrote an
    /// invalid, injectable unit or plist.
    #[test]
    fn control_characters_in_service_paths_are_refused() {
        for bad in ["/tmp/a\nExecStartPre=/bin/evil", "/tmp/a\rb", "/tmp/\u{1b}[2J", "/tmp/a\tb"] {
            let error = reject_control_characters(bad).unwrap_err().to_string();
            assert!(error.contains("control character"), "{error}");
        }
        assert!(reject_control_characters("/tmp/my \"odd\" 100% $dir/c.toml").is_ok());
    }

    /// Regression (issue 10, item 16): the shell's LEAKWATCH_CONFIG and
    /// LEAKWATCH_DATA_DIR were silently lost in the installed daemon.
    #[test]
    fn the_environment_is_carried_into_the_unit_and_the_plist() {
        let env = [
            ("LEAKWATCH_CONFIG", "/home/a/my \"cfg\" 100%.toml".to_owned()),
            ("LEAKWATCH_DATA_DIR", "/data/L&W <x>".to_owned()),
        ];
        let unit = render_unit(&["/bin/leakwatch".to_owned(), "daemon".to_owned()], &env);
        assert!(
            unit.contains(
                "Environment=LEAKWATCH_LOG=info\n\
                 Environment=\"LEAKWATCH_CONFIG=/home/a/my \\\"cfg\\\" 100%%.toml\"\n\
                 Environment=\"LEAKWATCH_DATA_DIR=/data/L&W <x>\"\n"
            ),
            "{unit}"
        );
        let plist =
            render_plist(&["/bin/leakwatch".to_owned()], Path::new("/logs"), "/usr/bin:/bin", &env);
        let value = plist::Value::from_reader_xml(plist.as_bytes()).unwrap();
        let vars = value
            .as_dictionary()
            .and_then(|d| d.get("EnvironmentVariables"))
            .and_then(plist::Value::as_dictionary)
            .unwrap();
        let get = |k: &str| vars.get(k).and_then(plist::Value::as_string);
        assert_eq!(get("LEAKWATCH_CONFIG"), Some("/home/a/my \"cfg\" 100%.toml"));
        assert_eq!(get("LEAKWATCH_DATA_DIR"), Some("/data/L&W <x>"));
        assert_eq!(get("LEAKWATCH_LOG"), Some("info"));
    }

    #[test]
    fn plist_arguments_are_escaped_and_every_placeholder_filled() {
        let plist = render_plist(
            &["/Apps/L&W <1>/leakwatch".to_owned(), "daemon".to_owned()],
            Path::new("/Users/a/Library/Logs/Leakwatch"),
            "/opt/homebrew/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            &[],
        );
        assert!(plist.contains("<string>/Apps/L&amp;W &lt;1&gt;/leakwatch</string>"));
        assert!(plist.contains("<string>/Users/a/Library/Logs/Leakwatch/daemon.log</string>"));
        assert!(!plist.contains('@'), "a placeholder is left: {plist}");
        // What launchd will read: a well-formed plist with the arguments intact.
        let value = plist::Value::from_reader_xml(plist.as_bytes()).unwrap();
        let dict = value.as_dictionary().unwrap();
        assert_eq!(dict.get("Label").and_then(plist::Value::as_string), Some(LAUNCHD_LABEL));
        let arguments: Vec<&str> = dict
            .get("ProgramArguments")
            .and_then(plist::Value::as_array)
            .unwrap()
            .iter()
            .filter_map(plist::Value::as_string)
            .collect();
        assert_eq!(arguments, ["/Apps/L&W <1>/leakwatch", "daemon"]);
        // Restart commands find what the installing shell found.
        let env = dict.get("EnvironmentVariables").and_then(plist::Value::as_dictionary).unwrap();
        assert_eq!(
            env.get("PATH").and_then(plist::Value::as_string),
            Some("/opt/homebrew/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        );
        // Not throttled as a Background job: a watchdog must act on time.
        assert_eq!(dict.get("ProcessType"), None);
        let limits = dict.get("SoftResourceLimits").and_then(plist::Value::as_dictionary).unwrap();
        assert!(
            limits.get("NumberOfFiles").and_then(plist::Value::as_signed_integer) >= Some(1024)
        );
    }
}
