//! Tauri's build step: embeds `tauri.conf.json`, checks the capabilities, and
//! generates an `allow-`/`deny-` permission for each of the app's own commands,
//! so `capabilities/default.json` grants the popover exactly these and nothing else.

/// Every command of `src/commands.rs` (the UI's contract).
const COMMANDS: &[&str] = &[
    "get_status",
    "get_tree",
    "plan_restart",
    "restart_target",
    "save_snapshot",
    "plan_cleanup",
    "clean_orphans",
    "pause_alerts",
    "mark_baseline",
    "get_settings",
    "save_settings",
    "set_launch_at_login",
    "reveal_config",
    "propose_watch",
    "locator_matches",
    "add_target",
    "save_target",
    "remove_target",
    "set_fd_limit",
    "get_tray_icon",
    "fit_popover",
    "close_popover",
    "quit",
];

fn main() {
    let attributes = tauri_build::Attributes::new()
        .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS));
    if let Err(error) = tauri_build::try_build(attributes) {
        eprintln!("tauri build step failed: {error:#}");
        std::process::exit(1);
    }
}
