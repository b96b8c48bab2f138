//! The commands as the webview calls them: through Tauri's IPC on the mock
//! runtime, with a real engine watching a real `lw-helper` process, so the JSON
//! the UI receives (names, shapes, error kinds) is what is tested.

use leakwatch_app::state::{AppState, Paths};
use leakwatch_core::ConfigSource;
use leakwatch_core::engine::{Engine, EngineError, EngineHandle, EngineOptions};
use leakwatch_core::notifier::{CapturingNotifier, Notifier, NullNotifier};
use leakwatch_core::owner::Face;
use leakwatch_test_helper::{Helper, wait_until};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{INVOKE_KEY, MockRuntime, mock_builder};
use tauri::webview::InvokeRequest;
use tauri::{App, Manager, WebviewWindow, WebviewWindowBuilder};

struct Fixture {
    _app: App<MockRuntime>,
    webview: WebviewWindow<MockRuntime>,
    dir: tempfile::TempDir,
}

fn start(config: &str) -> Fixture {
    start_with(config, Arc::new(NullNotifier))
}

fn start_with(config: &str, notifier: Arc<dyn Notifier>) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config).expect("write config");
    let paths = Paths {
        config: ConfigSource::Default(Some(config_path)),
        store: Some(dir.path().join("history.sqlite3")),
    };
    start_in(dir, paths, notifier)
}

/// The app started with `paths` in `dir`, whatever is (or is not) there.
fn start_in(dir: tempfile::TempDir, paths: Paths, notifier: Arc<dyn Notifier>) -> Fixture {
    let state = tauri::async_runtime::block_on(async move { AppState::start(paths, notifier) });
    let app = mock_builder()
        .manage(state)
        .invoke_handler(leakwatch_app::handler())
        // The real context: the capabilities in force are the shipped ones.
        .build(tauri::generate_context!())
        .expect("mock app");
    let webview =
        WebviewWindowBuilder::new(&app, "popover", Default::default()).build().expect("webview");
    Fixture { _app: app, webview, dir }
}

fn invoke(f: &Fixture, cmd: &str, args: Value) -> Result<Value, Value> {
    invoke_on(&f.webview, cmd, args)
}

/// [`invoke`] from any thread.
fn invoke_on(webview: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
    let request = InvokeRequest {
        cmd: cmd.to_owned(),
        callback: CallbackFn(0),
        error: CallbackFn(1),
        url: "tauri://localhost".parse().expect("url"),
        body: InvokeBody::Json(args),
        headers: Default::default(),
        invoke_key: INVOKE_KEY.to_owned(),
    };
    tauri::test::get_ipc_response(webview, request)
        .map(|body| body.deserialize::<Value>().expect("JSON response"))
}

fn ok(f: &Fixture, cmd: &str, args: Value) -> Value {
    invoke(f, cmd, args).unwrap_or_else(|e| panic!("{cmd} failed: {e}"))
}

fn status_until(f: &Fixture, what: &str, mut check: impl FnMut(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let found = wait_until(Duration::from_secs(20), || {
        last = ok(f, "get_status", json!({}));
        check(&last)
    });
    assert!(found, "status never showed {what}: {last:#}");
    last
}

fn helper_config(pidfile: &std::path::Path) -> String {
    format!(
        "[defaults]\ninterval = \"1s\"\n\n[[watch]]\nname = \"helper\"\npidfile = \"{}\"\n",
        pidfile.display()
    )
}

/// An empty home directory: no config, no data directory.
fn empty_home() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join(".config/leakwatch/config.toml");
    let store = dir.path().join(".local/share/leakwatch/history.sqlite3");
    (dir, config, store)
}

#[test]
fn an_empty_home_starts_the_app_in_automatic_mode() {
    let (dir, config, store) = empty_home();
    let paths = Paths { config: ConfigSource::Default(Some(config.clone())), store: Some(store) };
    let f = start_in(dir, paths, Arc::new(NullNotifier));
    let status = status_until(&f, "a first tick", |s| s["tick"].as_u64() > Some(0));
    assert_eq!(status["config"]["automatic"], true, "{status:#}");
    assert_eq!(status["config"]["error"], Value::Null);
    assert_eq!(status["problems"], json!([]));
    let rows = status["targets"].as_array().expect("rows");
    assert!(rows.iter().all(|r| r["target"].is_null() && r["restartable"] == false), "{rows:?}");
    // The settings screen opens too, on the file a save will create.
    let settings = ok(&f, "get_settings", json!({}));
    assert_eq!(settings["config_path"], config.display().to_string());
    assert!(!config.exists(), "nothing written until the user saves");
}

