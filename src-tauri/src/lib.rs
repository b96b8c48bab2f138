//! `leakwatch-app`: Leakwatch's menubar face. One process holds the tray icon,
//! the engine (on Tauri's tokio runtime), desktop notifications and, only while
//! it is open, the popover's webview. Everything the popover may do is one of
//! the commands in [`commands`], granted by `capabilities/default.json`.

pub mod autostart;
pub mod commands;
pub mod error;
pub mod events;
pub mod notifications;
pub mod popover;
pub mod settings;
pub mod state;
pub mod tray;
pub mod tray_menu;

use state::{AppState, Paths};

/// The id of the one tray icon: the tray builds it, and the popover places itself
/// under it. Here, below both, so neither module uses the other's (issue 13: no
/// module cycles; the tray opens the popover).
pub(crate) const TRAY_ID: &str = "leakwatch";
use std::sync::Arc;
use tauri::{Manager, RunEvent, Runtime};

/// The commands, for `invoke_handler` (shared with the mock runtime's tests).
pub fn handler<R: Runtime>() -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
        commands::get_status,
        commands::get_tree,
        commands::plan_restart,
        commands::restart_target,
        commands::save_snapshot,
        commands::plan_cleanup,
        commands::clean_orphans,
        commands::pause_alerts,
        commands::mark_baseline,
        commands::get_settings,
        commands::save_settings,
        commands::set_launch_at_login,
        commands::reveal_config,
        commands::propose_watch,
        commands::locator_matches,
        commands::add_target,
        commands::save_target,
        commands::remove_target,
        commands::set_fd_limit,
        commands::get_tray_icon,
        commands::fit_popover,
        commands::close_popover,
        commands::quit,
    ]
}

/// Runs the app until Quit; `--version` (or `-V`) prints the version and returns
/// before any window system is touched, so a package can be checked headless.
pub fn run() {
    if matches!(std::env::args().nth(1).as_deref(), Some("--version" | "-V")) {
        println!("leakwatch-app {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    init_tracing();
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_positioner::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ))
        .manage(popover::PopoverState::default())
        .invoke_handler(handler())
        .setup(|app| {
            setup(app.handle())?;
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            eprintln!("leakwatch-app: could not start: {e}");
            std::process::exit(1);
        }
    };
    app.run(|_app, event| {
        // Closing the popover destroys the last window; the app lives on in the
        // tray until Quit (which exits with a code).
        if let RunEvent::ExitRequested { api, code: None, .. } = event {
            api.prevent_exit();
        }
    });
}

