//! `watch` prints each event the engine raises exactly once (issue 13). It used
//! to rebuild them by diffing the status's 50 `recent_events` by timestamp,
//! which lost events when one tick raised more than 50 (a large config
//! starting) and repeated some. Real daemon, real `watch` attached to it.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod common;

use common::{Scratch, collect_lines};
use leakwatch_test_helper::{Helper, wait_until};
use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

/// Targets added at once: more than the 50 events a status keeps.
const ADDED: usize = 60;

fn config(pidfile: &std::path::Path, targets: usize) -> String {
    let mut text = "[notify]\nenabled = false\n\n".to_owned();
    for n in 0..targets {
        text.push_str(&format!(
            "[[watch]]\nname = \"t{n}\"\npidfile = \"{}\"\ninterval = \"300ms\"\n\n",
            pidfile.display()
        ));
    }
    text
}

#[test]
fn attached_watch_prints_every_event_of_a_large_tick_once() {
    let scratch = Scratch::new("watch-events");
    let helper = Helper::spawn().unwrap();
    let pidfile = scratch.path("helper.pid");
    std::fs::write(&pidfile, helper.pid().to_string()).unwrap();
    scratch.write_config(&config(&pidfile, 1));
    let daemon = scratch.daemon();
    assert!(daemon.wait_for_log("t0: watching pid"), "{}", daemon.log());

    let mut watch = scratch
        .command(&["watch", "--interval", "300ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = collect_lines(watch.stdout.take().unwrap());
    let err = collect_lines(watch.stderr.take().unwrap());
    let shown = || out.lock().unwrap().clone();
    assert!(
        wait_until(Duration::from_secs(60), || shown().contains(" t0 pid=")),
        "watch showed nothing: {}\n{}",
        shown(),
        err.lock().unwrap()
    );
    assert!(err.lock().unwrap().contains("showing the state of"), "{}", err.lock().unwrap());

    // One reload brings ADDED new targets: one tick raises more than 50 events.
    scratch.write_config(&config(&pidfile, ADDED + 1));
    let last = format!("t{ADDED}: watching pid");
    assert!(wait_until(Duration::from_secs(60), || shown().contains(&last)), "{}", shown());
    // A few more ticks, in which nothing may be printed again.
    let ticks =
        |text: &str| text.lines().filter(|l| l.contains(&format!(" t{ADDED} pid="))).count();
    assert!(wait_until(Duration::from_secs(60), || ticks(&shown()) >= 5), "{}", shown());
    let _ = watch.kill();
    let _ = watch.wait();

    let text = shown();
    let events: Vec<&str> = text.lines().filter(|l| l.contains(" event ")).collect();
    let mut once = HashSet::new();
    for event in &events {
        assert!(once.insert(*event), "printed twice: {event}\n{text}");
    }
    for n in 1..=ADDED {
        let started = format!(" event series_started t{n}: t{n}: watching pid");
        assert_eq!(
            events.iter().filter(|e| e.contains(&started)).count(),
            1,
            "t{n}'s event is missing:\n{text}"
        );
    }
    assert_eq!(
        events.iter().filter(|e| e.contains(" event config_reloaded ")).count(),
        1,
        "{text}"
    );
    // What happened before `watch` attached is not news to it.
    assert!(!text.contains(" event series_started t0:"), "{text}");
}
