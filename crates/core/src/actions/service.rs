//! The two service managers a watched server usually runs under: launchd on macOS
//! (launchctl(1)) and systemd on Linux (systemctl(1)). Leakwatch asks them which
//! process a job has now and, to restart one, asks them to do it: a supervised
//! server must be restarted by its supervisor, or the supervisor fights back.
//! Leakwatch's own daemon is installed under them the same way
//! (`leakwatch daemon install`).

use std::process::Command;
use std::time::Duration;

/// What went wrong talking to a service manager.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    // The cause is in the message, so it is not also a `source()`: printed with
    // its chain (`{:#}`), it would be repeated.
    #[error("could not run {program}: {cause}")]
    Spawn { program: &'static str, cause: std::io::Error },
    #[error("`{program} {args}` failed ({status}): {stderr}")]
    Failed { program: &'static str, args: String, status: String, stderr: String },
    /// A command that had to fail (a job's lookup, after it was booted out) kept
    /// succeeding.
    #[error("`{program} {args}` still finds the job after {waited:?}: it is still stopping")]
    StillThere { program: &'static str, args: String, waited: std::time::Duration },
    /// `launchctl bootstrap` kept answering status 5 (EIO): the job is still
    /// stopping, or the user switched it off.
    #[error(
        "`{program} {args}` failed with status 5 {attempts} times: {stderr}. macOS refuses to \
         load Leakwatch's daemon while it is switched off in System Settings → General → \
         Login Items (\"Allow in the Background\"): switch Leakwatch on there, then run \
         `leakwatch daemon install` again"
    )]
    BootstrapRefused { program: &'static str, args: String, attempts: u32, stderr: String },
}

/// launchctl(1)'s exit status for "Bootstrap failed: 5: Input/output error".
pub const LAUNCHCTL_BOOTSTRAP_EIO: i32 = 5;

/// The pid launchd reports for job `label` in the caller's domain, `None` when the
/// job is loaded but not running or not loaded at all.
pub fn launchd_pid(label: &str) -> Result<Option<u32>, ServiceError> {
    let out = run("launchctl", &["list", label])?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(parse_launchctl_list_pid(&String::from_utf8_lossy(&out.stdout)))
}

/// `MainPID` of a systemd unit, trying the user's manager first, then the system's.
pub fn systemd_main_pid(unit: &str) -> Result<Option<u32>, ServiceError> {
    for scope in [Some("--user"), None] {
        let mut args = Vec::with_capacity(5);
        args.extend(scope);
        args.extend(["show", "--property=MainPID", "--value", unit]);
        let out = run("systemctl", &args)?;
        if out.status.success() {
            let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
            if pid != 0 {
                return Ok(Some(pid));
            }
        }
    }
    Ok(None)
}

/// `launchctl kickstart -k gui/UID/label`: launchd kills the job and starts it again.
pub fn launchd_restart(label: &str, uid: u32) -> Result<(), ServiceError> {
    let target = format!("gui/{uid}/{label}");
    checked("launchctl", &["kickstart", "-k", &target])
}

/// `systemctl --user restart unit`.
pub fn systemd_restart(unit: &str) -> Result<(), ServiceError> {
    checked("systemctl", &["--user", "restart", unit])
}

/// One command Leakwatch asks a service manager to run, kept as data so that the
/// same list is shown by a dry run and run for real.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerCommand {
    program: &'static str,
    args: Vec<String>,
    /// Its failure says nothing (booting out a job that is not loaded).
    may_fail: bool,
    /// Run until it fails, polling, for at most this long: a lookup that must stop
    /// finding a job that is going away.
    until_fails: Option<Duration>,
    /// Run again on this exit status, at most `attempts` times in all, `pause`
    /// apart.
    retry: Option<Retry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Retry {
    status: i32,
    attempts: u32,
    pause: Duration,
}

/// How often a command run until it fails is run again.
const POLL: Duration = Duration::from_millis(200);

impl ManagerCommand {
    fn new(program: &'static str, args: &[&str]) -> Self {
        Self {
            program,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            may_fail: false,
            until_fails: None,
            retry: None,
        }
    }

    fn may_fail(mut self) -> Self {
        self.may_fail = true;
        self
    }

    fn until_fails(mut self, at_most: Duration) -> Self {
        self.until_fails = Some(at_most);
        self
    }

    fn retry_on(mut self, status: i32, attempts: u32, pause: Duration) -> Self {
        self.retry = Some(Retry { status, attempts, pause });
        self
    }

    /// Runs it; a failure is an error unless the command may fail.
    pub fn run(&self) -> Result<(), ServiceError> {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        if let Some(at_most) = self.until_fails {
            let started = std::time::Instant::now();
            while run(self.program, &args)?.status.success() {
                if started.elapsed() >= at_most {
                    return Err(ServiceError::StillThere {
                        program: self.program,
                        args: args.join(" "),
                        waited: at_most,
                    });
                }
                std::thread::sleep(POLL);
            }
            return Ok(());
        }
        if self.may_fail {
            return run(self.program, &args).map(drop);
        }
        let Some(retry) = self.retry else {
            return checked(self.program, &args);
        };
        let mut attempt = 1;
        loop {
            let out = run(self.program, &args)?;
            if out.status.success() {
                return Ok(());
            }
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            if out.status.code() != Some(retry.status) {
                return Err(ServiceError::Failed {
                    program: self.program,
                    args: args.join(" "),
                    status: out.status.to_string(),
                    stderr,
                });
            }
            if attempt >= retry.attempts {
                return Err(ServiceError::BootstrapRefused {
                    program: self.program,
                    args: args.join(" "),
                    attempts: attempt,
                    stderr,
                });
            }
            attempt += 1;
            std::thread::sleep(retry.pause);
        }
    }
}

impl std::fmt::Display for ManagerCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.program, self.args.join(" "))?;
        if self.until_fails.is_some() {
            write!(f, " (until it no longer finds the job)")?;
        }
        if let Some(retry) = self.retry {
            write!(f, " (again on status {}, up to {} times)", retry.status, retry.attempts)?;
        }
        Ok(())
    }
}