fn setup(app: &tauri::AppHandle) -> Result<(), Box<dyn std::error::Error>> {
    // A menubar app: no Dock icon, no app menu (Info.plist's LSUIElement does
    // the same for the bundle; this covers `cargo run`).
    #[cfg(target_os = "macos")]
    if let Err(e) = app.set_activation_policy(tauri::ActivationPolicy::Accessory) {
        tracing::warn!("could not hide the Dock icon: {e}");
    }

    let e2e = popover::e2e();
    // Before the first notification: as the app itself, never mac-notification-sys's
    // `use_default` lookup (a "Where is use_default?" dialog).
    if !e2e {
        let identifier = &app.config().identifier;
        if let Err(e) = leakwatch_core::notifier::set_notification_application(identifier) {
            tracing::warn!("{e}");
        }
    }
    let clicks = app.clone();
    let on_click: notifications::OnClick = Arc::new(move |subject| {
        let app = clicks.clone();
        let view = notifications::view_of(subject.as_ref());
        let _ = clicks.run_on_main_thread(move || popover::open(&app, &view));
    });
    let notifier = notifications::notifier(e2e, on_click);
    // The engine's loop runs on Tauri's runtime: enter it to spawn.
    let state =
        tauri::async_runtime::block_on(async move { AppState::start(Paths::from_env(), notifier) });
    app.manage(state);
    events::forward(app);
    tray::build(app)?;
    if e2e {
        popover::open(app, &popover::View::Overview);
    }
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEAKWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Writes the TypeScript types of everything the UI receives or sends into
/// `ui/src/bindings/` (committed; `cargo test -p leakwatch-app` regenerates them).
/// 64-bit integers become `number`, as `serde_json` writes them.
#[cfg(test)]
mod bindings {
    use ts_rs::{Config, TS};

    #[test]
    fn export_typescript_bindings() -> Result<(), ts_rs::ExportError> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/bindings");
        let cfg = Config::new().with_large_int("number").with_out_dir(dir);
        leakwatch_core::status::Status::export_all(&cfg)?;
        leakwatch_core::owner::Owner::export_all(&cfg)?;
        leakwatch_core::model::Event::export_all(&cfg)?;
        leakwatch_core::actions::kill::KillPlan::export_all(&cfg)?;
        leakwatch_core::actions::kill::KillReport::export_all(&cfg)?;
        // Not in any exported type: the UI words outcomes keyed by it.
        leakwatch_core::actions::kill::OutcomeKind::export_all(&cfg)?;
        leakwatch_core::actions::restart::RestartReport::export_all(&cfg)?;
        leakwatch_core::orphans::OrphanTree::export_all(&cfg)?;
        leakwatch_probe::ProcessId::export_all(&cfg)?;
        leakwatch_probe::FdKind::export_all(&cfg)?;
        leakwatch_probe::FdClass::export_all(&cfg)?;
        crate::commands::TreeRow::export_all(&cfg)?;
        crate::commands::ActionPlan::export_all(&cfg)?;
        crate::settings::Settings::export_all(&cfg)?;
        crate::error::AppError::export_all(&cfg)?;
        crate::popover::View::export_all(&cfg)?;
        leakwatch_core::proposal::Proposal::export_all(&cfg)?;
        leakwatch_core::diagnose::Mark::export_all(&cfg)?;
        let kinds =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/bindings/kinds.ts");
        std::fs::write(kinds, kinds_ts())?;
        Ok(())
    }

    /// Issue 13: a field serde leaves out when it is empty is optional in the
    /// TypeScript too, so the UI cannot read a key that may be missing as present.
    #[test]
    fn fields_serde_omits_are_optional_in_typescript() {
        use leakwatch_core::orphans::{OrphanMember, OrphanTree};
        use leakwatch_core::summary::PathGroup;
        let cfg = Config::new().with_large_int("number");
        // Read back from the fewest keys (what an attached face may receive), then
        // written again: the empty fields are left out.
        let member = serde_json::json!({"pid": 7, "start_time": 1, "ppid": 1, "depth": 0,
            "name": "x", "argv": [], "rss_bytes": null, "fds": null, "cpu_seconds": null});
        let tree = serde_json::json!({"root": {"pid": 7, "start_time": 1},
            "reason": "leader_gone", "label": "x", "members": [member], "total_rss_bytes": 0,
            "total_fds": 0, "age_seconds": 1.5, "idle_seconds": null, "watched": []});
        let tree: OrphanTree = serde_json::from_value(tree).unwrap();
        let tree = serde_json::to_value(tree).unwrap();
        assert!(tree.get("original_parent").is_none(), "{tree}");
        assert!(OrphanTree::decl(&cfg).contains("original_parent?: ParentRecord,"));
        let member = &tree["members"][0];
        assert!(member.get("label").is_none() && member.get("folded_into").is_none());
        let decl = OrphanMember::decl(&cfg);
        assert!(
            decl.contains("label?: string,") && decl.contains("folded_into?: number,"),
            "{decl}"
        );
        let group: PathGroup =
            serde_json::from_value(serde_json::json!({"path": "/x", "kind": "file", "count": 1}))
                .unwrap();
        let group = serde_json::to_value(group).unwrap();
        assert!(group.get("companions").is_none(), "{group}");
        assert!(PathGroup::decl(&cfg).contains("companions?: Array<Companion>"));
    }

    /// `kinds.ts`: the kind order, the classes and the nouns the UI shows, written
    /// from the Rust the CLI and the engine's messages use (issue 13: the UI kept
    /// its own copies, and its nouns had already drifted from the engine's).
    fn kinds_ts() -> String {
        use leakwatch_probe::{FdClass, FdKind};
        let quote = |text: &str| serde_json::to_string(text).unwrap();
        let kinds: Vec<String> = FdKind::ALL.iter().map(|k| quote(k.name())).collect();
        let classes: Vec<String> = FdClass::ALL.iter().map(|c| quote(c.name())).collect();
        let class_of: Vec<String> = FdKind::ALL
            .iter()
            .map(|k| format!("  {}: {},", k.name(), quote(k.class().name())))
            .collect();
        let nouns: Vec<String> = FdKind::ALL
            .iter()
            .map(|k| {
                let (one, many) = leakwatch_core::rules::kind_nouns(*k);
                format!("  {}: [{}, {}],", k.name(), quote(one), quote(many))
            })
            .collect();
        let labels: Vec<String> =
            FdClass::ALL.iter().map(|c| format!("  {}: {},", c.name(), quote(c.label()))).collect();
        format!(
            "// This file was generated by `cargo test -p leakwatch-app` (src-tauri/src/lib.rs) \
             from FdKind and FdClass (leakwatch-probe) and kind_nouns (leakwatch-core). Do not \
             edit this file manually.\n\
             import type {{ FdClass }} from \"./FdClass\";\n\
             import type {{ FdKind }} from \"./FdKind\";\n\n\
             /** Every kind, event loops first: the order of gauges and tables (`FdKind::ALL`). */\n\
             export const KINDS: readonly FdKind[] = [{}];\n\n\
             /** Every class, in gauge order (`FdClass::ALL`). */\n\
             export const CLASSES: readonly FdClass[] = [{}];\n\n\
             /** The class each kind is counted under (`FdKind::class`). */\n\
             export const KIND_CLASS: Readonly<Record<FdKind, FdClass>> = {{\n{}\n}};\n\n\
             /** How a person names descriptors of a kind, one and many (`kind_nouns`). */\n\
             export const KIND_NOUNS: Readonly<Record<FdKind, readonly [string, string]>> = {{\n{}\n}};\n\n\
             /** How gauges name each class (`FdClass::label`). */\n\
             export const CLASS_LABELS: Readonly<Record<FdClass, string>> = {{\n{}\n}};\n",
            kinds.join(", "),
            classes.join(", "),
            class_of.join("\n"),
            nouns.join("\n"),
            labels.join("\n"),
        )
    }
}
