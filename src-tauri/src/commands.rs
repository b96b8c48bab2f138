//! The commands the popover invokes (their names are the UI's contract). Each is
//! a thin wrapper over a plain function taking what it needs, so the logic is
//! tested without a webview; the wrappers only reach into Tauri state. Anything
//! that signals or waits runs on a blocking thread with its own `Probe`, never on
//! the async runtime that drives the engine and the IPC.

// Tauri hands commands their arguments (state, handles) by value.
#![allow(clippy::needless_pass_by_value)]

use crate::error::{AppError, ErrorKind};
use crate::notifications;
use crate::settings::{self, Settings};
use crate::state::AppState;
use leakwatch_core::Config;
use leakwatch_core::actions::kill::{self, Guard, KillReport, PlannedProcess};
use leakwatch_core::actions::restart::{self, RestartReport};
use leakwatch_core::config::{DEFAULT_GRACE, Restart};
use leakwatch_core::config_edit::{self, Locator, NewTarget};
use leakwatch_core::config_form::{self, TargetForm};
use leakwatch_core::diagnose::Mark;
use leakwatch_core::engine::Command;
use leakwatch_core::model::unix_millis;
use leakwatch_core::proposal;
use leakwatch_core::status::Status;
use leakwatch_core::store::{Snapshot, Store};
use leakwatch_core::tree::ProcessTree;
use leakwatch_probe::{Probe, ProcessId};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use tauri::{AppHandle, Runtime, State};

/// One row of a process tree (`get_tree`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct TreeRow {
    pub pid: u32,
    pub ppid: u32,
    /// Depth below the root (the root is 0).
    pub depth: u32,
    pub name: String,
    pub argv: Vec<String>,
    pub rss_bytes: Option<u64>,
    /// Open descriptors; `None` when not permitted.
    pub fds: Option<u64>,
}

/// What an action will do, shown before the user confirms it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ActionPlan {
    /// The plan in words, as the CLI prints it.
    pub text: String,
    /// The processes it would signal (empty for launchd/systemd restarts).
    pub processes: Vec<PlannedProcess>,
    /// A restart that starts a command and cannot tell whether it came back up
    /// (no `health`, no port): the dialog warns (issue 12).
    pub no_health_check: bool,
}

// ---------------------------------------------------------------------------------
// The logic, free of Tauri
// ---------------------------------------------------------------------------------

/// The tree below `pid`, with descriptor counts.
pub fn tree(probe: &mut Probe, pid: u32) -> Result<Vec<TreeRow>, AppError> {
    let table = probe.processes()?;
    let nodes = ProcessTree::new(&table)
        .subtree(pid)
        .ok_or_else(|| AppError::new(ErrorKind::NotFound, format!("no process {pid}")))?;
    Ok(nodes
        .iter()
        .map(|node| TreeRow {
            pid: node.process.id.pid,
            ppid: node.process.ppid,
            depth: u32::try_from(node.depth).unwrap_or(u32::MAX),
            name: node.process.name.clone(),
            argv: node.process.argv.to_vec(),
            rss_bytes: node.process.rss_bytes,
            fds: probe.fd_count(node.process.id.pid).ok().map(|n| n as u64),
        })
        .collect())
}

fn target<'a>(
    config: &'a Config,
    name: &str,
) -> Result<&'a leakwatch_core::config::Target, AppError> {
    config.target(name).ok_or_else(|| {
        AppError::new(ErrorKind::NotFound, format!("no target `{name}` in the configuration"))
    })
}

/// The restart plan of `name`: what would be stopped and started.
pub fn restart_plan(
    probe: &mut Probe,
    config: &Config,
    name: &str,
) -> Result<ActionPlan, AppError> {
    let target = target(config, name)?;
    let previous = restart::find_process(probe, target);
    let plan = match (&target.restart, previous.process()) {
        (Some(Restart::Command { grace, .. }), Some(id)) => {
            Some(kill::plan_ids(probe, &[id], *grace, &Guard::from_config(config))?)
        }
        _ => None,
    };
    Ok(ActionPlan {
        text: restart::describe(target, &previous, plan.as_ref()),
        processes: plan.map(|p| p.processes).unwrap_or_default(),
        no_health_check: restart::lacks_health_check(target),
    })
}

