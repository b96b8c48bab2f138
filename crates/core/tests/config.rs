//! The config against the rest of the core, on real processes: what the
//! config's own queries promise is what the actions obey.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use leakwatch_core::actions::kill::Guard;
use leakwatch_core::config::protect_match;
use leakwatch_core::engine::{Command, Engine, EngineOptions};
use leakwatch_core::notifier::NullNotifier;
use leakwatch_core::{Config, ConfigSource};
use leakwatch_test_helper::{Helper, wait_until};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Issue 13: two protect-list matchers existed, and the tested one
/// (`Config::is_protected`, since removed) was not the one the kill guard used
/// (`Guard::protect_match`), so a change to one would silently leave signals
/// following the other. Now the guard asks the config's `protect_match`: for a
/// real `lw-helper`, every way a pattern can match (the process name, argv[0]
/// whole, argv[0]'s last component) protects it in both, a pattern that does
/// not match protects it in neither, and the refusal names the pattern.
#[test]
fn the_kill_guard_refuses_exactly_what_the_config_protects() {
    let helper = Helper::spawn().unwrap();
    let mut probe = leakwatch_probe::Probe::new().unwrap();
    let table = probe.processes().unwrap();
    let info = probe.process(helper.pid()).unwrap();
    let argv0 = info.argv.first().cloned().expect("lw-helper's argv");
    assert!(argv0.contains('/'), "argv[0] is a path: {argv0}");
    let base = argv0.rsplit('/').next().unwrap().to_owned();

    let whole = format!("^{}$", regex::escape(&argv0));
    let by_base = format!("^{}$", regex::escape(&base));
    let by_name = format!("^{}$", regex::escape(&info.name));
    for (pattern, protected) in [
        (whole.as_str(), true),
        (by_base.as_str(), true),
        (by_name.as_str(), true),
        ("^not-lw-helper$", false),
    ] {
        let text = format!("protect = [{pattern:?}]\n");
        let config = Config::parse(&text, Path::new("/tmp/config.toml")).unwrap();
        assert_eq!(
            protect_match(&config.protect, &info.name, Some(&argv0)).is_some(),
            protected,
            "config, pattern {pattern}"
        );
        let refusal = Guard::from_config(&config).refusal(&info, Some(&table));
        assert_eq!(refusal.is_some(), protected, "guard, pattern {pattern}: {refusal:?}");
        if let Some(reason) = refusal {
            let reason = reason.to_string();
            assert!(reason.contains(pattern), "the refusal names the pattern: {reason}");
        }
    }
}

/// Issue 13: the engine publishes the config in force, so faces act on it
/// rather than re-reading the file (which, while broken, made every action of
/// the app fail with a config error although the engine ran on the last good
/// one). A broken file keeps the published config; a good edit replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handle_publishes_the_config_in_force_and_keeps_it_while_the_file_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let watching = |name: &str| {
        format!("[defaults]\ninterval = \"1s\"\n\n[[watch]]\nname = \"{name}\"\nport = 1\n")
    };
    std::fs::write(&file, watching("first")).unwrap();
    let options = EngineOptions {
        config: ConfigSource::Named(file.clone()),
        store_path: Some(dir.path().join("history.sqlite3")),
        notifier: Arc::new(NullNotifier),
        interval: Some(Duration::from_millis(100)),
    };
    let handle = Engine::new(options).unwrap().spawn();
    let config = handle.config();
    let names = || -> Vec<String> {
        config
            .borrow()
            .as_ref()
            .map(|c| c.watch.iter().map(|t| t.name.clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(names(), ["first"], "published from the start");

    std::fs::write(&file, "[[watch]\nname = ").unwrap();
    handle.send(Command::Reload);
    let status = handle.status();
    let broken = wait_until(Duration::from_secs(20), || status.borrow().config.error.is_some());
    assert!(broken, "the engine never saw the broken file");
    assert_eq!(names(), ["first"], "the last good config stays published");

    std::fs::write(&file, watching("second")).unwrap();
    handle.send(Command::Reload);
    assert!(
        wait_until(Duration::from_secs(20), || names() == ["second"]),
        "a good edit is published: {:?}",
        names()
    );
    handle.shutdown().await;
}

/// Issue 13 (safety): an engine started on a broken file watched on the
/// built-in defaults and published them as the config in force, so the app's
/// actions ran with an empty `protect` list. Those defaults are no config in
/// force: the handle publishes none, `/v1/config` answers 409 with the file's
/// error and the stream sends no config line, until a reload reads a good file,
/// which is then published, served and streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_started_on_a_broken_file_has_no_config_in_force_until_a_good_one_is_read() {
    use leakwatch_core::api::{self, ClientError, StreamItem};
    use leakwatch_core::owner::Face;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "protect = [\"^lw-helper$\"]\n[[watch]\nname = ").unwrap();
    let options = EngineOptions {
        config: ConfigSource::Named(file.clone()),
        store_path: Some(dir.path().join("history.sqlite3")),
        notifier: Arc::new(NullNotifier),
        interval: Some(Duration::from_millis(100)),
    };
    let engine = Engine::new_lenient_as(options, Face::App).unwrap();
    assert!(engine.config_in_force().is_none());
    assert!(engine.config().protect.is_empty(), "it watches on the defaults");
    let handle = engine.spawn();
    let config = handle.config();
    let status = handle.status();
    let ticked = wait_until(Duration::from_secs(20), || status.borrow().tick >= 2);
    assert!(ticked, "the engine never ticked");
    assert!(config.borrow().is_none(), "the defaults were published as the config in force");

    let socket = api::socket_path(dir.path());
    let refused = api::config(&socket).await.expect_err("no config in force");
    assert!(
        matches!(&refused, ClientError::Status { status, .. } if status.as_u16() == 409),
        "{refused}"
    );
    let message = refused.message();
    assert!(message.contains("no configuration in force"), "{message}");
    assert!(message.contains("config.toml:2"), "the file's error: {message}");
    let mut stream = api::subscribe(&socket).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(matches!(first, StreamItem::Status(_)), "no config line first: {first:?}");

    std::fs::write(&file, "protect = [\"^lw-helper$\"]\n[[watch]]\nname = \"web\"\nport = 1\n")
        .unwrap();
    handle.send(Command::Reload);
    let published = wait_until(Duration::from_secs(20), || config.borrow().is_some());
    assert!(published, "the good file was never published");
    let in_force = config.borrow().clone().unwrap();
    assert_eq!(in_force.watch[0].name, "web");
    assert_eq!(in_force.protect.len(), 1);
    let served = api::config(&socket).await.unwrap();
    assert!(served.text.as_deref().is_some_and(|t| t.contains("lw-helper")), "{served:?}");
    let streamed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.next().await {
                Some(Ok(StreamItem::Config(text))) => return text,
                Some(Ok(_)) => {}
                other => panic!("the stream ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a config line once a good file is in force");
    assert_eq!(streamed, served);
    handle.shutdown().await;
}
