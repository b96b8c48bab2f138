//! `leakwatch daemon install | uninstall` on Linux, against a stand-in `systemctl`
//! first on PATH that logs its arguments (CI machines have no systemd user
//! instance to talk to): the unit written, the commands run in order, a failing
//! `systemctl` reported with its command line and stderr, and `--dry-run`
//! touching nothing. Where `systemd-analyze` exists the unit is also verified.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// A home, a unit directory and a `systemctl` that logs and exits with `code`.
    fn new(code: i32) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let script = format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\n[ {code} -eq 0 ] || echo 'Failed to connect to bus' >&2\nexit {code}\n",
            dir.path().join("systemctl.log").display()
        );
        let systemctl = bin.join("systemctl");
        std::fs::write(&systemctl, script).unwrap();
        std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
        Sandbox { dir }
    }

    fn unit(&self) -> PathBuf {
        self.dir.path().join("units/leakwatch.service")
    }

    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("systemctl.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn leakwatch(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(env!("CARGO_BIN_EXE_leakwatch"))
            .args(args)
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("LEAKWATCH_SERVICE_DIR", self.dir.path().join("units"))
            .output()
            .unwrap()
    }
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn install_writes_the_unit_and_enables_it_uninstall_undoes_it() {
    let sandbox = Sandbox::new(0);
    let config = sandbox.dir.path().join("my config.toml");
    let text =
        stdout(&sandbox.leakwatch(&["daemon", "install", "--config", config.to_str().unwrap()]));
    assert!(text.contains("installed"), "{text}");
    let unit = std::fs::read_to_string(sandbox.unit()).unwrap();
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert_eq!(
        exec,
        format!(
            "ExecStart=\"{}\" \"daemon\" \"--config\" \"{}\"",
            env!("CARGO_BIN_EXE_leakwatch"),
            config.display()
        )
    );
    assert!(unit.contains("Restart=on-failure") && unit.contains("LimitNOFILE="), "{unit}");
    assert_eq!(sandbox.log(), ["--user daemon-reload", "--user enable --now leakwatch.service"]);

    // Installing again rewrites the file and asks again: no error.
    stdout(&sandbox.leakwatch(&["daemon", "install"]));
    assert!(!std::fs::read_to_string(sandbox.unit()).unwrap().contains("--config"));

    let text = stdout(&sandbox.leakwatch(&["daemon", "uninstall"]));
    assert!(text.contains("removed"), "{text}");
    assert!(!sandbox.unit().exists());
    assert_eq!(
        sandbox.log()[4..],
        ["--user disable --now leakwatch.service", "--user daemon-reload"]
    );
    let text = stdout(&sandbox.leakwatch(&["daemon", "uninstall"]));
    assert!(text.contains("not installed"), "{text}");
    assert_eq!(sandbox.log().len(), 6, "nothing is asked of systemd when nothing is installed");
}

#[test]
fn dry_run_changes_nothing_and_json_says_what_it_would_do() {
    let sandbox = Sandbox::new(0);
    let out = stdout(&sandbox.leakwatch(&["--json", "daemon", "install", "--dry-run"]));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["action"], "install");
    assert_eq!(report["manager"], "systemd");
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["file"], sandbox.unit().display().to_string());
    assert!(report["contents"].as_str().unwrap().contains("[Service]"));
    assert_eq!(report["commands"][1], "systemctl --user enable --now leakwatch.service");
    assert!(!sandbox.unit().exists());
    assert!(sandbox.log().is_empty());
}

#[test]
fn a_failing_systemctl_is_reported_with_its_command_and_stderr() {
    let sandbox = Sandbox::new(1);
    let out = sandbox.leakwatch(&["daemon", "install"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("was written, but loading it failed"), "{err}");
    assert!(err.contains("`systemctl --user daemon-reload` failed"), "{err}");
    assert!(err.contains("Failed to connect to bus"), "{err}");
}

/// The installed unit passes `systemd-analyze verify`. Issue 13: this check used
/// to print "skipped" and pass without systemd-analyze; it is its own ignored
/// test now, which CI runs after installing Debian's `systemd`.
#[test]
#[ignore = "needs systemd-analyze (Debian: systemd)"]
fn the_installed_unit_passes_systemd_analyze_verify() {
    let sandbox = Sandbox::new(0);
    stdout(&sandbox.leakwatch(&["daemon", "install"]));
    let out = Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .arg(sandbox.unit())
        .output()
        .expect("systemd-analyze is not installed");
    let err = String::from_utf8_lossy(&out.stderr);
    // Only complaints about this file count (a container has no user manager).
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("leakwatch.service")).collect();
    assert!(ours.is_empty(), "{err}");
}

#[test]
fn install_through_a_symlink_runs_the_binary_itself() {
    let sandbox = Sandbox::new(0);
    // As Homebrew installs it: bin/leakwatch is a symlink into the Cellar.
    let link = sandbox.dir.path().join("bin/leakwatch");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_leakwatch"), &link).unwrap();
    let path = format!(
        "{}:{}",
        sandbox.dir.path().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(&link)
        .args(["daemon", "install"])
        .env("PATH", path)
        .env("HOME", sandbox.dir.path())
        .env("LEAKWATCH_SERVICE_DIR", sandbox.dir.path().join("units"))
        .output()
        .unwrap();
    stdout(&out);
    let unit = std::fs::read_to_string(sandbox.unit()).unwrap();
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    let real = std::fs::canonicalize(env!("CARGO_BIN_EXE_leakwatch")).unwrap();
    assert_eq!(exec, format!("ExecStart=\"{}\" \"daemon\"", real.display()));
}
