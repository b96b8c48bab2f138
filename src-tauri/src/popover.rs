//! The popover window. It exists only while it is open: closing or hiding it
//! (losing focus) destroys its webview, and opening builds a fresh one, so an
//! idle Leakwatch costs a tray icon and the engine, not a browser engine.
//!
//! In end-to-end mode (`LEAKWATCH_E2E=1`) it is an ordinary decorated window,
//! opened at start and kept when it loses focus, so WebDriver can drive it.

use std::sync::Mutex;
use std::time::{Duration, Instant};
use tauri::{AppHandle, Emitter, Manager, Runtime, WebviewUrl, WebviewWindowBuilder, WindowEvent};
use tauri_plugin_positioner::{Position, WindowExt};

/// The popover's window label (capabilities grant it the commands).
pub const LABEL: &str = "popover";
const WIDTH: f64 = 400.0;
const HEIGHT: f64 = 580.0;

/// A click on the tray icon arrives after the blur it causes: a popover closed by
/// that blur this recently is not reopened by the same click.
const BLUR_DEBOUNCE: Duration = Duration::from_millis(300);

/// Where the popover opens: the UI reads this from the URL's hash at start, and
/// from the `leakwatch-navigate` event when it is already open.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "view", content = "target", rename_all = "snake_case")]
pub enum View {
    Overview,
    Target(String),
    Restart(String),
    Orphans,
    /// The orphan list with every tree chosen and the clean-up's confirmation
    /// open (the tray's "Clean up N orphans"); nothing is signalled until the
    /// user confirms.
    Cleanup,
    Settings,
}

impl View {
    /// The hash route: `#/target/copilot`.
    pub fn route(&self) -> String {
        let enc = |s: &str| {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        match self {
            View::Overview => "#/".to_owned(),
            View::Target(t) => format!("#/target/{}", enc(t)),
            View::Restart(t) => format!("#/restart/{}", enc(t)),
            View::Orphans => "#/orphans".to_owned(),
            View::Cleanup => "#/cleanup".to_owned(),
            View::Settings => "#/settings".to_owned(),
        }
    }
}

/// When the popover last closed on blur.
#[derive(Debug, Default)]
pub struct PopoverState {
    closed_on_blur: Mutex<Option<Instant>>,
}

/// Whether the app runs in end-to-end mode.
pub fn e2e() -> bool {
    std::env::var_os("LEAKWATCH_E2E").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Opens the popover if closed (at `view`), closes it if open.
pub fn toggle<R: Runtime>(app: &AppHandle<R>) {
    if let Some(window) = app.get_webview_window(LABEL) {
        close(&window);
        return;
    }
    let recently = app
        .try_state::<PopoverState>()
        .and_then(|s| s.closed_on_blur.lock().ok().and_then(|t| *t))
        .is_some_and(|t| t.elapsed() < BLUR_DEBOUNCE);
    if !recently {
        open(app, &View::Overview);
    }
}

/// Opens the popover at `view` (or shows `view` in the open one).
pub fn open<R: Runtime>(app: &AppHandle<R>, view: &View) {
    if let Some(window) = app.get_webview_window(LABEL) {
        let _ = window.emit("leakwatch-navigate", view);
        let _ = window.show();
        let _ = window.set_focus();
        return;
    }
    let e2e = e2e();
    let url = WebviewUrl::App(format!("index.html{}", view.route()).into());
    let builder = WebviewWindowBuilder::new(app, LABEL, url)
        .title("Leakwatch")
        .inner_size(WIDTH, HEIGHT)
        .visible(false);
    let builder = if e2e {
        builder.resizable(true)
    } else {
        builder
            .decorations(false)
            .resizable(false)
            .skip_taskbar(true)
            .always_on_top(true)
            .visible_on_all_workspaces(true)
    };
    let window = match builder.build() {
        Ok(window) => window,
        Err(e) => {
            tracing::error!("could not open the popover: {e}");
            return;
        }
    };
    if !e2e && window.move_window_constrained(Position::TrayCenter).is_err() {
        // The tray's position is unknown until it has been clicked (or never, on
        // some Linux panels): fall back to the top right corner.
        let _ = window.move_window(Position::TopRight);
    }
    if !e2e {
        let handle = window.clone();
        let app = app.clone();
        window.on_window_event(move |event| {
            if let WindowEvent::Focused(false) = event {
                if let Some(state) = app.try_state::<PopoverState>()
                    && let Ok(mut t) = state.closed_on_blur.lock()
                {
                    *t = Some(Instant::now());
                }
                close(&handle);
            }
        });
    }
    let _ = window.show();
    let _ = window.set_focus();
}

/// Destroys the popover's window and webview (not merely hides it).
fn close<R: Runtime>(window: &tauri::WebviewWindow<R>) {
    if let Err(e) = window.destroy() {
        tracing::warn!("could not close the popover: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_escape_target_names() {
        assert_eq!(View::Overview.route(), "#/");
        assert_eq!(View::Target("web ui/1".to_owned()).route(), "#/target/web%20ui%2F1");
        assert_eq!(View::Orphans.route(), "#/orphans");
        assert_eq!(View::Cleanup.route(), "#/cleanup");
    }
}