#[test]
fn watch_on_an_automatic_row_writes_the_target_and_the_row_becomes_it() {
    let (dir, config, store) = empty_home();
    let helper = Helper::spawn_with(&["--exec", "open epoll 5"]).expect("lw-helper");
    let pid = helper.pid();
    let paths = Paths { config: ConfigSource::Default(Some(config.clone())), store: Some(store) };
    let f = start_in(dir, paths, Arc::new(NullNotifier));
    status_until(&f, "a first tick", |s| s["tick"].as_u64() > Some(0));
    // The user keeps notes in the file before watching anything.
    std::fs::create_dir_all(config.parent().expect("dir")).expect("mkdir");
    std::fs::write(&config, "# my notes: keep them\n").expect("write");

    let proposal = ok(&f, "propose_watch", json!({ "pid": pid }));
    assert_eq!(proposal["name"], "lw-helper", "{proposal}");
    assert_eq!(proposal["locator"]["key"], "argv", "{proposal}");
    assert!(proposal["matches"].as_array().is_some_and(|m| m.contains(&json!(pid))), "{proposal}");
    // Narrowed to this helper only, as a user would edit it.
    let locator = json!({ "key": "argv", "value": format!("^{}", proposal["locator"]["value"].as_str().unwrap_or("").trim_start_matches('^')) });
    let matches = ok(&f, "locator_matches", json!({ "locator": locator }));
    assert!(matches.as_array().is_some_and(|m| m.contains(&json!(pid))), "{matches}");

    ok(&f, "add_target", json!({ "name": "agent", "locator": locator, "fdLimit": 4096 }));
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(text.starts_with("# my notes: keep them\n"), "{text}");
    assert!(text.contains("name = \"agent\"") && text.contains("fd_limit = 4096"), "{text}");
    let status = status_until(&f, "the row as the target", |s| {
        s["targets"].as_array().is_some_and(|rows| {
            rows.iter().any(|r| r["target"] == "agent" && r["process"]["pid"] == pid)
        })
    });
    assert_eq!(status["config"]["automatic"], false);

    let dup =
        invoke(&f, "add_target", json!({ "name": "agent", "locator": locator, "fdLimit": null }))
            .expect_err("a duplicate");
    assert_eq!(dup["kind"], "invalid_settings", "{dup}");
    ok(&f, "set_fd_limit", json!({ "target": "agent", "limit": 8192 }));
    assert!(std::fs::read_to_string(&config).expect("config").contains("fd_limit = 8192"));
    ok(&f, "remove_target", json!({ "name": "agent" }));
    let text = std::fs::read_to_string(&config).expect("config");
    assert_eq!(text.trim_end(), "# my notes: keep them");
    status_until(&f, "automatic mode again", |s| s["config"]["automatic"] == true);
}

