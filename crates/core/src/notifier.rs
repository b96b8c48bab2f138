//! Desktop notifications behind a small trait, so the engine's tests can capture
//! what would have been shown and a machine without a notification service (no
//! session bus, a headless server) logs instead of failing.

use crate::model::Severity;
use std::sync::Mutex;

/// One notification, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub title: String,
    pub body: String,
    /// The target it is about, so a click can open the popover on it.
    pub target: Option<String>,
    pub severity: Severity,
}

/// Why a notification could not be shown.
#[derive(Debug, thiserror::Error)]
#[error("could not show notification: {0}")]
pub struct NotifyError(pub String);

/// Something that shows notifications.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Shows `notification`; may block briefly (a D-Bus round trip), so the engine
    /// calls it off its async threads.
    fn notify(&self, notification: &Notification) -> Result<(), NotifyError>;
}

/// The platform's notification centre, through `notify-rust` (D-Bus on Linux,
/// NSUserNotification on macOS).
#[derive(Debug, Default)]
pub struct DesktopNotifier;

impl Notifier for DesktopNotifier {
    fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        let mut desktop = notify_rust::Notification::new();
        desktop.appname("Leakwatch").summary(&notification.title).body(&notification.body);
        #[cfg(all(unix, not(target_os = "macos")))]
        {
            let urgency = match notification.severity {
                Severity::Critical => notify_rust::Urgency::Critical,
                Severity::Warning => notify_rust::Urgency::Normal,
                Severity::Ok => notify_rust::Urgency::Low,
            };
            desktop.urgency(urgency);
        }
        desktop.show().map(drop).map_err(|e| NotifyError(e.to_string()))
    }
}

/// Keeps every notification in memory: for tests, and for `watch`, which prints
/// them in its own output instead of popping them up.
#[derive(Debug, Default)]
pub struct CapturingNotifier {
    sent: Mutex<Vec<Notification>>,
}

impl CapturingNotifier {
    /// Everything notified so far.
    pub fn sent(&self) -> Vec<Notification> {
        self.sent.lock().map(|sent| sent.clone()).unwrap_or_default()
    }
}

impl Notifier for CapturingNotifier {
    fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        self.sent
            .lock()
            .map_err(|_| NotifyError("capture lock poisoned".to_owned()))?
            .push(notification.clone());
        Ok(())
    }
}

/// Shows nothing: notifications disabled in the config.
#[derive(Debug, Default)]
pub struct NullNotifier;

impl Notifier for NullNotifier {
    fn notify(&self, _notification: &Notification) -> Result<(), NotifyError> {
        Ok(())
    }
}
