//! Pushes the engine's output to the webview and the tray: `status` (a
//! [`Status`](leakwatch_core::status::Status)) after every tick and
//! `leakwatch-event` (an [`Event`](leakwatch_core::model::Event)) per event the
//! engine raised, each once (the engine publishes every tick's events whole), so
//! the popover never polls. With the popover closed the emits reach no webview
//! and cost next to nothing.

use crate::state::AppState;
use tauri::{AppHandle, Emitter, Manager, Runtime};
use tokio::sync::broadcast::error::RecvError;

/// The event carrying the status after each tick.
pub const STATUS: &str = "status";
/// The event carrying each engine event.
pub const EVENT: &str = "leakwatch-event";

/// Starts forwarding (call once, after `AppState` is managed).
pub fn forward<R: Runtime>(app: &AppHandle<R>) {
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    let mut status = state.engine().status();
    let mut events = state.engine().events();
    let handle = app.clone();
    tauri::async_runtime::spawn(async move {
        while status.changed().await.is_ok() {
            let latest = status.borrow_and_update().clone();
            if let Err(e) = handle.emit(STATUS, &*latest) {
                tracing::debug!("status not sent to the webview: {e}");
            }
            let tray = handle.clone();
            // The tray's update waits for the main thread: not on an async worker.
            let shown = tauri::async_runtime::spawn_blocking(move || {
                crate::tray::show(&tray, &latest);
            });
            if let Err(e) = shown.await {
                tracing::warn!("the tray update failed: {e}");
            }
        }
    });
    let handle = app.clone();
    tauri::async_runtime::spawn(async move {
        loop {
            match events.recv().await {
                Ok(raised) => {
                    for event in raised.iter() {
                        if let Err(e) = handle.emit(EVENT, event) {
                            tracing::debug!("event not sent to the webview: {e}");
                        }
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!("{missed} ticks' events not forwarded (the UI was too slow)");
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
}
