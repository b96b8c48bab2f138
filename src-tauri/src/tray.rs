//! The menubar/tray icon: its template icon, title and native menu follow the
//! engine's status (via the pure [`crate::tray_menu`] model); a left click
//! toggles the popover under the icon, a right click shows the menu. Actions
//! that signal processes are never run straight from the menu: "Restart…" and
//! "Clean up…" open the popover on their plan, where the user confirms.

use crate::autostart;
use crate::popover::{self, View};
use crate::state::AppState;
use crate::tray_menu::{self, Entry, IconVariant, Inputs, TrayModel, ids};
use leakwatch_core::engine::Command;
use leakwatch_core::model::unix_millis;
use leakwatch_core::status::Status;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIcon, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager, Runtime};

use crate::TRAY_ID;
const ICON_OK: &[u8] = include_bytes!("../icons/tray/ok.png");
const ICON_WARNING: &[u8] = include_bytes!("../icons/tray/warning.png");
const ICON_CRITICAL: &[u8] = include_bytes!("../icons/tray/critical.png");

/// The tray and what it shows now.
struct Tray<R: Runtime> {
    icon: TrayIcon<R>,
    menu: Menu<R>,
    shown: Mutex<Option<TrayModel>>,
}

fn icon(variant: IconVariant) -> tauri::Result<Image<'static>> {
    Image::from_bytes(match variant {
        IconVariant::Ok => ICON_OK,
        IconVariant::Warning => ICON_WARNING,
        IconVariant::Critical => ICON_CRITICAL,
    })
}

/// Creates the tray icon (call once, in `setup`).
pub fn build<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    let menu = Menu::new(app)?;
    let icon = TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon(IconVariant::Ok)?)
        .icon_as_template(true)
        .tooltip("Leakwatch")
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(|app, event| on_menu(app, event.id().as_ref()))
        .on_tray_icon_event(|tray, event| {
            tauri_plugin_positioner::on_tray_event(tray.app_handle(), &event);
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                popover::toggle(tray.app_handle());
            }
        })
        .build(app)?;
    app.manage(Tray { icon, menu, shown: Mutex::new(None) });
    refresh(app);
    Ok(())
}

fn on_menu<R: Runtime>(app: &AppHandle<R>, id: &str) {
    let send = |command| {
        if let Some(state) = app.try_state::<AppState>() {
            state.send(command);
        }
    };
    match id {
        ids::CLEANUP => popover::open(app, &View::Cleanup),
        ids::OPEN => popover::open(app, &View::Overview),
        ids::PAUSE => send(Command::PauseAlerts(Some(Duration::from_secs(3600)))),
        ids::RESUME => send(Command::PauseAlerts(None)),
        ids::AUTOSTART => {
            // Off the main thread, which runs menu handlers: the autostart
            // entry is a file to read and write (issue 13).
            let app = app.clone();
            drop(tauri::async_runtime::spawn_blocking(move || {
                let enabled = autostart::is_enabled(&app);
                if let Err(e) = autostart::set(&app, !enabled) {
                    tracing::warn!("{e}");
                }
                refresh(&app);
            }));
        }
        ids::QUIT => app.exit(0),
        other => {
            if let Some(target) = other.strip_prefix(ids::RESTART) {
                popover::open(app, &View::Restart { target: target.to_owned() });
            } else if let Some(row) = other.strip_prefix(ids::TARGET) {
                // The row's view, as the menu wrote it (an empty one: no row).
                if let Ok(view) = serde_json::from_str::<View>(row) {
                    popover::open(app, &view);
                }
            }
        }
    }
}

/// Brings the tray up to date with the engine's latest status, off the calling
/// thread: menu handlers and sync commands run on the main thread, which the
/// tray's updates themselves wait for.
pub fn refresh<R: Runtime>(app: &AppHandle<R>) {
    let app = app.clone();
    drop(tauri::async_runtime::spawn_blocking(move || {
        if let Some(state) = app.try_state::<AppState>() {
            show(&app, &state.status());
        }
    }));
}

/// Shows `status` in the tray (only what changed). Blocks until the main thread
/// has applied it: never call it on the main thread.
pub fn show<R: Runtime>(app: &AppHandle<R>, status: &Status) {
    let Some(tray) = app.try_state::<Tray<R>>() else {
        return;
    };
    let model = tray_menu::model(
        status,
        &Inputs {
            launch_at_login: autostart::is_enabled(app),
            now: unix_millis(SystemTime::now()),
        },
    );
    let Ok(mut shown) = tray.shown.lock() else {
        return;
    };
    if shown.as_ref() == Some(&model) {
        return;
    }
    if let Err(e) = apply(app, &tray, shown.as_ref(), &model) {
        tracing::warn!("could not update the tray: {e}");
        return;
    }
    *shown = Some(model);
}

/// The icon the tray shows now (`ok`, `warning` or `critical`), as last applied
/// to the real tray icon; `None` before the first status or without a tray. The
/// end-to-end test reads it: a headless tray host cannot be looked at.
pub fn shown_icon<R: Runtime>(app: &AppHandle<R>) -> Option<&'static str> {
    let tray = app.try_state::<Tray<R>>()?;
    let shown = tray.shown.lock().ok()?;
    Some(match shown.as_ref()?.icon {
        IconVariant::Ok => "ok",
        IconVariant::Warning => "warning",
        IconVariant::Critical => "critical",
    })
}

fn apply<R: Runtime>(
    app: &AppHandle<R>,
    tray: &Tray<R>,
    old: Option<&TrayModel>,
    new: &TrayModel,
) -> tauri::Result<()> {
    if old.map(|m| m.icon) != Some(new.icon) {
        tray.icon.set_icon(Some(icon(new.icon)?))?;
        tray.icon.set_icon_as_template(true)?;
    }
    if old.map(|m| &m.title) != Some(&new.title) {
        tray.icon.set_title(new.title.as_deref())?;
    }
    if old.map(|m| &m.tooltip) != Some(&new.tooltip) {
        tray.icon.set_tooltip(Some(&new.tooltip))?;
    }
    if old.map(|m| &m.entries) != Some(&new.entries) {
        // The menu's content is replaced rather than the menu itself: a Linux
        // tray (appindicator) keeps the menu it was built with.
        for item in tray.menu.items()? {
            tray.menu.remove(&item)?;
        }
        for entry in &new.entries {
            match entry {
                Entry::Item { id, label, enabled } => {
                    tray.menu.append(&MenuItem::with_id(
                        app,
                        id,
                        label,
                        *enabled,
                        None::<&str>,
                    )?)?;
                }
                Entry::Check { id, label, checked } => tray.menu.append(
                    &CheckMenuItem::with_id(app, id, label, true, *checked, None::<&str>)?,
                )?,
                Entry::Separator => tray.menu.append(&PredefinedMenuItem::separator(app)?)?,
            }
        }
    }
    Ok(())
}
