//! Launch at login, through `tauri-plugin-autostart` (a LaunchAgent on macOS, an
//! XDG autostart entry on Linux). Wrapped so that an app built without the
//! plugin (the mock runtime's tests) answers "off" instead of panicking.

use crate::error::{AppError, ErrorKind};
use tauri::{AppHandle, Manager, Runtime};
use tauri_plugin_autostart::AutoLaunchManager;

/// Whether the app starts at login.
pub fn is_enabled<R: Runtime>(app: &AppHandle<R>) -> bool {
    app.try_state::<AutoLaunchManager>().and_then(|m| m.is_enabled().ok()).unwrap_or(false)
}

/// Turns launch at login on or off.
pub fn set<R: Runtime>(app: &AppHandle<R>, enabled: bool) -> Result<(), AppError> {
    let manager = app
        .try_state::<AutoLaunchManager>()
        .ok_or_else(|| AppError::new(ErrorKind::Unavailable, "launch at login is not available"))?;
    let result = if enabled { manager.enable() } else { manager.disable() };
    result.map_err(|e| AppError::new(ErrorKind::Unavailable, format!("launch at login: {e}")))
}