#[test]
fn settings_adds_edits_and_removes_a_target_with_errors_on_the_field() {
    let (dir, config, store) = empty_home();
    std::fs::create_dir_all(config.parent().expect("dir")).expect("mkdir");
    std::fs::write(&config, "# my notes: keep them\n").expect("write");
    let paths = Paths { config: ConfigSource::Default(Some(config.clone())), store: Some(store) };
    let f = start_in(dir, paths, Arc::new(NullNotifier));
    status_until(&f, "a first tick", |s| s["tick"].as_u64() > Some(0));

    let mut form = json!({
        "name": "web", "locator": "port", "locator_value": "abc", "fd_limit": "",
        "fds_warn": "", "fds_critical": "", "restart": "none", "restart_command": "",
        "restart_cwd": "", "restart_health": "", "restart_service": "",
    });
    let refused = invoke(&f, "save_target", json!({ "previous": null, "target": form }))
        .expect_err("a port that is not a number");
    assert_eq!(refused["kind"], "invalid_settings", "{refused}");
    assert_eq!(refused["field"], "locator", "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("TCP port") && !message.contains("config.toml"), "{message}");
    assert_eq!(std::fs::read_to_string(&config).expect("config"), "# my notes: keep them\n");

    form["locator_value"] = json!("8787");
    form["fd_limit"] = json!("4096");
    form["restart"] = json!("systemd");
    form["restart_service"] = json!("web.service");
    let settings = ok(&f, "save_target", json!({ "previous": null, "target": form }));
    assert_eq!(settings["targets"][0]["name"], "web", "{settings}");
    assert_eq!(settings["targets"][0]["restart_service"], "web.service", "{settings}");
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(text.starts_with("# my notes: keep them\n"), "{text}");
    status_until(&f, "the new target's row", |s| {
        s["targets"].as_array().is_some_and(|rows| rows.iter().any(|r| r["target"] == "web"))
    });

    form["fds_warn"] = json!("lots");
    let refused = invoke(&f, "save_target", json!({ "previous": "web", "target": form }))
        .expect_err("a threshold that is not one");
    assert_eq!(refused["field"], "fds_warn", "{refused}");
    form["fds_warn"] = json!("500");
    ok(&f, "save_target", json!({ "previous": "web", "target": form }));
    assert!(std::fs::read_to_string(&config).expect("config").contains("warn = 500"));

    ok(&f, "remove_target", json!({ "name": "web" }));
    let text = std::fs::read_to_string(&config).expect("config");
    assert_eq!(text.trim_end(), "# my notes: keep them");
    status_until(&f, "automatic mode again", |s| s["config"]["automatic"] == true);
}

#[test]
fn a_broken_config_shows_its_error_and_the_app_keeps_running() {
    let (dir, config, store) = empty_home();
    std::fs::create_dir_all(config.parent().expect("dir")).expect("mkdir");
    std::fs::write(&config, "# mine\n[[watch]]\nname = \"web\"\nport = \"x\"\n").expect("write");
    let paths = Paths { config: ConfigSource::Default(Some(config)), store: Some(store) };
    let f = start_in(dir, paths, Arc::new(NullNotifier));
    let status = status_until(&f, "a first tick", |s| s["tick"].as_u64() > Some(0));
    let error = status["config"]["error"].as_str().expect("error shown");
    assert!(error.contains("config.toml:4:"), "{error}");
    assert!(error.contains("watch[0].port"), "{error}");
    assert_eq!(status["config"]["automatic"], true, "built-in defaults in force");
    // Still answering: it did not exit.
    let later = status_until(&f, "more ticks", |s| s["tick"].as_u64() > Some(1));
    assert!(later["config"]["error"].is_string());
}

#[test]
fn a_missing_named_config_and_an_unusable_data_dir_leave_the_app_running() {
    let (dir, _, store) = empty_home();
    // The data directory's place is taken by a file.
    let data = store.parent().expect("data dir").to_path_buf();
    std::fs::create_dir_all(data.parent().expect("share")).expect("mkdir");
    std::fs::write(&data, "not a directory").expect("write");
    let named = dir.path().join("typo.toml");
    let paths = Paths { config: ConfigSource::Named(named), store: Some(store) };
    let f = start_in(dir, paths, Arc::new(NullNotifier));
    let status = status_until(&f, "a first tick", |s| s["tick"].as_u64() > Some(0));
    assert!(
        status["config"]["error"].as_str().is_some_and(|e| e.contains("typo.toml")),
        "{status:#}"
    );
    assert_eq!(status["problems"][0]["what"], "history", "{status:#}");
}

#[test]
fn status_tree_plans_and_cleanup_through_ipc() {
    let mut helper = Helper::spawn_with(&["--exec", "open epoll 7"]).expect("lw-helper");
    let pid = helper.pid();
    let pidfile = std::env::temp_dir().join(format!("leakwatch-app-test-{pid}.pid"));
    std::fs::write(&pidfile, pid.to_string()).expect("pidfile");
    let f = start(&helper_config(&pidfile));

    // The status, as the UI gets it: the target with its epolls.
    let status = status_until(&f, "the helper's epolls", |s| {
        s["targets"][0]["sample"]["kinds"]["epoll"].as_u64() == Some(7)
    });
    let target = &status["targets"][0];
    assert_eq!(target["name"], "helper");
    assert_eq!(target["target"], "helper");
    assert_eq!(target["instance"], Value::Null, "the target's only row");
    assert_eq!(target["restartable"], false, "no [watch.restart]");
    assert!(target["restart_unavailable"].as_str().is_some_and(|r| r.contains("[watch.restart]")));
    assert_eq!(target["top_kind"]["kind"], "epoll", "{target}");
    assert_eq!(target["limit_unknown"], false, "Linux reads /proc/PID/limits");
    assert_eq!(target["state"], "up");
    assert_eq!(target["process"]["pid"], pid);
    let start_time = target["process"]["start_time"].clone();

    // The tree below it.
    helper.ok("spawn 2");
    let rows = ok(&f, "get_tree", json!({ "pid": pid }));
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows[0]["pid"], pid);
    assert_eq!(rows[0]["depth"], 0);
    assert!(rows[0]["fds"].as_u64().unwrap_or(0) >= 7, "{rows:?}");
    assert!(rows.len() >= 3, "children listed: {rows:?}");

    // Plans: a target without restart says so; an unknown one is not_found.
    let plan = ok(&f, "plan_restart", json!({ "target": "helper" }));
    assert!(plan["text"].as_str().unwrap_or("").contains("no restart configured"), "{plan}");
    let err = invoke(&f, "plan_restart", json!({ "target": "nope" })).expect_err("unknown");
    assert_eq!(err["kind"], "not_found", "{err}");

    // Clean-up of the helper's tree, pinned by identity.
    let roots = json!({ "roots": [{ "pid": pid, "start_time": start_time }] });
    let plan = ok(&f, "plan_cleanup", roots.clone());
    assert!(plan["processes"].as_array().is_some_and(|p| p.len() >= 3), "{plan}");
    assert!(plan["text"].as_str().is_some_and(|t| !t.is_empty()));
    let report = ok(&f, "clean_orphans", roots);
    assert!(
        helper.wait_timeout(Duration::from_secs(10)).is_some(),
        "helper still running: {report}"
    );
    let outcomes = report["processes"].as_array().expect("outcomes");
    assert!(
        outcomes.iter().any(|p| p["pid"] == pid && p["outcome"] == "exited_after_term"),
        "{report}"
    );
    assert!(report["elapsed_seconds"].is_number());
    let _ = std::fs::remove_file(&pidfile);

    // A stale identity is reported, not signalled.
    let report =
        ok(&f, "clean_orphans", json!({ "roots": [{ "pid": pid, "start_time": start_time }] }));
    assert_eq!(report["processes"][0]["outcome"], "already_gone", "{report}");
}

