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
/// The height it opens at, before the UI has measured its content.
const HEIGHT: f64 = 580.0;
/// The least height it shrinks to: room for a confirmation dialog's plan.
const MIN_HEIGHT: f64 = 360.0;

/// A click on the tray icon arrives after the blur it causes: a popover closed by
/// that blur this recently is not reopened by the same click.
const BLUR_DEBOUNCE: Duration = Duration::from_millis(300);

/// Where the popover opens: the UI reads this from the URL's hash at start, and
/// from the `leakwatch-navigate` event when it is already open.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "view", rename_all = "snake_case")]
pub enum View {
    Overview,
    /// A row, by the typed fields a status row carries (never its display
    /// name, which faces do not parse): a configured target's (`instance` set
    /// when the target matched several processes), or in automatic mode a top
    /// holder's (no `target`, `instance` its pid).
    Target {
        target: Option<String>,
        instance: Option<u32>,
    },
    /// A configured target's restart (all its processes).
    Restart {
        target: String,
    },
    Orphans,
    /// The orphan list with every tree chosen and the clean-up's confirmation
    /// open (the tray's "Clean up N orphans"); nothing is signalled until the
    /// user confirms.
    Cleanup,
    Settings,
}

impl View {
    /// The view of `row`, by its target and instance.
    pub fn row(row: &leakwatch_core::status::TargetStatus) -> Self {
        View::Target { target: row.target.clone(), instance: row.instance }
    }

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
            View::Overview | View::Target { target: None, instance: None } => "#/".to_owned(),
            View::Target { target: Some(t), instance: None } => format!("#/target/{}", enc(t)),
            View::Target { target: Some(t), instance: Some(pid) } => {
                format!("#/target/{}/{pid}", enc(t))
            }
            View::Target { target: None, instance: Some(pid) } => format!("#/process/{pid}"),
            View::Restart { target } => format!("#/restart/{}", enc(target)),
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
    if !e2e && !place_under_tray(app, &window, HEIGHT) {
        // The tray's position is unknown (some Linux panels never tell): fall
        // back to the top right corner.
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

/// Moves `window` under the tray icon, within the icon's monitor; false when the
/// icon's place or its monitor is unknown. tray-icon reports the status item's
/// top edge as y (the positioner's `TrayCenter` put the popover there, under the
/// menu bar), so this goes by the whole rectangle.
fn place_under_tray<R: Runtime>(
    app: &AppHandle<R>,
    window: &tauri::WebviewWindow<R>,
    height: f64,
) -> bool {
    let Some(tray) = app.tray_by_id(crate::TRAY_ID) else {
        return false;
    };
    let Ok(Some(rect)) = tray.rect() else {
        return false;
    };
    let scale = window.scale_factor().unwrap_or(1.0);
    let position = rect.position.to_physical::<f64>(scale);
    let size = rect.size.to_physical::<f64>(scale);
    let icon = ScreenRect { x: position.x, y: position.y, width: size.width, height: size.height };
    let centre = (icon.x + icon.width / 2.0, icon.y + icon.height / 2.0);
    let Ok(Some(monitor)) = app.monitor_from_point(centre.0, centre.1) else {
        return false;
    };
    let area = monitor.work_area();
    let screen = ScreenRect {
        x: f64::from(area.position.x),
        y: f64::from(area.position.y),
        width: f64::from(area.size.width),
        height: f64::from(area.size.height),
    };
    let scale = monitor.scale_factor();
    let (x, y) = popover_origin(icon, (WIDTH * scale, height * scale), screen);
    window.set_position(tauri::PhysicalPosition::new(x, y)).is_ok()
}

/// Resizes the popover to its content's height (`content`, logical pixels, as
/// the UI measured it) within its monitor's usable height, and keeps it under
/// the tray icon; returns the height given. A longer content scrolls inside.
pub fn fit<R: Runtime>(window: &tauri::WebviewWindow<R>, content: f64) -> tauri::Result<f64> {
    let screen = window
        .current_monitor()?
        .map(|monitor| f64::from(monitor.work_area().size.height) / monitor.scale_factor());
    let height = fitted_height(content, screen);
    window.set_size(tauri::LogicalSize::new(WIDTH, height))?;
    if !e2e() && !place_under_tray(window.app_handle(), window, height) {
        let _ = window.move_window(Position::TopRight);
    }
    Ok(height)
}

/// The popover's height for content `content` high on a monitor whose usable
/// height is `screen` (both logical pixels; `None`: unknown, then at most the
/// opening height): the content's, at least [`MIN_HEIGHT`], at most the screen's.
pub fn fitted_height(content: f64, screen: Option<f64>) -> f64 {
    let most = screen.filter(|s| s.is_finite() && *s > 0.0).unwrap_or(HEIGHT).max(MIN_HEIGHT);
    if !content.is_finite() {
        return HEIGHT.min(most);
    }
    content.ceil().clamp(MIN_HEIGHT, most)
}

/// A rectangle on screen, in physical pixels, y downwards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScreenRect {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// Where a popover of `size` opens for a tray icon at `icon` on a monitor whose
/// usable area is `screen`: centred on the icon, below it when the icon is in the
/// screen's top half (macOS's menu bar, a top panel), above it otherwise (a
/// bottom taskbar), and moved inside the screen where it would stick out.
pub fn popover_origin(icon: ScreenRect, size: (f64, f64), screen: ScreenRect) -> (f64, f64) {
    let (width, height) = size;
    let x = icon.x + icon.width / 2.0 - width / 2.0;
    let icon_in_top_half = icon.y + icon.height / 2.0 < screen.y + screen.height / 2.0;
    let y = if icon_in_top_half { icon.y + icon.height } else { icon.y - height };
    let clamp = |value: f64, low: f64, high: f64| value.min(high).max(low);
    (
        clamp(x, screen.x, screen.x + screen.width - width),
        clamp(y, screen.y, screen.y + screen.height - height),
    )
}

/// Destroys the popover's window and webview (not merely hides it).
pub fn close<R: Runtime>(window: &tauri::WebviewWindow<R>) {
    if let Err(e) = window.destroy() {
        tracing::warn!("could not close the popover: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POPOVER: (f64, f64) = (800.0, 1160.0);

    fn rect(x: f64, y: f64, width: f64, height: f64) -> ScreenRect {
        ScreenRect { x, y, width, height }
    }

    #[test]
    fn popover_opens_below_a_menu_bar_icon_not_over_the_menu_bar() {
        // A Retina MacBook: the menu bar is 74 px high; tray-icon gives the
        // status item's top edge (0) as y.
        let screen = rect(0.0, 0.0, 3024.0, 1964.0);
        let icon = rect(2000.0, 0.0, 60.0, 74.0);
        assert_eq!(popover_origin(icon, POPOVER, screen), (1630.0, 74.0));
    }

    #[test]
    fn popover_near_the_right_edge_stays_on_screen() {
        let screen = rect(0.0, 0.0, 3024.0, 1964.0);
        let icon = rect(2950.0, 0.0, 60.0, 74.0);
        let (x, y) = popover_origin(icon, POPOVER, screen);
        assert_eq!((x, y), (3024.0 - 800.0, 74.0));
    }

    #[test]
    fn popover_on_a_second_monitor_left_of_the_main_one_stays_on_it() {
        // Monitors left of the main one have negative x.
        let screen = rect(-1920.0, 0.0, 1920.0, 1080.0);
        let icon = rect(-1900.0, 0.0, 40.0, 37.0);
        assert_eq!(popover_origin(icon, (400.0, 580.0), screen), (-1920.0, 37.0));
    }

    #[test]
    fn popover_opens_above_an_icon_in_a_bottom_taskbar() {
        let screen = rect(0.0, 0.0, 1920.0, 1040.0);
        let icon = rect(1800.0, 1040.0, 40.0, 40.0);
        assert_eq!(popover_origin(icon, (400.0, 580.0), screen), (1520.0, 460.0));
    }

    #[test]
    fn popover_taller_than_the_space_below_is_moved_up_inside_the_screen() {
        let screen = rect(0.0, 25.0, 1280.0, 700.0);
        let icon = rect(600.0, 0.0, 30.0, 25.0);
        let (_, y) = popover_origin(icon, (400.0, 1160.0), screen);
        // As high as the screen allows: its top edge, never above it.
        assert_eq!(y, 25.0);
    }

    #[test]
    fn popover_height_follows_a_short_content() {
        assert_eq!(fitted_height(431.4, Some(1080.0)), 432.0);
    }

    #[test]
    fn popover_height_stops_at_the_screen_and_the_list_scrolls() {
        assert_eq!(fitted_height(5000.0, Some(1055.0)), 1055.0);
        // A screen of unknown height: no taller than the opening height.
        assert_eq!(fitted_height(5000.0, None), HEIGHT);
    }

    #[test]
    fn popover_height_never_collapses_below_its_minimum() {
        assert_eq!(fitted_height(0.0, Some(1080.0)), MIN_HEIGHT);
        assert_eq!(fitted_height(-3.0, Some(1080.0)), MIN_HEIGHT);
        assert_eq!(fitted_height(f64::NAN, Some(1080.0)), HEIGHT);
        assert_eq!(fitted_height(300.0, Some(100.0)), MIN_HEIGHT);
    }

    #[test]
    fn routes_escape_target_names() {
        assert_eq!(View::Overview.route(), "#/");
        let target =
            |t: Option<&str>, instance| View::Target { target: t.map(str::to_owned), instance };
        assert_eq!(target(Some("web ui/1"), None).route(), "#/target/web%20ui%2F1");
        // Issue 13: a row is its target and instance, not a `name[pid]` label.
        assert_eq!(target(Some("web[7]"), Some(8)).route(), "#/target/web%5B7%5D/8");
        assert_eq!(target(None, Some(9)).route(), "#/process/9");
        assert_eq!(View::Restart { target: "a b".to_owned() }.route(), "#/restart/a%20b");
        assert_eq!(View::Orphans.route(), "#/orphans");
        assert_eq!(View::Cleanup.route(), "#/cleanup");
    }
}
