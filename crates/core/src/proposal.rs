//! What "Watch" on an automatic-mode row proposes: how to find a process again
//! after a restart ([`propose_locator`]) and which pids a locator finds now. It
//! sits above the config (it writes no file, it proposes a [`Locator`] for
//! `config::edit` to write) and beside the actions' `locate`, which it asks;
//! kept out of `config/` so the config never depends on a layer above it.

use crate::actions::locate::{PortMemo, listening_port, locate};
use crate::config::Selector;
use crate::config::edit::Locator;
use leakwatch_probe::{FdKind, Probe, ProcessInfo, ServiceJob};
use regex::Regex;
use serde::Serialize;

/// What Watch proposes for a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Proposal {
    /// A target name made of the process name.
    pub name: String,
    pub locator: Locator,
    /// Why this locator (and what it will keep finding after a restart).
    pub why: String,
    /// True when nothing stable was found (no port, no command line) and the
    /// locator is the process's name alone: it may match other processes of
    /// that name, and should be edited.
    pub last_resort: bool,
    /// The pids the locator matches now.
    pub matches: Vec<u32>,
}

/// Proposes how to find `process` again after a restart: the TCP port it
/// listens on, else the launchd label or systemd unit that runs it, else a
/// pattern on its command line (its program and script), else its exact
/// name, marked as a last resort.
pub fn propose_locator(probe: &Probe, table: &[ProcessInfo], process: &ProcessInfo) -> Proposal {
    let name = target_name(&process.name);
    let pid = process.id.pid;
    let port = probe.fd_table(pid).ok().and_then(|fds| {
        fds.fds
            .iter()
            .filter(|fd| fd.kind == FdKind::Tcp)
            .filter_map(|fd| fd.endpoint.as_deref().and_then(listening_port))
            .min()
    });
    let (locator, why, last_resort) = if let Some(port) = port {
        (Locator::Port(port), format!("it listens on TCP port {port}"), false)
    } else if let Some((locator, why)) = service_locator(probe.service_job(pid).ok().flatten()) {
        (locator, why, false)
    } else if let Some(pattern) = argv_pattern(&process.argv) {
        (Locator::Argv(pattern), "its program and first argument".to_owned(), false)
    } else {
        let exact = format!("^{}$", regex::escape(&process.name));
        (Locator::Process(exact), "its name only: edit it if several run".to_owned(), true)
    };
    let matches = matches_now(probe, table, &locator);
    Proposal { name, locator, why, last_resort, matches }
}

/// The locator naming the service manager job that runs a process, and why.
fn service_locator(job: Option<ServiceJob>) -> Option<(Locator, String)> {
    Some(match job? {
        ServiceJob::Launchd(label) => {
            let why = format!("launchd runs it as the job {label}");
            (Locator::Launchd(label), why)
        }
        ServiceJob::Systemd(unit) => {
            let why = format!("systemd runs it as {unit}");
            (Locator::Systemd(unit), why)
        }
    })
}

/// The pids `locator` finds now (empty when it finds none or is invalid).
pub fn matches_now(probe: &Probe, table: &[ProcessInfo], locator: &Locator) -> Vec<u32> {
    let selector = match locator {
        Locator::Port(port) => Selector::Port(*port),
        Locator::Pidfile(path) => Selector::Pidfile(path.clone()),
        Locator::Process(re) => match Regex::new(re) {
            Ok(re) => Selector::Process(re),
            Err(_) => return Vec::new(),
        },
        Locator::Argv(re) => match Regex::new(re) {
            Ok(re) => Selector::Argv(re),
            Err(_) => return Vec::new(),
        },
        Locator::Launchd(label) => Selector::Launchd(label.clone()),
        Locator::Systemd(unit) => Selector::Systemd(unit.clone()),
    };
    locate(&selector, table, probe, &mut PortMemo::default()).unwrap_or_default()
}

/// `^node /srv/app/server\.js`: the program and its first argument that is not
/// an option (the script a runtime runs), anchored and escaped.
fn argv_pattern(argv: &[String]) -> Option<String> {
    let program = argv.first().filter(|a| !a.is_empty())?;
    let mut pattern = format!("^{}", regex::escape(program));
    if let Some(script) = argv.iter().skip(1).find(|a| !a.starts_with('-') && !a.is_empty()) {
        pattern.push_str(&format!(" (.* )?{}", regex::escape(script)));
    }
    Some(pattern)
}

/// A name a config can hold: lowercase letters, digits, `-` and `_`.
fn target_name(process: &str) -> String {
    let name: String = process
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() { "server".to_owned() } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_patterns_keep_the_program_and_script() {
        let argv: Vec<String> =
            ["/usr/bin/node", "--max-old-space-size=4096", "/srv/app/server.js", "--port", "3000"]
                .map(String::from)
                .to_vec();
        let pattern = argv_pattern(&argv).unwrap();
        assert_eq!(pattern, "^/usr/bin/node (.* )?/srv/app/server\\.js");
        assert!(Regex::new(&pattern).unwrap().is_match(&argv.join(" ")));
        assert_eq!(argv_pattern(&[]), None);
    }

    #[test]
    fn a_service_managers_job_is_proposed_by_its_name() {
        let (locator, why) =
            service_locator(Some(ServiceJob::Systemd("webui.service".into()))).unwrap();
        assert_eq!(locator, Locator::Systemd("webui.service".into()));
        assert!(why.contains("systemd"), "{why}");
        let (locator, _) =
            service_locator(Some(ServiceJob::Launchd("com.example.agent".into()))).unwrap();
        assert_eq!(locator, Locator::Launchd("com.example.agent".into()));
        assert_eq!(service_locator(None), None);
    }

    #[test]
    fn a_process_outside_any_service_is_proposed_by_its_command_line() {
        // An idle lw-helper: no listening port, and (in a container or a login
        // session) no systemd service: the argv pattern, not a last resort. Not
        // this test's own process: other tests of this binary listen on ports
        // while it runs, and then the port was proposed (a flake, issue 13).
        let helper = leakwatch_test_helper::Helper::spawn().unwrap();
        let mut probe = Probe::new().unwrap();
        let table = probe.processes().unwrap();
        let me = probe.process(helper.pid()).unwrap();
        let proposal = propose_locator(&probe, &table, &me);
        match probe.service_job(me.id.pid).unwrap() {
            Some(ServiceJob::Systemd(unit)) => {
                assert_eq!(proposal.locator, Locator::Systemd(unit));
            }
            _ => {
                assert_eq!(proposal.locator.key(), "argv", "{proposal:?}");
                assert!(!proposal.last_resort);
            }
        }
    }

    #[test]
    fn target_names_are_plain() {
        assert_eq!(target_name("Google Chrome Helper"), "google-chrome-helper");
        assert_eq!(target_name("lw-helper"), "lw-helper");
        assert_eq!(target_name("(sd-pam)"), "sd-pam");
        assert_eq!(target_name("..."), "server");
    }
}
