//! Desktop notifications behind a small trait, so the engine's tests can capture
//! what would have been shown and a machine without a notification service (no
//! session bus, a headless server) logs instead of failing.

use crate::model::{Severity, Subject};
use std::sync::Mutex;

/// One notification, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub title: String,
    pub body: String,
    /// What it is about, so a click can open the popover there.
    pub subject: Option<Subject>,
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

    /// Whether what it is handed reaches a person: an event handed to a
    /// notifier that shows nothing is not `notified`.
    fn shows(&self) -> bool {
        true
    }
}

/// The platform's notification centre, through `notify-rust` (D-Bus on Linux,
/// NSUserNotification on macOS).
#[cfg(feature = "notifications")]
#[derive(Debug, Default)]
pub struct DesktopNotifier;

#[cfg(feature = "notifications")]
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

/// The menubar app's bundle identifier (`identifier` in src-tauri/tauri.conf.json).
pub const APP_BUNDLE_ID: &str = "dev.leakwatch.Leakwatch";

/// What notifications are shown as when the app is not installed (a CLI-only
/// install: the daemon, `watch`). macOS shows a notification only on behalf of an
/// application bundle it knows; Terminal is on every Mac, and it is what
/// mac-notification-sys itself falls back to.
pub const CLI_BUNDLE_ID: &str = "com.apple.Terminal";

/// Where Launch Services finds the app when it is installed: `/Applications`, or
/// `~/Applications` (Homebrew's `--appdir`).
pub fn app_bundle_paths(home: Option<&std::path::Path>) -> Vec<std::path::PathBuf> {
    let mut paths = vec![std::path::PathBuf::from("/Applications/Leakwatch.app")];
    if let Some(home) = home {
        paths.push(home.join("Applications/Leakwatch.app"));
    }
    paths
}

/// The application a process that is not the app (the daemon, `watch`) shows its
/// notifications as: the app when it is installed, else [`CLI_BUNDLE_ID`].
pub fn cli_notification_application(app_installed: bool) -> &'static str {
    if app_installed { APP_BUNDLE_ID } else { CLI_BUNDLE_ID }
}

/// Whether the menubar app is installed where [`app_bundle_paths`] looks.
pub fn app_installed() -> bool {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    app_bundle_paths(home.as_deref()).iter().any(|path| path.is_dir())
}

/// Names, once per process and before the first notification, the application
/// macOS shows notifications as. Without it, the first notification makes
/// mac-notification-sys ask AppleScript for an application called `use_default`
/// (a "Where is use_default?" dialog), then show alerts as Finder's. Only the
/// first call counts (mac-notification-sys swaps `NSBundle`'s identifier once);
/// later calls and other OSes do nothing.
#[cfg(feature = "notifications")]
pub fn set_notification_application(bundle_id: &str) -> Result<(), NotifyError> {
    #[cfg(target_os = "macos")]
    {
        static SET: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
        SET.get_or_init(|| notify_rust::set_application(bundle_id).map_err(|e| e.to_string()))
            .clone()
            .map_err(|e| NotifyError(format!("notifications as {bundle_id}: {e}")))
    }
    #[cfg(not(target_os = "macos"))]
    {
        let _ = bundle_id;
        Ok(())
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

    fn shows(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod application_tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn cli_notifications_are_the_apps_when_installed_else_terminals() {
        assert_eq!(cli_notification_application(true), "dev.leakwatch.Leakwatch");
        assert_eq!(cli_notification_application(false), "com.apple.Terminal");
        // Never the name mac-notification-sys would look up by itself.
        assert_ne!(cli_notification_application(false), "use_default");
    }

    #[test]
    fn app_is_looked_for_in_both_applications_folders() {
        let paths = app_bundle_paths(Some(Path::new("/Users/me")));
        assert_eq!(
            paths,
            vec![
                Path::new("/Applications/Leakwatch.app").to_path_buf(),
                Path::new("/Users/me/Applications/Leakwatch.app").to_path_buf(),
            ]
        );
    }

    #[cfg(feature = "notifications")]
    #[test]
    fn setting_the_application_elsewhere_than_macos_is_a_no_op() {
        assert!(set_notification_application(APP_BUNDLE_ID).is_ok());
    }
}