#[test]
fn pause_and_settings() {
    let pidfile = std::env::temp_dir().join("leakwatch-app-test-none.pid");
    let f = start(&format!(
        "# my comment\n{}\n[watch.rules]\nkqueue = {{ warn = 500 }}\n",
        helper_config(&pidfile)
    ));

    ok(&f, "pause_alerts", json!({ "minutes": 60 }));
    status_until(&f, "paused alerts", |s| s["alerts_paused_until"].is_u64());
    ok(&f, "pause_alerts", json!({ "minutes": null }));
    status_until(&f, "resumed alerts", |s| s["alerts_paused_until"].is_null());

    let settings = ok(&f, "get_settings", json!({}));
    assert_eq!(settings["interval_seconds"], 1);
    assert_eq!(settings["notifications"], true);
    assert_eq!(settings["launch_at_login"], false);
    assert_eq!(settings["targets"][0]["name"], "helper");
    assert_eq!(settings["targets"][0]["fds_warn"], "");

    let mut bad = settings["targets"][0].clone();
    bad["fds_warn"] = json!("lots");
    let target = json!({ "previous": "helper", "target": bad });
    let err = invoke(&f, "save_target", target).expect_err("refused");
    assert_eq!(err["kind"], "invalid_settings", "{err}");
    assert_eq!(err["field"], "fds_warn", "{err}");
    let path = f.dir.path().join("config.toml");
    assert!(!std::fs::read_to_string(&path).expect("config").contains("lots"));

    let mut good = settings["targets"][0].clone();
    good["fds_warn"] = json!("80%");
    let saved = ok(&f, "save_target", json!({ "previous": "helper", "target": good }));
    assert_eq!(saved["targets"][0]["fds_warn"], "80%");
    let mut general = saved;
    general["interval_seconds"] = json!(3);
    let saved = ok(&f, "save_settings", json!({ "settings": general }));
    assert_eq!(saved["interval_seconds"], 3);
    assert_eq!(saved["targets"][0]["fds_warn"], "80%");
    let text = std::fs::read_to_string(&path).expect("config");
    assert!(text.contains("# my comment") && text.contains("kqueue = { warn = 500 }"), "{text}");
    // The engine reloads it.
    status_until(&f, "the reloaded config", |s| {
        s["config"]["error"].is_null() && s["tick"].as_u64() > Some(0)
    });
    assert!(f.webview.app_handle().try_state::<AppState>().is_some());
}

