//! Pushes the engine's output to the webview and the tray: `status` (a
//! [`Status`](leakwatch_core::status::Status)) after every tick and
//! `leakwatch-event` (an [`Event`](leakwatch_core::model::Event)) per event the
//! engine raised, each once (the engine publishes every tick's events whole), so
//! the popover never polls. With the popover closed the emits reach no webview
//! and cost next to nothing.
//!
//! Both go out from one task, in the engine's order ([`Relay`]): a tick's
//! events before its status. Two tasks (one per channel) let a status overtake
//! its own events, and the popover, which clears the events it was sent when a
//! status arrives (the status lists them), then showed them twice (issue 13).

use crate::state::AppState;
use leakwatch_core::relay::{Relay, Update};
use tauri::{AppHandle, Emitter, Manager, Runtime};

/// The event carrying the status after each tick.
pub const STATUS: &str = "status";
/// The event carrying each engine event.
pub const EVENT: &str = "leakwatch-event";

/// Starts forwarding (call once, after `AppState` is managed).
pub fn forward<R: Runtime>(app: &AppHandle<R>) {
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    let mut relay = Relay::new(state.engine().status(), state.engine().events());
    let handle = app.clone();
    tauri::async_runtime::spawn(async move {
        while let Some(next) = relay.next().await {
            match next {
                Update::Events(raised) => {
                    for event in raised.iter() {
                        if let Err(e) = handle.emit(EVENT, event) {
                            tracing::debug!("event not sent to the webview: {e}");
                        }
                    }
                }
                Update::Status(latest) => {
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
                Update::Lagged(missed) => {
                    tracing::debug!("{missed} ticks' events not forwarded (the UI was too slow)");
                }
            }
        }
    });
}
