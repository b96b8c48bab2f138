//! Re-installing the LaunchAgent against a stand-in `launchctl` that behaves as
//! macOS's does after `bootout`: `print` still finds the job for a while (it is
//! stopping), and `bootstrap` meanwhile fails with status 5. The commands must
//! wait for the job to go, enable it, and retry bootstrap; a status 5 that never
//! clears (the agent switched off in Login Items) must say what to allow.
#![allow(clippy::unwrap_used)]

use leakwatch_core::actions::service::{self, ServiceError};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A `launchctl` that logs each call and answers `print` with success for the
/// first `print_found` calls, `bootstrap` with status 5 for the first
/// `bootstrap_eio` calls; everything else succeeds.
fn stand_in(dir: &Path, print_found: u32, bootstrap_eio: u32) -> &'static str {
    let log = dir.join("launchctl.log");
    let script = format!(
        r#"#!/bin/sh
echo "$*" >> '{log}'
count() {{ n=$(grep -c "^$1" '{log}'); echo "$n"; }}
case "$1" in
print)
    if [ "$(count print)" -le {print_found} ]; then echo "state = running"; exit 0; fi
    echo "Could not find service \"$2\" in domain for user gui: 501" >&2; exit 113 ;;
bootstrap)
    if [ "$(count bootstrap)" -le {bootstrap_eio} ]; then
        echo "Bootstrap failed: 5: Input/output error" >&2; exit 5
    fi ;;
esac
exit 0
"#,
        log = log.display()
    );
    let path = dir.join("launchctl");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    Box::leak(path.display().to_string().into_boxed_str())
}

fn log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("launchctl.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn reinstall_waits_for_the_old_job_to_go_enables_it_and_retries_bootstrap_on_status_5() {
    let dir = tempfile::tempdir().unwrap();
    let launchctl = stand_in(dir.path(), 2, 1);
    let plist = "/Users/me/Library/LaunchAgents/dev.leakwatch.daemon.plist";
    let commands = service::launchd_install_using(launchctl, plist, "dev.leakwatch.daemon", 501);
    service::run_all(&commands).unwrap();
    assert_eq!(
        log(dir.path()),
        [
            "bootout gui/501/dev.leakwatch.daemon",
            // Still stopping twice, then gone.
            "print gui/501/dev.leakwatch.daemon",
            "print gui/501/dev.leakwatch.daemon",
            "print gui/501/dev.leakwatch.daemon",
            "enable gui/501/dev.leakwatch.daemon",
            // Status 5 once, then loaded.
            &format!("bootstrap gui/501 {plist}"),
            &format!("bootstrap gui/501 {plist}"),
        ]
    );
    // What a dry run shows says the same.
    let shown: Vec<String> = commands.iter().map(ToString::to_string).collect();
    assert!(
        shown[1].ends_with("print gui/501/dev.leakwatch.daemon (until it no longer finds the job)")
    );
    assert!(shown[3].ends_with("(again on status 5, up to 5 times)"), "{shown:?}");
}

#[test]
fn bootstrap_refused_for_good_says_to_allow_leakwatch_in_login_items() {
    let dir = tempfile::tempdir().unwrap();
    let launchctl = stand_in(dir.path(), 0, u32::MAX);
    let commands =
        service::launchd_install_using(launchctl, "/tmp/x.plist", "dev.leakwatch.daemon", 501);
    let error = service::run_all(&commands).unwrap_err();
    assert!(matches!(error, ServiceError::BootstrapRefused { attempts: 5, .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("Login Items"), "{message}");
    assert!(message.contains("Bootstrap failed: 5: Input/output error"), "{message}");
    let bootstraps = log(dir.path()).iter().filter(|call| call.starts_with("bootstrap")).count();
    assert_eq!(bootstraps, 5);
}

#[test]
fn other_bootstrap_failures_are_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("launchctl");
    std::fs::write(&path, "#!/bin/sh\n[ \"$1\" = bootstrap ] && { echo 'no such file' >&2; exit 2; }\n[ \"$1\" = print ] && exit 113\nexit 0\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let launchctl: &'static str = Box::leak(path.display().to_string().into_boxed_str());
    let commands =
        service::launchd_install_using(launchctl, "/tmp/x.plist", "dev.leakwatch.daemon", 501);
    let error = service::run_all(&commands).unwrap_err();
    assert!(matches!(error, ServiceError::Failed { .. }), "{error:?}");
    assert!(error.to_string().contains("no such file"));
}