#[test]
fn actions_notify_their_outcome() {
    let mut helper = Helper::spawn_with(&["--exec", "open pipe 3"]).expect("lw-helper");
    let pid = helper.pid();
    helper.ok("spawn 1");
    let pidfile = std::env::temp_dir().join(format!("leakwatch-app-notify-{pid}.pid"));
    std::fs::write(&pidfile, pid.to_string()).expect("pidfile");
    let captured = Arc::new(CapturingNotifier::default());
    let f = start_with(&helper_config(&pidfile), captured.clone());
    let status = status_until(&f, "the helper", |s| s["targets"][0]["process"]["pid"] == pid);
    let start_time = status["targets"][0]["process"]["start_time"].clone();
    let action = |title: &str| {
        let title = title.to_owned();
        let found = wait_until(Duration::from_secs(10), || {
            captured.sent().iter().any(|n| n.title.starts_with(&title))
        });
        assert!(found, "no notification `{title}…`: {:#?}", captured.sent());
        captured.sent().into_iter().find(|n| n.title.starts_with(&title)).expect("found")
    };

    // A failed restart says why, about that target.
    let err = invoke(&f, "restart_target", json!({ "target": "helper" })).expect_err("no restart");
    let failed = action("helper: restart failed");
    assert_eq!(failed.body, err["message"].as_str().expect("message"), "{err}");
    assert_eq!(failed.subject, Some(leakwatch_core::model::Subject::target("helper")));

    // A clean-up counts what it stopped and the memory freed.
    ok(&f, "clean_orphans", json!({ "roots": [{ "pid": pid, "start_time": start_time }] }));
    assert!(helper.wait_timeout(Duration::from_secs(10)).is_some(), "helper still running");
    let done = action("Cleaned up 2 orphans, ");
    assert!(done.title.contains("freed") && !done.title.contains("survived"), "{done:?}");
    // About the orphans: a click opens the orphan list (issue 13).
    assert_eq!(done.subject, Some(leakwatch_core::model::Subject::Orphans));
    let _ = std::fs::remove_file(&pidfile);
}

#[test]
fn action_outcomes_respect_notifications_off() {
    let pidfile = std::env::temp_dir().join("leakwatch-app-test-quiet.pid");
    let captured = Arc::new(CapturingNotifier::default());
    let config = format!("{}\n[notify]\nenabled = false\n", helper_config(&pidfile));
    let f = start_with(&config, captured.clone());
    let _ = invoke(&f, "restart_target", json!({ "target": "helper" })).expect_err("no restart");
    // A sent notification would arrive within this (the same test with
    // notifications on sees it in milliseconds).
    std::thread::sleep(Duration::from_secs(1));
    assert!(captured.sent().is_empty(), "{:#?}", captured.sent());
}

#[test]
fn mark_baseline_through_ipc_keeps_the_mark_in_the_engine() {
    let mut helper = Helper::spawn_with(&["--exec", "open epoll 3"]).expect("lw-helper");
    let pid = helper.pid();
    let pidfile = std::env::temp_dir().join(format!("leakwatch-app-mark-{pid}.pid"));
    std::fs::write(&pidfile, pid.to_string()).expect("pidfile");
    let f = start(&helper_config(&pidfile));
    status_until(&f, "the helper up", |s| s["targets"][0]["state"] == "up");

    let marks = ok(&f, "mark_baseline", json!({ "target": "helper" }));
    assert_eq!(marks[0]["process"]["pid"], pid, "{marks}");
    assert_eq!(marks[0]["target"], "helper");
    assert!(marks[0]["descriptors"].as_u64().is_some_and(|n| n >= 3), "{marks}");
    let err = invoke(&f, "mark_baseline", json!({ "target": "nope" })).expect_err("unknown");
    assert_eq!(err["kind"], "not_found", "{err}");
    assert!(err["message"].as_str().is_some_and(|m| m.contains("nope")), "{err}");

    // The engine keeps it: what opens now survives since the mark, the epolls do not.
    helper.ok("open eventfd 2");
    let socket = leakwatch_core::api::socket_path(f.dir.path());
    let since = tauri::async_runtime::block_on(leakwatch_core::api::since_mark(&socket, "helper"))
        .expect("since the mark");
    assert_eq!(since[0].survivors.kind(leakwatch_probe::FdKind::Eventfd), 2, "{since:?}");
    assert_eq!(since[0].survivors.kind(leakwatch_probe::FdKind::Epoll), 0, "{since:?}");
    let _ = std::fs::remove_file(&pidfile);
}