/// Restarts `name` now, saving a forensic snapshot to `store` first, with the
/// engine's `diagnosis` of it.
pub fn restart_now(
    probe: &mut Probe,
    config: &Config,
    store: Option<&Store>,
    name: &str,
    diagnosis: Option<&str>,
) -> Result<RestartReport, AppError> {
    let target = target(config, name)?;
    let mut save = |snapshot: Snapshot| {
        if let Some(store) = store
            && let Err(e) = store.record_snapshot(&snapshot)
        {
            tracing::warn!("forensic snapshot not saved: {e}");
        }
    };
    let (report, child) = restart::restart(
        probe,
        target,
        &Guard::from_config(config),
        "manual restart (Leakwatch app)",
        diagnosis,
        &mut save,
    )?;
    if let Some(mut child) = child {
        // Reap it when it exits, so a restarted server never lingers as a zombie.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
    }
    Ok(report)
}

/// Saves a forensic snapshot of `name`'s process to `store`, with the engine's
/// `diagnosis` of it.
pub fn snapshot(
    probe: &mut Probe,
    config: &Config,
    store: &Store,
    name: &str,
    diagnosis: Option<&str>,
) -> Result<(), AppError> {
    let target = target(config, name)?;
    let id = running(restart::find_process(probe, target), name)?;
    let reason = "snapshot requested in the app";
    let body = restart::forensic_snapshot(probe, id, reason, diagnosis).ok_or_else(|| {
        AppError::new(ErrorKind::NotFound, format!("{name} (pid {}) exited", id.pid))
    })?;
    store
        .record_snapshot(&Snapshot {
            at: unix_millis(SystemTime::now()),
            target: name.to_owned(),
            process: id,
            reason: reason.to_owned(),
            body,
        })
        .map_err(|e| AppError::new(ErrorKind::Io, e.to_string()))
}

/// The process a snapshot is taken of. A pidfile that could not be read in
/// time (a hung mount) leaves it unknown whether the target runs: said as
/// such, not as "not running", which would send the user looking elsewhere.
fn running(found: restart::Found, name: &str) -> Result<ProcessId, AppError> {
    match found {
        restart::Found::Running(id) => Ok(id),
        restart::Found::NotRunning => {
            Err(AppError::new(ErrorKind::NotFound, format!("{name} is not running")))
        }
        restart::Found::Unknown(why) => Err(AppError::new(
            ErrorKind::Probe,
            format!("{name}: cannot tell whether it is running: {why}"),
        )),
    }
}

/// The kill-tree plan for `roots` (pinned by identity).
pub fn cleanup_plan(
    probe: &mut Probe,
    config: &Config,
    roots: &[ProcessId],
) -> Result<kill::KillPlan, AppError> {
    if roots.is_empty() {
        return Err(AppError::new(ErrorKind::NotFound, "no orphan trees were chosen"));
    }
    // A protected tree is shown as left alone; the others are still cleaned up.
    Ok(kill::plan_trees(probe, roots, DEFAULT_GRACE, &Guard::from_config(config))?)
}

fn open_store(path: Option<&PathBuf>) -> Result<Store, AppError> {
    let path = path.ok_or_else(|| AppError::new(ErrorKind::Unavailable, "no history database"))?;
    Store::open(path)
        .map(|opened| opened.store)
        .map_err(|e| AppError::new(ErrorKind::Io, e.to_string()))
}

/// Runs `f` on a blocking thread with a fresh probe and the config in force:
/// the engine's, so actions work on the last good config while the file is
/// broken. Where that means reading the file, it is read on that thread, never
/// on the async worker (issue 13). No config in force (the file is broken and
/// no good one was read) fails with the config's error: an action never runs
/// without the user's `protect` list.
async fn with_config<T, F>(state: &AppState, f: F) -> Result<T, AppError>
where
    T: Send + 'static,
    F: FnOnce(&mut Probe, &Config, Option<&PathBuf>) -> Result<T, AppError> + Send + 'static,
{
    let config = state.config_in_force();
    let store = state.paths().store.clone();
    tauri::async_runtime::spawn_blocking(move || {
        let config = config.get()?;
        let mut probe = Probe::new()?;
        f(&mut probe, &config, store.as_ref())
    })
    .await?
}

/// Runs `f` on a blocking thread with a fresh probe, for what only reads
/// processes (a tree, Watch's proposal): it needs no config, and so answers
/// whatever the state of the file (issue 13).
async fn with_probe<T, F>(f: F) -> Result<T, AppError>
where
    T: Send + 'static,
    F: FnOnce(&mut Probe) -> Result<T, AppError> + Send + 'static,
{
    tauri::async_runtime::spawn_blocking(move || f(&mut Probe::new()?)).await?
}

