//! `leakwatch daemon install | uninstall`: the headless engine as a user service
//! that starts at login and comes back if it dies, under the platform's own
//! supervisor: a LaunchAgent on macOS (launchd.plist(5), `launchctl bootstrap`),
//! a systemd user unit on Linux (systemd.service(5), `systemctl --user`). The files
//! are the templates in `packaging/`, filled with this binary's path, so what is
//! installed is what the repository ships and documents.

use crate::output;
use anyhow::Context;
use leakwatch_core::service;
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
    Either runs this very binary, so install it where it will stay first.\n\n\
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

/// What was (or, with `--dry-run`, would be) done.
#[derive(Debug, Serialize)]
struct Report {
    action: &'static str,
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
    let file = manager.directory()?.join(manager.file_name());
    let (contents, log_dir, commands) = match manager {
        Manager::Launchd => {
            let log_dir = log_directory()?;
            let uid = leakwatch_probe::current_uid();
            let commands =
                service::launchd_install(&file.display().to_string(), LAUNCHD_LABEL, uid);
            (render_plist(&argv, &log_dir, &install_path()), Some(log_dir), commands)
        }
        Manager::Systemd => (render_unit(&argv), None, service::systemd_install(SYSTEMD_UNIT)),
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
        action: "install",
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
        action: "uninstall",
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
        ("uninstall", _, true) => out.push_str(&format!("not installed ({file} does not exist)\n")),
        ("uninstall", false, false) => out.push_str(&format!("removed {file}\n")),
        ("uninstall", true, false) => out.push_str(&format!("would remove {file}\n")),
        (_, false, _) => out.push_str(&format!("installed {file}\n")),
        (_, true, _) => {
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

/// The unit with `ExecStart=` set to `argv`, each word quoted for systemd
/// (systemd.service(5), "Command lines": `%` and `$` are specifiers there).
fn render_unit(argv: &[String]) -> String {
    let quoted: Vec<String> = argv
        .iter()
        .map(|word| {
            let escaped = word
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('%', "%%")
                .replace('$', "$$");
            format!("\"{escaped}\"")
        })
        .collect();
    UNIT_TEMPLATE.replace("@EXEC_START@", &quoted.join(" "))
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

/// The plist with `ProgramArguments` set to `argv`, its logs in `log_dir` and
/// `PATH` set to `path`.
fn render_plist(argv: &[String], log_dir: &Path, path: &str) -> String {
    let arguments: Vec<String> =
        argv.iter().map(|word| format!("\t\t<string>{}</string>", xml_escape(word))).collect();
    PLIST_TEMPLATE
        .replace("@PROGRAM_ARGUMENTS@", &arguments.join("\n"))
        .replace("@LOG_DIR@", &xml_escape(&log_dir.display().to_string()))
        .replace("@PATH@", &xml_escape(path))
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

    #[test]
    fn unit_words_are_quoted_for_systemd() {
        let unit = render_unit(&[
            "/opt/my tools/leakwatch".to_owned(),
            "daemon".to_owned(),
            "--config".to_owned(),
            "/home/a/100%\"$x\".toml".to_owned(),
        ]);
        assert!(unit.contains(
            "ExecStart=\"/opt/my tools/leakwatch\" \"daemon\" \"--config\" \
             \"/home/a/100%%\\\"$$x\\\".toml\"\n"
        ));
        assert!(!unit.contains('@'), "a placeholder is left: {unit}");
        assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    }

    #[test]
    fn plist_arguments_are_escaped_and_every_placeholder_filled() {
        let plist = render_plist(
            &["/Apps/L&W <1>/leakwatch".to_owned(), "daemon".to_owned()],
            Path::new("/Users/a/Library/Logs/Leakwatch"),
            "/opt/homebrew/bin:/usr/bin:/bin:/usr/sbin:/sbin",
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