/// Issue 13: every action re-read and re-parsed the config file, so once the
/// file was broken (a half-saved edit) they all failed with its error, although
/// the engine kept running on the last good config. They now use the config
/// the engine has in force: restart plans, snapshots and clean-ups go on working.
#[test]
fn actions_work_on_the_last_good_config_while_the_file_is_broken() {
    let mut helper = Helper::spawn_with(&["--exec", "open epoll 3"]).expect("lw-helper");
    let pid = helper.pid();
    let pidfile = std::env::temp_dir().join(format!("leakwatch-app-broken-{pid}.pid"));
    std::fs::write(&pidfile, pid.to_string()).expect("pidfile");
    let config = format!(
        "{}\n[watch.restart]\ncommand = [\"true\"]\nhealth = \"tcp:127.0.0.1:1\"\n",
        helper_config(&pidfile)
    );
    let f = start(&config);
    let status = status_until(&f, "the helper", |s| s["targets"][0]["process"]["pid"] == pid);
    let start_time = status["targets"][0]["process"]["start_time"].clone();
    let before = ok(&f, "plan_restart", json!({ "target": "helper" }));

    std::fs::write(f.dir.path().join("config.toml"), "[[watch]\nname = ").expect("break it");
    let status = status_until(&f, "the broken file", |s| s["config"]["error"].is_string());
    assert!(
        status["config"]["error"].as_str().is_some_and(|e| e.contains("config.toml:1")),
        "{status:#}"
    );

    let plan = ok(&f, "plan_restart", json!({ "target": "helper" }));
    assert_eq!(plan["text"], before["text"], "the same plan as before the file broke");
    assert!(
        plan["processes"].as_array().is_some_and(|p| p.iter().any(|p| p["pid"] == pid)),
        "{plan}"
    );
    ok(&f, "save_snapshot", json!({ "target": "helper" }));
    let roots = json!({ "roots": [{ "pid": pid, "start_time": start_time }] });
    ok(&f, "plan_cleanup", roots.clone());
    let report = ok(&f, "clean_orphans", roots);
    assert!(
        helper.wait_timeout(Duration::from_secs(10)).is_some(),
        "helper still running: {report}"
    );
    let _ = std::fs::remove_file(&pidfile);
}

/// The config file and history an app and a daemon share in `dir`.
fn shared_paths(dir: &std::path::Path) -> Paths {
    Paths {
        config: ConfigSource::Default(Some(dir.join("config.toml"))),
        store: Some(dir.join("data/history.sqlite3")),
    }
}

/// A daemon's engine in this process, owning the data directory of `paths`
/// (so an app started on them attaches to it), opened by `open`.
fn start_daemon(
    paths: &Paths,
    interval: Option<Duration>,
    open: fn(EngineOptions, Face) -> Result<Engine, EngineError>,
) -> EngineHandle {
    let options = EngineOptions {
        config: paths.config.clone(),
        store_path: paths.store.clone(),
        notifier: Arc::new(NullNotifier),
        interval,
    };
    tauri::async_runtime::block_on(async move {
        open(options, leakwatch_core::owner::Face::Daemon)
            .map(leakwatch_core::engine::Engine::spawn)
    })
    .expect("the daemon's engine")
}

/// Issue 13: an app attached to the daemon (which owns the data directory) read
/// the config file for its actions, so one started while the file was broken
/// had no config to act on, and every action failed with the file's error,
/// although the daemon ran on its last good config. It now acts on the config
/// the daemon has in force, served by the daemon's local API.
#[test]
fn an_app_attached_to_the_daemon_acts_on_the_daemons_config_while_the_file_is_broken() {
    let helper = Helper::spawn_with(&["--exec", "open epoll 3"]).expect("lw-helper");
    let pid = helper.pid();
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("helper.pid");
    std::fs::write(&pidfile, pid.to_string()).expect("pidfile");
    let config_path = dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        format!("{}\n[watch.restart]\ncommand = [\"true\"]\n", helper_config(&pidfile)),
    )
    .expect("config");
    let paths = shared_paths(dir.path());
    let daemon = start_daemon(&paths, None, Engine::new_as);
    let mut daemon_status = daemon.status();
    let ticked = wait_until(Duration::from_secs(20), || {
        daemon_status.borrow_and_update().targets.iter().any(|t| t.process.is_some())
    });
    assert!(ticked, "the daemon never saw the helper: {:#?}", daemon_status.borrow());

    // A half-saved edit, and then the app starts (at login, say).
    std::fs::write(&config_path, "[[watch]\nname = ").expect("break it");
    let f = start_in(dir, paths, Arc::new(NullNotifier));
    status_until(&f, "the daemon's engine", |s| s["engine"]["face"] == "daemon");
    let mut plan = invoke(&f, "plan_restart", json!({ "target": "helper" }));
    // The daemon's config reaches the app with its first stream line, which
    // may trail the attachment by a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while plan.is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        plan = invoke(&f, "plan_restart", json!({ "target": "helper" }));
    }
    let plan = plan.expect("a plan on the daemon's config in force");
    assert!(plan["text"].as_str().is_some_and(|t| t.contains("then start: true")), "{plan}");
    assert!(
        plan["processes"].as_array().is_some_and(|p| p.iter().any(|p| p["pid"] == pid)),
        "{plan}"
    );
    ok(&f, "save_snapshot", json!({ "target": "helper" }));
    tauri::async_runtime::block_on(daemon.shutdown());
}

