//! Desktop notifications for the app: core's [`DesktopNotifier`] (notify-rust),
//! plus, where the notification service reports clicks (the freedesktop one on
//! Linux), a click opens the popover on the target the notification is about.
//! macOS's notify-rust backend does not report clicks, so there a notification
//! is informational and the tray icon leads to the details.

use leakwatch_core::notifier::{Notification, Notifier, NotifyError, NullNotifier};
use std::sync::Arc;

/// Called with a notification's target when the user clicks it.
pub type OnClick = Arc<dyn Fn(Option<String>) + Send + Sync>;

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
        use leakwatch_core::model::Severity;
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
        let target = notification.target.clone();
        // Waiting for the click blocks until the notification closes: a thread
        // per notification, and notifications are rare (rules have cooldowns).
        let spawned =
            std::thread::Builder::new().name("notification".to_owned()).spawn(move || {
                handle.wait_for_action(|action| {
                    if action == "default" {
                        on_click(target);
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
