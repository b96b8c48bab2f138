//! Desktop notifications for the app: core's [`DesktopNotifier`] (notify-rust),
//! plus, where the notification service reports clicks (the freedesktop one on
//! Linux), a click opens the popover on what the notification is about (its
//! typed [`Subject`]: a target's row, the orphans).
//! macOS's notify-rust backend does not report clicks, so there a notification
//! is informational and the tray icon leads to the details.
//!
//! It also words the outcome of the popover's actions (a restart, an orphan
//! clean-up) as one notification each: a restart waits for health and a clean-up
//! for the grace, so the user has often closed the popover by the time they end.

use crate::error::AppError;
use leakwatch_core::actions::kill::{KillPlan, KillReport, OutcomeKind};
use leakwatch_core::actions::restart::RestartReport;
use leakwatch_core::model::{Severity, Subject};
use leakwatch_core::notifier::{Notification, Notifier, NotifyError, NullNotifier};
use leakwatch_core::rules::human_bytes;
use std::sync::Arc;

/// Called with a notification's subject when the user clicks it.
pub type OnClick = Arc<dyn Fn(Option<Subject>) + Send + Sync>;

/// Where a click on a notification about `subject` opens the popover: the
/// row of a target or of a top holder (by the subject's typed name and pid, as
/// the row carries them), the orphan list, else the overview.
pub fn view_of(subject: Option<&Subject>) -> crate::popover::View {
    use crate::popover::View;
    match subject {
        Some(Subject::Target { name, instance }) => {
            View::Target { target: Some(name.clone()), instance: *instance }
        }
        Some(Subject::Process { pid, .. }) => View::Target { target: None, instance: Some(*pid) },
        Some(Subject::Orphans) => View::Orphans,
        Some(Subject::Leakwatch) | None => View::Overview,
    }
}

/// The notifier the engine runs with: none in end-to-end mode (no notification
/// service under Xvfb), otherwise the desktop's.
pub fn notifier(e2e: bool, on_click: OnClick) -> Arc<dyn Notifier> {
    if e2e {
        return Arc::new(NullNotifier);
    }
    Arc::new(AppNotifier { on_click })
}

/// Shows notifications and reports clicks on them.
struct AppNotifier {
    #[cfg_attr(not(all(unix, not(target_os = "macos"))), allow(dead_code))]
    on_click: OnClick,
}

impl std::fmt::Debug for AppNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppNotifier").finish_non_exhaustive()
    }
}

impl Notifier for AppNotifier {
    #[cfg(all(unix, not(target_os = "macos")))]
    fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        let mut desktop = notify_rust::Notification::new();
        desktop
            .appname("Leakwatch")
            .summary(&notification.title)
            .body(&notification.body)
            .action("default", "Open Leakwatch")
            .urgency(match notification.severity {
                Severity::Critical => notify_rust::Urgency::Critical,
                Severity::Warning => notify_rust::Urgency::Normal,
                Severity::Ok => notify_rust::Urgency::Low,
            });
        let handle = desktop.show().map_err(|e| NotifyError(e.to_string()))?;
        let on_click = Arc::clone(&self.on_click);
        let subject = notification.subject.clone();
        // Waiting for the click blocks until the notification closes: a thread
        // per notification, and notifications are rare (rules have cooldowns).
        let spawned =
            std::thread::Builder::new().name("notification".to_owned()).spawn(move || {
                handle.wait_for_action(|action| {
                    if action == "default" {
                        on_click(subject);
                    }
                });
            });
        if let Err(e) = spawned {
            tracing::debug!("notification clicks not followed: {e}");
        }
        Ok(())
    }

    #[cfg(not(all(unix, not(target_os = "macos"))))]
    fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        leakwatch_core::notifier::DesktopNotifier.notify(notification)
    }
}

/// "leaky restarted: pid 123 → 456", or why it failed.
pub fn restart_outcome(target: &str, result: &Result<RestartReport, AppError>) -> Notification {
    match result {
        Ok(report) => {
            let new = report.new_pid.or(report.spawned_pid);
            let mut body = match (report.previous, new) {
                (Some(old), Some(new)) => format!("pid {} → {new}", old.pid),
                (None, Some(new)) => format!("started: pid {new}"),
                (Some(old), None) => {
                    format!("pid {} stopped; the new process was not found yet", old.pid)
                }
                (None, None) => "the new process was not found yet".to_owned(),
            };
            if let Some(after) = report.healthy_after {
                body.push_str(&format!(", healthy after {:.1} s", after.as_secs_f64()));
            }
            if let Some(stopped) = &report.stopped {
                let survived = stopped.with_outcome(OutcomeKind::Survived).len();
                if survived > 0 {
                    body.push_str(&format!("; {survived} survived"));
                }
            }
            Notification {
                title: format!("{target} restarted: {body}"),
                body: format!(
                    "{} restart{}",
                    report.strategy,
                    if report.snapshot_saved { "; forensic snapshot saved" } else { "" }
                ),
                subject: Some(Subject::target(target)),
                severity: Severity::Ok,
            }
        }
        Err(e) => Notification {
            title: format!("{target}: restart failed"),
            body: e.message.clone(),
            subject: Some(Subject::target(target)),
            severity: Severity::Warning,
        },
    }
}