/// Regression (issue 13): the action commands loaded (read and parsed) the
/// config file on an async worker before handing their work to a blocking
/// thread, so a config file that hangs (a FIFO nobody writes, a stalled network
/// mount) held one worker per call; with as many calls as workers, no async
/// command answered at all. They act on the config in force now, and file work
/// runs on blocking threads.
#[cfg(unix)]
#[test]
fn action_commands_answer_while_the_config_file_hangs() {
    let helper = Helper::spawn_with(&["--exec", "open epoll 3"]).expect("lw-helper");
    let pid = helper.pid();
    let pidfile = std::env::temp_dir().join(format!("leakwatch-app-hung-{pid}.pid"));
    std::fs::write(&pidfile, pid.to_string()).expect("pidfile");
    let config = format!("{}\n[watch.restart]\ncommand = [\"true\"]\n", helper_config(&pidfile));
    let f = start(&config);
    status_until(&f, "the helper", |s| s["targets"][0]["process"]["pid"] == pid);

    // The file becomes a FIFO nobody writes: opening it to read blocks.
    let path = f.dir.path().join("config.toml");
    std::fs::remove_file(&path).expect("remove config");
    let made = std::process::Command::new("mkfifo").arg(&path).status().expect("mkfifo");
    assert!(made.success());
    // More calls at once than the async runtime has workers.
    let calls = std::thread::available_parallelism().map_or(2, |n| n.get()) + 2;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let answered = std::thread::scope(|scope| {
        for _ in 0..calls {
            let done = done_tx.clone();
            let webview = &f.webview;
            scope.spawn(move || {
                let answer = invoke_on(webview, "plan_restart", json!({ "target": "helper" }));
                let _ = done.send(answer);
            });
        }
        let mut answers = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while answers.len() < calls {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match done_rx.recv_timeout(left) {
                Ok(answer) => answers.push(answer),
                Err(_) => break,
            }
        }
        // Let any reader still blocked on the FIFO go (the calls, the engine's
        // reload), so the threads end.
        release_readers(&path, &config, calls + 1);
        answers
    });
    assert_eq!(answered.len(), calls, "commands stalled behind the hung config file");
    for answer in &answered {
        // The restart command comes from the config in force, not the hung file.
        let plan = answer.as_ref().expect("a plan on the config in force");
        assert!(plan["text"].as_str().is_some_and(|t| t.contains("then start: true")), "{plan}");
    }
    let _ = std::fs::remove_file(&pidfile);
}

/// Hands `text` to whoever still waits to read `fifo`: a writer per possible
/// reader, each blocked in `open` until one comes (those left over end with the
/// test process).
#[cfg(unix)]
fn release_readers(fifo: &std::path::Path, text: &str, readers: usize) {
    use std::io::Write;
    for _ in 0..readers {
        let (fifo, text) = (fifo.to_path_buf(), text.to_owned());
        std::thread::spawn(move || {
            if let Ok(mut writer) = std::fs::OpenOptions::new().write(true).open(fifo) {
                let _ = writer.write_all(text.as_bytes());
            }
        });
    }
}

/// The identity of the live process `pid`, as the UI passes an orphan root.
fn root_of(pid: u32) -> Value {
    let id = leakwatch_probe::Probe::new().expect("probe").identity(pid).expect("alive");
    json!({ "roots": [{ "pid": id.pid, "start_time": id.start_time }] })
}

/// Whether `pid` is still the process `roots` names (not exited, not reused).
fn still_alive(roots: &Value) -> bool {
    let root = &roots["roots"][0];
    let pid = u32::try_from(root["pid"].as_u64().expect("pid")).expect("pid");
    let probe = leakwatch_probe::Probe::new().expect("probe");
    probe.identity(pid).is_ok_and(|id| json!(id.start_time) == root["start_time"])
}

/// An orphan `lw-helper` (its parent SIGKILLed): the helper to keep for
/// clean-up, and the orphan's pid.
fn lw_helper_orphan() -> (Helper, u32) {
    let mut helper = Helper::spawn().expect("lw-helper");
    let orphan = helper.pids("spawn 1")[0];
    helper.kill();
    (helper, orphan)
}