/// Runs file work (reading or editing the config, the file manager) on a
/// blocking thread: a command that does IO on the main thread freezes the
/// whole app, and on an async worker it stalls the other commands and the
/// engine (issue 13).
async fn on_blocking<T, F>(f: F) -> Result<T, AppError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, AppError> + Send + 'static,
{
    tauri::async_runtime::spawn_blocking(f).await?
}

// ---------------------------------------------------------------------------------
// The commands
// ---------------------------------------------------------------------------------

/// The engine's latest status.
#[tauri::command]
pub fn get_status(state: State<'_, AppState>) -> Result<Status, AppError> {
    Ok(Status::clone(&state.status()))
}

/// The tray icon shown now (`ok`, `warning`, `critical`), or none yet.
#[tauri::command]
pub fn get_tray_icon<R: Runtime>(app: AppHandle<R>) -> Option<&'static str> {
    crate::tray::shown_icon(&app)
}

/// Fits the popover to its content's height (logical pixels) within the
/// screen; returns the height given.
#[tauri::command]
pub fn fit_popover<R: Runtime>(
    window: tauri::WebviewWindow<R>,
    height: f64,
) -> Result<f64, AppError> {
    crate::popover::fit(&window, height)
        .map_err(|e| AppError::new(ErrorKind::Unavailable, e.to_string()))
}

/// Closes the popover (Esc): its webview is destroyed, as when it loses focus.
#[tauri::command]
pub fn close_popover<R: Runtime>(window: tauri::WebviewWindow<R>) {
    crate::popover::close(&window);
}

/// Quits Leakwatch (⌘Q, Ctrl+Q, the popover's Quit), as the tray menu's Quit does.
#[tauri::command]
pub fn quit<R: Runtime>(app: tauri::AppHandle<R>) {
    app.exit(0);
}

/// A process and its descendants.
#[tauri::command]
pub async fn get_tree(pid: u32) -> Result<Vec<TreeRow>, AppError> {
    with_probe(move |probe| tree(probe, pid)).await
}

/// What `restart_target` would do.
#[tauri::command]
pub async fn plan_restart(
    state: State<'_, AppState>,
    target: String,
) -> Result<ActionPlan, AppError> {
    with_config(&state, move |probe, config, _| restart_plan(probe, config, &target)).await
}

/// Restarts a configured target.
#[tauri::command]
pub async fn restart_target(
    state: State<'_, AppState>,
    target: String,
) -> Result<RestartReport, AppError> {
    let name = target.clone();
    let diagnosis = state.status().diagnosis_of(&target);
    let result = with_config(&state, move |probe, config, store| {
        let store = store.and_then(|path| open_store(Some(path)).ok());
        restart_now(probe, config, store.as_ref(), &name, diagnosis.as_deref())
    })
    .await;
    state.notify_action(notifications::restart_outcome(&target, &result));
    // Poll now rather than on the beat, so the popover shows the new pid at once.
    state.send(Command::Rescan);
    result
}

/// Saves a forensic snapshot of a target's process to the history.
#[tauri::command]
pub async fn save_snapshot(state: State<'_, AppState>, target: String) -> Result<(), AppError> {
    let diagnosis = state.status().diagnosis_of(&target);
    with_config(&state, move |probe, config, store| {
        snapshot(probe, config, &open_store(store)?, &target, diagnosis.as_deref())
    })
    .await
}

/// What `clean_orphans` would do.
#[tauri::command]
pub async fn plan_cleanup(
    state: State<'_, AppState>,
    roots: Vec<ProcessId>,
) -> Result<ActionPlan, AppError> {
    with_config(&state, move |probe, config, _| {
        let plan = cleanup_plan(probe, config, &roots)?;
        Ok(ActionPlan { text: plan.describe(), processes: plan.processes, no_health_check: false })
    })
    .await
}

/// Stops orphan trees with the kill-tree escalation.
#[tauri::command]
pub async fn clean_orphans(
    state: State<'_, AppState>,
    roots: Vec<ProcessId>,
) -> Result<KillReport, AppError> {
    let result = with_config(&state, move |probe, config, _| {
        let plan = cleanup_plan(probe, config, &roots)?;
        let report = kill::execute(probe, &plan, &Guard::from_config(config));
        Ok((plan, report))
    })
    .await;
    state.notify_action(notifications::cleanup_outcome(&result));
    // Rescan now rather than at the next full scan, so the list updates.
    state.send(Command::Rescan);
    result.map(|(_, report)| report)
}