/// Runs `commands` in order, stopping at the first that fails.
pub fn run_all(commands: &[ManagerCommand]) -> Result<(), ServiceError> {
    commands.iter().try_for_each(ManagerCommand::run)
}

/// Loads the LaunchAgent at `plist` into the user's GUI domain
/// (`launchctl bootstrap gui/UID PLIST`), booting out a loaded job of the same
/// `label` first so that a reinstall takes the new file.
///
/// `launchctl bootout` returns while the job is still stopping, and a bootstrap
/// then fails with "Bootstrap failed: 5: Input/output error"; so this waits
/// until `launchctl print gui/UID/LABEL` no longer finds the job, clears a
/// `launchctl disable` with `launchctl enable`, and runs bootstrap again on status
/// 5. Status 5 that persists is what a job switched off in Login Items gives:
/// the error says so ([`ServiceError::BootstrapRefused`]).
pub fn launchd_install(plist: &str, label: &str, uid: u32) -> Vec<ManagerCommand> {
    launchd_install_using("launchctl", plist, label, uid)
}

/// [`launchd_install`] with another `launchctl` (a stand-in, in tests).
pub fn launchd_install_using(
    launchctl: &'static str,
    plist: &str,
    label: &str,
    uid: u32,
) -> Vec<ManagerCommand> {
    const GONE_WITHIN: Duration = Duration::from_secs(30);
    const BOOTSTRAP_ATTEMPTS: u32 = 5;
    const BOOTSTRAP_PAUSE: Duration = Duration::from_secs(1);
    let domain = format!("gui/{uid}");
    let service = format!("{domain}/{label}");
    let mut commands = launchd_uninstall_using(launchctl, label, uid);
    commands.push(ManagerCommand::new(launchctl, &["print", &service]).until_fails(GONE_WITHIN));
    commands.push(ManagerCommand::new(launchctl, &["enable", &service]));
    commands.push(ManagerCommand::new(launchctl, &["bootstrap", &domain, plist]).retry_on(
        LAUNCHCTL_BOOTSTRAP_EIO,
        BOOTSTRAP_ATTEMPTS,
        BOOTSTRAP_PAUSE,
    ));
    commands
}

/// Stops and unloads the LaunchAgent `label` (`launchctl bootout gui/UID/LABEL`);
/// one that is not loaded is not an error.
pub fn launchd_uninstall(label: &str, uid: u32) -> Vec<ManagerCommand> {
    launchd_uninstall_using("launchctl", label, uid)
}

fn launchd_uninstall_using(launchctl: &'static str, label: &str, uid: u32) -> Vec<ManagerCommand> {
    vec![ManagerCommand::new(launchctl, &["bootout", &format!("gui/{uid}/{label}")]).may_fail()]
}

/// Makes systemd read the user unit just written and starts it now and at every
/// login (`systemctl --user daemon-reload`, `enable --now UNIT`).
pub fn systemd_install(unit: &str) -> Vec<ManagerCommand> {
    let mut commands = systemd_reload();
    commands.push(ManagerCommand::new("systemctl", &["--user", "enable", "--now", unit]));
    commands
}

/// Stops and disables the user unit (`systemctl --user disable --now UNIT`); run
/// [`systemd_reload`] once its file is gone.
pub fn systemd_uninstall(unit: &str) -> Vec<ManagerCommand> {
    vec![ManagerCommand::new("systemctl", &["--user", "disable", "--now", unit])]
}

/// `systemctl --user daemon-reload`.
pub fn systemd_reload() -> Vec<ManagerCommand> {
    vec![ManagerCommand::new("systemctl", &["--user", "daemon-reload"])]
}

fn run(program: &'static str, args: &[&str]) -> Result<std::process::Output, ServiceError> {
    Command::new(program)
        .args(args)
        .output()
        .map_err(|source| ServiceError::Spawn { program, cause: source })
}

fn checked(program: &'static str, args: &[&str]) -> Result<(), ServiceError> {
    let out = run(program, args)?;
    if out.status.success() {
        return Ok(());
    }
    Err(ServiceError::Failed {
        program,
        args: args.join(" "),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// `launchctl list LABEL` prints a plist-like dictionary with `"PID" = 123;`
/// while the job runs.
fn parse_launchctl_list_pid(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix("\"PID\" = ")?;
        value.trim_end_matches(';').trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launchctl_list_output() {
        let running = "{\n\t\"LimitLoadToSessionType\" = \"Aqua\";\n\t\"Label\" = \"com.example.webui\";\n\t\"PID\" = 4821;\n\t\"LastExitStatus\" = 0;\n};\n";
        assert_eq!(parse_launchctl_list_pid(running), Some(4821));
        let stopped = "{\n\t\"Label\" = \"com.example.webui\";\n\t\"LastExitStatus\" = 256;\n};\n";
        assert_eq!(parse_launchctl_list_pid(stopped), None);
    }
}