/// A file whose `protect` list names `lw-helper`, broken further down: what
/// the user wrote protects the helper, but the file cannot be read.
const BROKEN_PROTECTING_LW_HELPER: &str = "protect = [\"^lw-helper$\"]\n\n[[watch]\nname = ";

/// Issue 13 (safety): the app started on a broken file ran its engine on the
/// built-in defaults and published them as the config in force, so
/// `clean_orphans` acted with an empty `protect` list and killed what the
/// user's file protects. Those defaults are no config in force: clean-ups
/// refuse with the file's error, and the orphan lives. Reading processes needs
/// no config, so `get_tree` and Watch's proposal still answer.
#[test]
fn an_app_started_on_a_broken_file_refuses_actions_with_the_config_error() {
    let (helper, orphan) = lw_helper_orphan();
    let roots = root_of(orphan);
    let f = start(BROKEN_PROTECTING_LW_HELPER);
    let status = status_until(&f, "two ticks", |s| s["tick"].as_u64() > Some(1));
    assert!(status["config"]["error"].is_string(), "{status:#}");

    for command in ["plan_cleanup", "clean_orphans"] {
        let refused = invoke(&f, command, roots.clone()).expect_err("no config in force");
        assert_eq!(refused["kind"], "config", "{command}: {refused}");
        let message = refused["message"].as_str().unwrap_or_default();
        assert!(message.contains("config.toml:3"), "{command}: the file's error: {message}");
    }
    let refused = invoke(&f, "plan_restart", json!({ "target": "web" })).expect_err("no config");
    assert_eq!(refused["kind"], "config", "{refused}");
    assert!(still_alive(&roots), "the protected orphan was signalled");

    // Issue 13 (item 9): only reading processes, these never needed a config.
    let rows = ok(&f, "get_tree", json!({ "pid": orphan }));
    assert_eq!(rows[0]["pid"], orphan, "{rows}");
    ok(&f, "propose_watch", json!({ "pid": orphan }));
    drop(helper);
}

/// Issue 13 (safety), attached: the daemon's engine started on a broken file
/// served its built-in defaults as the config in force, and the attached app
/// cleaned up with an empty `protect` list. It serves none now (409 at
/// `/v1/config`, no config line in its stream), so the app reads the file,
/// which fails with its error, and refuses. Once the file is fixed the app
/// acts on a config read again (the daemon's, or the file), and its `protect`
/// list holds.
#[test]
fn an_app_attached_to_a_daemon_started_on_a_broken_file_refuses_actions() {
    use leakwatch_core::engine::Command;
    let (helper, orphan) = lw_helper_orphan();
    let roots = root_of(orphan);
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, BROKEN_PROTECTING_LW_HELPER).expect("config");
    let paths = shared_paths(dir.path());
    let daemon = start_daemon(&paths, Some(Duration::from_millis(200)), Engine::new_lenient_as);

    let f = start_in(dir, paths, Arc::new(NullNotifier));
    // The stream's config line, had there been one, comes before any status.
    status_until(&f, "the daemon's ticks", |s| {
        s["engine"]["face"] == "daemon" && s["tick"].as_u64() > Some(0)
    });
    for command in ["plan_cleanup", "clean_orphans"] {
        let refused = invoke(&f, command, roots.clone()).expect_err("no config in force");
        assert_eq!(refused["kind"], "config", "{command}: {refused}");
    }
    assert!(still_alive(&roots), "the protected orphan was signalled");

    // Fixed: what the user wrote, `protect` list and all, is what acts.
    std::fs::write(&config_path, "protect = [\"^lw-helper$\"]\n").expect("fix it");
    daemon.send(Command::Reload);
    let planned =
        wait_until(Duration::from_secs(20), || invoke(&f, "plan_cleanup", roots.clone()).is_ok());
    assert!(planned, "no plan once the daemon has a config in force");
    match invoke(&f, "clean_orphans", roots.clone()) {
        Ok(report) => assert!(
            report["processes"].as_array().is_some_and(|p| p
                .iter()
                .any(|p| p["pid"] == orphan && p["outcome"] == "protected")),
            "{report}"
        ),
        Err(refused) => assert_eq!(refused["kind"], "refused", "{refused}"),
    }
    assert!(still_alive(&roots), "the protected orphan was signalled");
    tauri::async_runtime::block_on(daemon.shutdown());
    drop(helper);
}