/// Marks a baseline on a target's processes in the running engine (this app's,
/// or the daemon's when that one owns the data directory): `leakwatch explain
/// TARGET` then counts survivors from this moment.
#[tauri::command]
pub async fn mark_baseline(
    state: State<'_, AppState>,
    target: String,
) -> Result<Vec<Mark>, AppError> {
    // The engine owning the history's folder serves the API there.
    let dir = state.paths().store.as_ref().and_then(|store| store.parent()).ok_or_else(|| {
        AppError::new(ErrorKind::Unavailable, "no data directory, so no engine keeps a baseline")
    })?;
    mark_baseline_at(&leakwatch_core::api::socket_path(dir), &target).await
}

/// [`mark_baseline`] against the engine serving `socket`.
pub async fn mark_baseline_at(
    socket: &std::path::Path,
    target: &str,
) -> Result<Vec<Mark>, AppError> {
    match leakwatch_core::api::mark_baseline(socket, target).await {
        Ok(marks) => Ok(marks),
        Err(e @ leakwatch_core::api::ClientError::NoEngine { .. }) => Err(AppError::new(
            ErrorKind::Unavailable,
            format!("{e}: the engine that keeps baselines is not running"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Silences notifications for `minutes`; `None` resumes them.
#[tauri::command]
pub fn pause_alerts(state: State<'_, AppState>, minutes: Option<u32>) -> Result<(), AppError> {
    state.send(Command::PauseAlerts(minutes.map(|m| Duration::from_secs(u64::from(m) * 60))));
    Ok(())
}

/// The settings screen's values.
#[tauri::command]
pub async fn get_settings<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
) -> Result<Settings, AppError> {
    let path = state.paths().config_file().map(std::path::Path::to_path_buf);
    on_blocking(move || settings::read(path.as_deref(), crate::autostart::is_enabled(&app))).await
}

/// Saves the settings into the config file (validated first), reloads the engine
/// and applies launch at login. The autostart calls write a LaunchAgent or an
/// XDG entry: file work, on the blocking thread too (issue 13).
#[tauri::command]
pub async fn save_settings<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    settings: Settings,
) -> Result<Settings, AppError> {
    let path = config_file(&state)?;
    let file = path.clone();
    let saved = on_blocking(move || settings::save(&file, &settings).map(|()| settings)).await?;
    state.send(Command::Reload);
    let handle = app.clone();
    on_blocking(move || {
        if saved.launch_at_login != crate::autostart::is_enabled(&handle) {
            crate::autostart::set(&handle, saved.launch_at_login)?;
        }
        Ok(())
    })
    .await?;
    crate::tray::refresh(&app);
    on_blocking(move || settings::read(Some(&path), crate::autostart::is_enabled(&app))).await
}

/// Turns launch at login on or off; returns the state now in force. Async, on
/// a blocking thread: a sync command runs on the main thread, and the
/// autostart entry is a file to write (issue 13).
#[tauri::command]
pub async fn set_launch_at_login<R: Runtime>(
    app: AppHandle<R>,
    enabled: bool,
) -> Result<bool, AppError> {
    on_blocking(move || {
        crate::autostart::set(&app, enabled)?;
        crate::tray::refresh(&app);
        Ok(crate::autostart::is_enabled(&app))
    })
    .await
}

/// What Watch proposes for the process `pid` of an automatic-mode row: a name,
/// the locator that will find it after a restart, and what that matches now.
#[tauri::command]
pub async fn propose_watch(pid: u32) -> Result<proposal::Proposal, AppError> {
    with_probe(move |probe| {
        let table = probe.processes()?;
        let process = probe.process(pid)?;
        Ok(proposal::propose_locator(probe, &table, &process))
    })
    .await
}

/// The pids `locator` matches now, as the Watch dialog's locator is edited.
#[tauri::command]
pub async fn locator_matches(locator: Locator) -> Result<Vec<u32>, AppError> {
    with_probe(move |probe| {
        let table = probe.processes()?;
        Ok(proposal::matches_now(probe, &table, &locator))
    })
    .await
}

/// The config file to edit, or why there is none.
fn config_file(state: &AppState) -> Result<PathBuf, AppError> {
    state.paths().config_file().map(std::path::Path::to_path_buf).ok_or_else(|| {
        AppError::new(
            ErrorKind::Unavailable,
            "no configuration directory: set LEAKWATCH_CONFIG or HOME",
        )
    })
}

/// Adds a `[[watch]]` target (Watch's Save, Settings' Add), keeping the file's
/// comments; the engine reloads and the row becomes the target.
#[tauri::command]
pub async fn add_target<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    name: String,
    locator: Locator,
    fd_limit: Option<u64>,
) -> Result<(), AppError> {
    let path = config_file(&state)?;
    let target = NewTarget { name, locator, fd_limit };
    on_blocking(move || {
        Ok(config_edit::edit_file(&path, |text| config_edit::add_target(text, &target, &path))?)
    })
    .await?;
    state.send(Command::Reload);
    crate::tray::refresh(&app);
    Ok(())
}

/// Settings' target form: saves `target` over the target called `previous`
/// (or, with `None`, adds it), keeping the file's comments and layout; a
/// refused value comes back with the form field it concerns. The engine
/// reloads; returns the settings as now written.
#[tauri::command]
pub async fn save_target<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    previous: Option<String>,
    target: TargetForm,
) -> Result<Settings, AppError> {
    let path = config_file(&state)?;
    let file = path.clone();
    on_blocking(move || Ok(config_form::save_form(&file, previous.as_deref(), &target)?)).await?;
    state.send(Command::Reload);
    crate::tray::refresh(&app);
    on_blocking(move || settings::read(Some(&path), crate::autostart::is_enabled(&app))).await
}

/// Removes the `[[watch]]` target `name`.
#[tauri::command]
pub async fn remove_target<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    name: String,
) -> Result<(), AppError> {
    let path = config_file(&state)?;
    on_blocking(move || {
        Ok(config_edit::edit_file(&path, |text| config_edit::remove_target(text, &name, &path))?)
    })
    .await?;
    state.send(Command::Reload);
    crate::tray::refresh(&app);
    Ok(())
}

