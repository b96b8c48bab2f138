//! Events as typed facts, delivered whole (issue 13). The engine publishes each
//! tick's own events; subscribers used to rebuild them by diffing the status's
//! 50 `recent_events` by timestamp, which lost events when one tick raised more
//! than 50 (a large config starting) and repeated some. Here one tick raises more
//! than 50, and every subscriber gets each of them exactly once: the engine's own
//! handle, and a face attached to it over the local API's `/v1/stream`.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use leakwatch_core::engine::{Engine, EngineHandle, EngineOptions};
use leakwatch_core::model::{Event, EventKind, Subject};
use leakwatch_core::notifier::{CapturingNotifier, Notifier, NullNotifier};
use leakwatch_test_helper::Helper;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

/// Targets one reload adds: more than the 50 events a status keeps.
const ADDED: usize = 60;

fn write_config(path: &Path, pidfile: &Path, targets: usize, extra: &str) {
    let mut text = extra.to_owned();
    for n in 0..targets {
        text.push_str(&format!(
            "\n[[watch]]\nname = \"t{n}\"\npidfile = '{}'\ninterval = \"100ms\"\n",
            pidfile.display()
        ));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn options(dir: &Path, notifier: Arc<dyn Notifier>) -> EngineOptions {
    EngineOptions {
        config: leakwatch_core::ConfigSource::Named(dir.join("config.toml")),
        store_path: Some(dir.join("history.db")),
        notifier,
        interval: Some(Duration::from_millis(100)),
    }
}

/// Events from `events` until `done` holds of all received, or 30 s pass.
async fn receive_until(
    events: &mut tokio::sync::broadcast::Receiver<Arc<[Event]>>,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let mut received = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while !done(&received) {
            match events.recv().await {
                Ok(batch) => received.extend(batch.iter().cloned()),
                Err(error) => panic!("events lost: {error}"),
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "events still missing after 30 s: {received:#?}");
    received
}

fn started_per_target(events: &[Event]) -> BTreeMap<String, usize> {
    let mut started = BTreeMap::new();
    for event in events.iter().filter(|e| e.kind == EventKind::SeriesStarted) {
        *started.entry(event.subject.to_string()).or_insert(0) += 1;
    }
    started
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_raising_more_than_50_events_delivers_all_of_them_to_every_subscriber() {
    let dir = TempDir::new().unwrap();
    let helper = Helper::spawn().unwrap();
    let pidfile: PathBuf = dir.path().join("helper.pid");
    std::fs::write(&pidfile, format!("{}\n", helper.pid())).unwrap();
    let config = dir.path().join("config.toml");
    write_config(&config, &pidfile, 1, "[notify]\nenabled = false\n");

    let engine = Engine::new(options(dir.path(), Arc::new(NullNotifier))).unwrap();
    let handle = engine.spawn();
    let mut own = handle.events();
    let mut own_status = handle.status();
    tokio::time::timeout(
        Duration::from_secs(30),
        own_status.wait_for(|s| s.targets.iter().any(|t| t.name == "t0")),
    )
    .await
    .expect("t0 watched within 30 s")
    .unwrap();

    // A face that finds the data directory locked follows the owner's stream.
    let face_dir = dir.path().to_owned();
    let face = EngineHandle::spawn_retrying(
        move || Engine::new(options(&face_dir, Arc::new(NullNotifier))),
        Duration::from_millis(100),
    );
    let mut attached = face.events();
    let mut owner = face.attached_to();
    tokio::time::timeout(Duration::from_secs(30), owner.wait_for(Option::is_some))
        .await
        .expect("the face attached within 30 s")
        .unwrap();
    // The stream is open once a status came through it.
    let mut face_status = face.status();
    tokio::time::timeout(Duration::from_secs(30), face_status.wait_for(|s| s.tick > 0))
        .await
        .unwrap()
        .unwrap();

    write_config(&config, &pidfile, ADDED + 1, "[notify]\nenabled = false\n");
    let all_started = |events: &[Event]| started_per_target(events).len() >= ADDED;
    for (who, events) in [("own", &mut own), ("attached", &mut attached)] {
        let received = receive_until(events, all_started).await;
        // A few more ticks, in which nothing may come again.
        let more = tokio::time::timeout(Duration::from_millis(600), async {
            let mut more = Vec::new();
            while let Ok(batch) = events.recv().await {
                more.extend(batch.iter().cloned());
            }
            more
        })
        .await
        .unwrap_or_default();
        let everything: Vec<Event> = received.into_iter().chain(more).collect();
        let started = started_per_target(&everything);
        for n in 1..=ADDED {
            let subject = Subject::target(&format!("t{n}"));
            assert_eq!(started.get(&subject.to_string()), Some(&1), "{who}: t{n}: {started:?}");
        }
        assert!(started.get("t0").copied().unwrap_or(0) <= 1, "{who}: t0 again: {started:?}");
        let reloaded =
            everything.iter().filter(|e| e.kind == EventKind::ConfigReloaded).collect::<Vec<_>>();
        assert_eq!(reloaded.len(), 1, "{who}: {reloaded:#?}");
        assert_eq!(reloaded[0].subject, Subject::Leakwatch);
    }
    face.shutdown().await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_say_whether_they_were_notified_and_messages_do_not() {
    let dir = TempDir::new().unwrap();
    let mut helper = Helper::spawn().unwrap();
    // Written once subscribed, so the series' start is seen: down till then.
    let pidfile: PathBuf = dir.path().join("helper.pid");
    let config = dir.path().join("config.toml");
    // A rule that raises at once, clears at once, and whose cooldown holds back
    // the second raise: issue 13's "within cooldown: not notified" case.
    let text = format!(
        "[[watch]]\nname = \"web\"\npidfile = '{}'\ninterval = \"100ms\"\n\
         [watch.rules]\neventfd = {{ warn = 10, samples = 1, cooldown = \"1h\" }}\n",
        pidfile.display()
    );
    std::fs::write(&config, text).unwrap();
    let notifier = Arc::new(CapturingNotifier::default());
    let engine = Engine::new(options(dir.path(), notifier.clone())).unwrap();
    let handle = engine.spawn();
    let mut events = handle.events();
    std::fs::write(&pidfile, format!("{}\n", helper.pid())).unwrap();
    let raised =
        |n: usize| move |e: &[Event]| e.iter().filter(|e| e.kind == EventKind::Raised).count() >= n;
    let mut seen =
        receive_until(&mut events, |e| e.iter().any(|e| e.kind == EventKind::SeriesStarted)).await;
    helper.ok("open eventfd 12");
    seen.extend(receive_until(&mut events, raised(1)).await);
    helper.ok("close eventfd 12");
    seen.extend(
        receive_until(&mut events, |e| e.iter().any(|e| e.kind == EventKind::Cleared)).await,
    );
    helper.ok("open eventfd 12");
    seen.extend(receive_until(&mut events, raised(1)).await);
    handle.shutdown().await;

    let rule: Vec<&Event> = seen.iter().filter(|e| e.rule.as_deref() == Some("eventfd")).collect();
    let seen: Vec<&Event> = seen.iter().filter(|e| e.rule.as_deref() != Some("down")).collect();
    let facts: Vec<(EventKind, bool)> = rule.iter().map(|e| (e.kind, e.notified)).collect();
    assert_eq!(
        facts,
        [(EventKind::Raised, true), (EventKind::Cleared, true), (EventKind::Raised, false)],
        "{rule:#?}"
    );
    for event in &seen {
        assert!(!event.message.contains("notified"), "{}", event.message);
        assert_eq!(event.subject, Subject::target("web"), "{event:#?}");
    }
    let started = seen.iter().find(|e| e.kind == EventKind::SeriesStarted).unwrap();
    assert!(!started.notified, "a series starting is never notified");
    // Exactly the notified ones reached the notifier (the `down` rule's aside:
    // the target was down until its pidfile was written).
    let sent: Vec<_> = notifier.sent().into_iter().filter(|n| n.body.contains("eventfd")).collect();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert!(sent.iter().all(|n| n.subject == Some(Subject::target("web"))), "{sent:#?}");
}