/// "Cleaned up 3 orphans, 1.2 GiB freed; 1 survived", or why it failed. The
/// memory freed is the planned RSS of the processes that are now gone.
pub fn cleanup_outcome(result: &Result<(KillPlan, KillReport), AppError>) -> Notification {
    let (plan, report) = match result {
        Ok(done) => done,
        Err(e) => {
            return Notification {
                title: "Orphan clean-up failed".to_owned(),
                body: e.message.clone(),
                subject: Some(Subject::Orphans),
                severity: Severity::Warning,
            };
        }
    };
    let mut stopped = report.with_outcome(OutcomeKind::ExitedAfterTerm);
    stopped.extend(report.with_outcome(OutcomeKind::Killed));
    let freed: u64 = stopped
        .iter()
        .filter_map(|p| plan.processes.iter().find(|planned| planned.id == p.id))
        .filter_map(|planned| planned.rss_bytes)
        .sum();
    let survived = report.with_outcome(OutcomeKind::Survived).len();
    let protected = report.with_outcome(OutcomeKind::Protected).len();
    let n = stopped.len();
    let mut title = if n == 0 {
        "Orphan clean-up: nothing was running".to_owned()
    } else {
        format!("Cleaned up {n} orphan{}, {} freed", plural(n), human_bytes(freed))
    };
    if survived > 0 {
        title.push_str(&format!("; {survived} survived"));
    }
    let mut body = format!("{:.1} s", report.elapsed.as_secs_f64());
    if protected > 0 {
        body.push_str(&format!("; {protected} left alone (protected)"));
    }
    Notification {
        title,
        body,
        subject: Some(Subject::Orphans),
        severity: if survived > 0 { Severity::Warning } else { Severity::Ok },
    }
}

const fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use leakwatch_core::actions::kill::{Outcome, PlannedProcess, ProcessOutcome, Survival};
    use leakwatch_probe::{ProcessId, StartTime};
    use std::time::Duration;

    fn id(pid: u32) -> ProcessId {
        ProcessId { pid, start_time: StartTime(u64::from(pid) * 10) }
    }

    #[test]
    fn restart_names_old_and_new_pids() {
        let report = RestartReport {
            target: "leaky".to_owned(),
            strategy: leakwatch_core::actions::restart::Strategy::Command,
            previous: Some(id(123)),
            stopped: None,
            spawned_pid: Some(455),
            new_pid: Some(456),
            healthy_after: Some(Duration::from_millis(1400)),
            snapshot_saved: true,
        };
        let n = restart_outcome("leaky", &Ok(report));
        assert_eq!(n.title, "leaky restarted: pid 123 → 456, healthy after 1.4 s");
        assert_eq!(n.body, "command restart; forensic snapshot saved");
        assert_eq!(n.subject, Some(Subject::target("leaky")));
        assert_eq!(n.severity, Severity::Ok);

        let failed = restart_outcome("leaky", &Err(AppError::new(ErrorKind::NotFound, "no such")));
        assert_eq!(failed.title, "leaky: restart failed");
        assert_eq!(failed.body, "no such");
        assert_eq!(failed.severity, Severity::Warning);
    }

    #[test]
    fn cleanup_counts_stopped_freed_and_survivors() {
        let planned = |pid: u32, rss: u64| PlannedProcess {
            id: id(pid),
            ppid: 1,
            depth: 0,
            name: "w".to_owned(),
            argv: vec![],
            rss_bytes: Some(rss),
            protected: None,
        };
        let outcome = |pid: u32, outcome: Outcome| ProcessOutcome {
            id: id(pid),
            name: "w".to_owned(),
            outcome,
        };
        let gib = 1 << 30;
        let plan = KillPlan {
            roots: vec![id(1), id(2)],
            grace: Duration::from_secs(3),
            processes: vec![
                planned(10, gib),
                planned(11, gib / 5),
                planned(12, gib),
                planned(13, gib),
            ],
        };
        let report = KillReport {
            processes: vec![
                outcome(10, Outcome::ExitedAfterTerm),
                outcome(11, Outcome::Killed),
                outcome(12, Outcome::Survived { reason: Survival::Uninterruptible }),
                outcome(13, Outcome::AlreadyGone),
            ],
            elapsed: Duration::from_millis(3200),
        };
        let n = cleanup_outcome(&Ok((plan, report)));
        assert_eq!(n.title, "Cleaned up 2 orphans, 1.2 GiB freed; 1 survived");
        assert_eq!(n.body, "3.2 s");
        assert_eq!(n.severity, Severity::Warning);
        assert_eq!(n.subject, Some(Subject::Orphans));
    }

    #[test]
    fn a_click_opens_what_the_notification_is_about() {
        use crate::popover::View;
        // Issue 13: by the typed subject; "orphans" was once a target name too.
        // And the row by its target and instance, not by a `web[7]` label the
        // UI matched against row names (which a target named `web[7]` has too).
        let web = Subject::Target { name: "web".to_owned(), instance: Some(7) };
        assert_eq!(
            view_of(Some(&web)),
            View::Target { target: Some("web".to_owned()), instance: Some(7) }
        );
        let holder = Subject::Process { name: "python3".to_owned(), pid: 9 };
        assert_eq!(view_of(Some(&holder)), View::Target { target: None, instance: Some(9) });
        assert_eq!(view_of(Some(&Subject::Orphans)), View::Orphans);
        assert_eq!(view_of(Some(&Subject::Leakwatch)), View::Overview);
        assert_eq!(view_of(None), View::Overview);
    }
}