/// "Set limit…": writes the target's `fd_limit` (`None` removes it).
#[tauri::command]
pub async fn set_fd_limit(
    state: State<'_, AppState>,
    target: String,
    limit: Option<u64>,
) -> Result<(), AppError> {
    let path = config_file(&state)?;
    on_blocking(move || {
        Ok(config_edit::edit_file(&path, |text| {
            config_edit::set_fd_limit(text, &target, limit, &path)
        })?)
    })
    .await?;
    state.send(Command::Reload);
    Ok(())
}

/// Shows the config file in the file manager.
#[tauri::command]
pub async fn reveal_config(state: State<'_, AppState>) -> Result<(), AppError> {
    let path = state
        .paths()
        .config_file()
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| AppError::new(ErrorKind::Unavailable, "no configuration path"))?;
    on_blocking(move || reveal(&path)).await
}

/// `open -R FILE` on macOS; the folder with `xdg-open` elsewhere.
fn reveal(path: &std::path::Path) -> Result<(), AppError> {
    let mut cmd = if cfg!(target_os = "macos") && path.exists() {
        let mut cmd = std::process::Command::new("open");
        cmd.arg("-R").arg(path);
        cmd
    } else {
        let dir = path.parent().unwrap_or(path).to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let mut cmd =
            std::process::Command::new(if cfg!(target_os = "macos") { "open" } else { "xdg-open" });
        cmd.arg(dir);
        cmd
    };
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| {
            AppError::new(ErrorKind::Unavailable, format!("could not open the file manager: {e}"))
        })?;
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use leakwatch_probe::StartTime;

    /// Regression: a snapshot of a target whose pidfile read timed out said
    /// "{name} is not running"; it says the state is unknown, and why.
    #[test]
    fn a_snapshot_of_a_target_in_an_unknown_state_says_so() {
        let id = ProcessId { pid: 42, start_time: StartTime(7) };
        assert_eq!(running(restart::Found::Running(id), "web").ok(), Some(id));
        let gone = running(restart::Found::NotRunning, "web").unwrap_err();
        assert_eq!((gone.kind, gone.message.as_str()), (ErrorKind::NotFound, "web is not running"));
        let why = "its pidfile /mnt/web.pid could not be read in time; a hung mount?";
        let unknown = running(restart::Found::Unknown(why.to_owned()), "web").unwrap_err();
        assert_eq!(unknown.kind, ErrorKind::Probe);
        assert!(unknown.message.contains("cannot tell whether it is running"), "{unknown}");
        assert!(unknown.message.contains(why), "{unknown}");
    }
}
