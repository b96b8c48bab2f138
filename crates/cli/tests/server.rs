//! The daemon as a server, attacked as issue 10 attacked it: two daemons on one
//! data directory, idle and slow clients on `/metrics`, descriptor exhaustion,
//! and `[metrics] listen` changed under a running daemon. Real daemons, real
//! sockets.
#![cfg(target_os = "linux")]
// Helpers shared by the tests unwrap too: a panic is the failure report we want.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Daemon, PORT_ATTEMPTS, Scratch, collect_lines, free_port, http_get, listens};
use leakwatch_test_helper::wait_until;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn scrapes(port: u16) -> bool {
    http_get(port, "/metrics").is_some_and(|r| r.starts_with("HTTP/1.1 200") && r.contains("# EOF"))
}

/// A config with no targets (automatic mode), quiet, metrics on `port`.
fn config_with_metrics(port: u16) -> String {
    format!("[notify]\nenabled = false\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n")
}

/// The daemon (run through `wrapper`) serving `/metrics` on a port of its own,
/// and that port: [`common::daemon_serving_metrics`] with no target.
fn daemon_serving_metrics(scratch: &Scratch, wrapper: &[&str]) -> (Daemon, u16) {
    common::daemon_serving_metrics(scratch, wrapper, config_with_metrics, scrapes)
}

/// Moves the running daemon's `/metrics` to a new port by a config reload;
/// the new port. Race-free as [`daemon_serving_metrics`]: a move to a port
/// taken meanwhile is refused with "cannot be bound", and tried again on
/// another port.
fn move_metrics(scratch: &Scratch, daemon: &Daemon) -> u16 {
    for attempt in 0..PORT_ATTEMPTS {
        let new = free_port();
        // Noticed by the file watch; the reload changes only the port.
        scratch.write_config(&format!("{}\n# moved ({attempt})\n", config_with_metrics(new)));
        let refused = format!("127.0.0.1:{new}, but it cannot be bound");
        let mut taken = false;
        let settled = wait_until(Duration::from_secs(60), || {
            taken = daemon.log().contains(&refused);
            taken || (listens(daemon.pid(), new) && scrapes(new))
        });
        assert!(settled, "metrics never moved to {new}:\n{}", daemon.log());
        if !taken {
            return new;
        }
    }
    panic!("no free port in {PORT_ATTEMPTS} attempts:\n{}", daemon.log());
}

#[test]
fn second_engine_on_one_data_dir_is_refused_naming_the_running_one() {
    let scratch = Scratch::new("two-engines");
    scratch.write_config("[notify]\nenabled = false\n");
    let first = scratch.daemon();
    assert!(first.wait_for_log("leakwatch daemon started"), "{}", first.log());

    let bin = env!("CARGO_BIN_EXE_leakwatch");
    // `watch` attaches to it: the daemon's state, no second engine.
    let attached = scratch.command_of(bin, &["watch", "--once", "--json"]).output().unwrap();
    let notice = String::from_utf8_lossy(&attached.stderr);
    assert!(attached.status.success(), "{notice}");
    let status: serde_json::Value = serde_json::from_slice(&attached.stdout).unwrap();
    assert_eq!(status["own"]["pid"], first.pid(), "{status}");
    assert!(notice.contains(&format!("leakwatch daemon (pid {}", first.pid())), "{notice}");
    // `--standalone` insists on an engine of its own, which the lock refuses.
    let second =
        scratch.command_of(bin, &["watch", "--once", "--json", "--standalone"]).output().unwrap();
    let message = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "watch ran beside the daemon: {message}");
    assert!(message.contains("another engine already owns the data directory"), "{message}");
    assert!(message.contains("leakwatch daemon"), "{message}");
    assert!(message.contains(&format!("pid {}", first.pid())), "{message}");
    assert!(message.contains("since "), "{message}");
    // `--no-store` keeps no history, so it does not need the directory.
    let apart =
        scratch.command_of(bin, &["watch", "--once", "--json", "--no-store"]).output().unwrap();
    assert!(apart.status.success(), "{}", String::from_utf8_lossy(&apart.stderr));
}

/// Sample times of every series of `target` in the history, sorted.
fn sample_times(scratch: &Scratch, target: &str) -> Vec<u64> {
    let out = scratch.command(&["history", target, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut times: Vec<u64> = history["series"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["samples"].as_array().unwrap().iter().filter_map(|x| x["at"].as_u64()))
        .collect();
    times.sort_unstable();
    times
}

/// A helper process, watched as `leaky` by its pidfile every `interval_ms`,
/// notifications off: the config of the takeover tests.
fn watch_a_helper(scratch: &Scratch, interval_ms: u64) -> leakwatch_test_helper::Helper {
    let helper = leakwatch_test_helper::Helper::spawn().unwrap();
    let pidfile = scratch.path("helper.pid");
    std::fs::write(&pidfile, helper.pid().to_string()).unwrap();
    scratch.write_config(&format!(
        "[notify]\nenabled = false\n\n[[watch]]\nname = \"leaky\"\npidfile = \"{}\"\ninterval = \"{interval_ms}ms\"\n",
        pidfile.display()
    ));
    helper
}

#[test]
fn second_daemon_waits_then_takes_over_when_the_owner_is_killed() {
    let scratch = Scratch::new("takeover");
    let interval_ms = 1000;
    let _helper = watch_a_helper(&scratch, interval_ms);
    let mut first = scratch.daemon();
    assert!(first.wait_for_log("leakwatch daemon started"), "{}", first.log());
    let second = scratch.daemon();
    assert!(
        second.wait_for_log("waiting to take over"),
        "the second daemon did not wait:\n{}\nthe first ({:?}):\n{}",
        second.log(),
        first.child.try_wait(),
        first.log()
    );
    let log = second.log();
    assert!(log.contains(&format!("pid {}", first.pid())), "{log}");
    // Both run for a while; only the owner samples.
    std::thread::sleep(Duration::from_millis(4 * interval_ms));
    assert!(!second.log().contains("leakwatch daemon started"), "{}", second.log());

    let killed_at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(
        second.wait_for_log("taking over"),
        "the second daemon never took over:\n{}",
        second.log()
    );
    assert!(second.wait_for_log("leakwatch daemon started"), "{}", second.log());
    std::thread::sleep(Duration::from_millis(4 * interval_ms));
    let takeover_log = second.log();
    drop(second);

    let times = sample_times(&scratch, "leaky");
    assert!(times.len() >= 6, "{times:?}");
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // One sample per tick while both ran: two writers would interleave samples.
    let before: Vec<u64> =
        times.windows(2).filter(|w| w[1] < killed_at).map(|w| w[1] - w[0]).collect();
    assert!(before.len() >= 3, "{times:?}");
    assert!(
        before.iter().all(|gap| *gap >= interval_ms / 2),
        "samples closer than half an interval (two writers?): {before:?}"
    );
    // No hole at the takeover longer than two intervals.
    assert!(
        gaps.iter().all(|gap| *gap <= 2 * interval_ms),
        "a gap longer than two intervals: {gaps:?} at {times:?}\n{takeover_log}"
    );
}

/// `leakwatch watch --json`, its stdout lines and stderr collected as written.
struct Watch {
    child: Child,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
    log: Arc<Mutex<String>>,
}

impl Watch {
    fn spawn(scratch: &Scratch) -> Self {
        let mut child = scratch
            .command_of(env!("CARGO_BIN_EXE_leakwatch"), &["watch", "--json", "--no-notify"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(serde_json::from_str(&line).unwrap());
            }
        });
        let log = collect_lines(child.stderr.take().unwrap());
        Self { child, lines, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The engine pid (`own.pid`) of the statuses printed so far.
    fn engine_pids(&self) -> Vec<u64> {
        self.lines.lock().unwrap().iter().filter_map(|s| s["own"]["pid"].as_u64()).collect()
    }

    fn first(&self) -> Option<serde_json::Value> {
        self.lines.lock().unwrap().first().cloned()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn attached_watch_shows_the_daemon_then_takes_over_when_it_is_sigkilled_without_a_gap() {
    // `watch` follows the daemon through the same core handle the menubar app
    // uses (`EngineHandle::spawn_retrying`), so this is the app's takeover too.
    let scratch = Scratch::new("watch-takeover");
    let interval_ms = 1000;
    let _helper = watch_a_helper(&scratch, interval_ms);
    let mut daemon = scratch.daemon();
    assert!(daemon.wait_for_log("leakwatch daemon started"), "{}", daemon.log());
    // A few ticks first, so the attach has a trend to show at once. (Not three
    // sparkline points: a point is a bucket of ~30 s, so that waited a minute;
    // issue 13.)
    let ticked = |s: &serde_json::Value| s["tick"].as_u64().is_some_and(|t| t >= 3);
    let has_history = |s: &serde_json::Value| {
        s["targets"][0]["history"].as_array().is_some_and(|h| !h.is_empty())
    };
    assert!(
        wait_until(Duration::from_secs(60), || {
            status_json(&scratch).is_some_and(|s| ticked(&s) && has_history(&s))
        }),
        "{}",
        daemon.log()
    );
    let watch = Watch::spawn(&scratch);
    assert!(wait_until(Duration::from_secs(60), || watch.first().is_some()), "{}", watch.log());
    let first = watch.first().unwrap();
    assert_eq!(first["own"]["pid"], daemon.pid(), "{first}");
    // The daemon's own status, history and all: its tick count (a new engine
    // starts at 1) and its sparkline.
    assert!(ticked(&first), "the first status is not the daemon's: {first}");
    assert!(has_history(&first), "the first status lacks the daemon's trend: {first}");
    assert!(watch.log().contains("showing the state of leakwatch daemon"), "{}", watch.log());
    std::thread::sleep(Duration::from_millis(3 * interval_ms));
    let watch_pid = u64::from(watch.child.id());
    assert!(!watch.engine_pids().contains(&watch_pid), "watch sampled beside the daemon");

    let killed_at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64;
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || watch.engine_pids().contains(&watch_pid)),
        "watch never took over:\n{}",
        watch.log()
    );
    assert!(watch.log().contains("went away: this watch took over"), "{}", watch.log());
    std::thread::sleep(Duration::from_millis(4 * interval_ms));
    // SIGINT: watch stops cleanly, writing its last tick.
    let mut watch = watch;
    let sent = Command::new("kill").args(["-INT", &watch_pid.to_string()]).status().unwrap();
    assert!(sent.success());
    assert!(watch.child.wait().unwrap().success(), "{}", watch.log());
    let log = watch.log();
    drop(watch);

    let times = sample_times(&scratch, "leaky");
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let before: Vec<u64> =
        times.windows(2).filter(|w| w[1] < killed_at).map(|w| w[1] - w[0]).collect();
    assert!(before.len() >= 3, "{times:?}");
    assert!(
        before.iter().all(|gap| *gap >= interval_ms / 2),
        "samples closer than half an interval (two writers?): {before:?}"
    );
    assert!(times.iter().any(|t| *t > killed_at + interval_ms), "{times:?}\n{log}");
    assert!(
        gaps.iter().all(|gap| *gap <= 2 * interval_ms),
        "a gap longer than two intervals: {gaps:?} at {times:?}\n{log}"
    );
}

#[test]
fn metrics_serves_a_scrape_beside_many_idle_connections() {
    let scratch = Scratch::new("idle");
    let (daemon, port) = daemon_serving_metrics(&scratch, &[]);
    // Idle clients that never send a byte, below the connection cap.
    let idle: Vec<std::net::TcpStream> =
        (0..40).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    let response = http_get(port, "/metrics?from=test").unwrap_or_default();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}\n{}", daemon.log());
    drop(idle);
}

/// CPU time (user + system) of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn metrics_accept_loop_backs_off_on_emfile_and_keeps_serving() {
    let scratch = Scratch::new("emfile");
    // Few descriptors: the idle clients below exhaust them before the
    // connection cap is reached, so `accept` fails with EMFILE.
    let (daemon, port) = daemon_serving_metrics(&scratch, &["prlimit", "--nofile=40:40", "--"]);
    let idle: Vec<std::net::TcpStream> =
        (0..60).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    assert!(daemon.wait_for_log("Too many open files"), "never ran out:\n{}", daemon.log());
    // While out of descriptors, the loop must wait, not spin: a spinning loop
    // burns about a core for as long as the exhaustion lasts.
    let ticks_per_second = 100;
    let before = cpu_ticks(daemon.pid());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(daemon.pid()) - before;
    assert!(
        used < 3 * ticks_per_second / 2,
        "the daemon used {used} ticks of CPU in 3 s while out of descriptors"
    );
    drop(idle);
    // The idle clients are gone (or timed out): a scrape works again.
    assert!(
        wait_until(Duration::from_secs(60), || scrapes(port)),
        "metrics never came back after EMFILE:\n{}",
        daemon.log()
    );
}

#[test]
fn reload_moves_metrics_to_a_changed_listen_address() {
    let scratch = Scratch::new("rebind");
    let (daemon, old) = daemon_serving_metrics(&scratch, &[]);
    let new = move_metrics(&scratch, &daemon);
    // The daemon closed the old socket. (Not "a connect to it fails": another
    // test may bind the port as soon as it is free.)
    assert!(
        wait_until(Duration::from_secs(30), || !listens(daemon.pid(), old)),
        "the old port {old} is still open"
    );
    assert!(listens(daemon.pid(), new), "{}", daemon.log());
    assert!(daemon.log().contains(&format!("now serving at http://127.0.0.1:{new}/metrics")));
}

#[test]
fn reload_to_an_unbindable_listen_says_so_and_keeps_serving() {
    let scratch = Scratch::new("rebind-busy");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let (daemon, old) = daemon_serving_metrics(&scratch, &[]);
    scratch.write_config(&format!("{}\n# moved\n", config_with_metrics(busy)));
    assert!(
        daemon.wait_for_log("cannot be bound"),
        "no word about the unbindable address:\n{}",
        daemon.log()
    );
    let log = daemon.log();
    let line = log.lines().find(|l| l.contains("cannot be bound")).unwrap();
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{busy}")), "{line}");
    assert!(line.contains(&format!("still serving at http://127.0.0.1:{old}/metrics")), "{line}");
    assert!(scrapes(old), "the old address stopped serving");
    drop(taken);
}

#[test]
fn status_without_a_running_engine_exits_3() {
    let scratch = Scratch::new("status-none");
    let out = scratch.command(&["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no engine running"), "{out:?}");
    let doctor = scratch.command(&["doctor", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(report["engine"]["running"], false, "{report}");
}

fn status_json(scratch: &Scratch) -> Option<serde_json::Value> {
    let out = scratch.command(&["status", "--json"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn status_answers_from_the_daemon_while_garbage_and_idle_clients_hold_its_socket() {
    use std::os::unix::net::UnixStream;
    let scratch = Scratch::new("status");
    let helper = leakwatch_test_helper::Helper::spawn().unwrap();
    let pidfile = scratch.path("helper.pid");
    std::fs::write(&pidfile, helper.pid().to_string()).unwrap();
    scratch.write_config(&format!(
        "[notify]\nenabled = false\n\n[[watch]]\nname = \"leaky\"\npidfile = \"{}\"\ninterval = \"200ms\"\n",
        pidfile.display()
    ));
    let daemon = scratch.daemon();
    let mut first = None;
    assert!(
        wait_until(Duration::from_secs(60), || {
            first = status_json(&scratch).filter(|s| s["tick"].as_u64() > Some(0));
            first.is_some()
        }),
        "status never answered:\n{}",
        daemon.log()
    );
    let first = first.unwrap();
    assert_eq!(first["targets"][0]["name"], "leaky");
    assert_eq!(first["own"]["pid"], daemon.pid());
    let socket = scratch.path("data").join("engine.sock");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // History through the API, as `curl --unix-socket` would ask for it.
    let history = {
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream
            .write_all(b"GET /v1/history?target=leaky&since=1h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    };
    assert!(history.starts_with("HTTP/1.1 200"), "{history}");
    let body: serde_json::Value =
        serde_json::from_str(history.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["series"][0]["process"]["pid"], helper.pid(), "{body}");
    assert!(!body["series"][0]["samples"].as_array().unwrap().is_empty(), "{body}");
    // `doctor` names the owner.
    let doctor = scratch.command(&["doctor", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let engine = &report["engine"];
    assert_eq!(engine["running"], true, "{report}");
    assert_eq!(engine["pid"], daemon.pid());
    assert_eq!(engine["face"], "daemon");
    assert!(engine["since"].as_u64().is_some(), "{report}");
    assert_eq!(engine["socket"], socket.display().to_string());
    let doctor = scratch.command(&["doctor"]).output().unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains(&format!("engine: leakwatch daemon, pid {}", daemon.pid())), "{text}");

    // Clients that hold the socket idle, and one that sends garbage.
    let idle: Vec<UnixStream> = (0..20).map(|_| UnixStream::connect(&socket).unwrap()).collect();
    let mut garbage = UnixStream::connect(&socket).unwrap();
    garbage.write_all(b"\x00\xffNOT HTTP\r\n\r\n").unwrap();
    let mut stalled = UnixStream::connect(&socket).unwrap();
    stalled.write_all(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // Neither the engine nor other clients wait for them.
    let start_tick = first["tick"].as_u64().unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || {
            status_json(&scratch)
                .and_then(|s| s["tick"].as_u64())
                .is_some_and(|tick| tick > start_tick + 3)
        }),
        "the engine or its API stalled behind idle clients:\n{}",
        daemon.log()
    );
    let text = scratch.command(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("leaky: up"), "{text}");
    drop((idle, garbage, stalled));
}

#[test]
fn status_from_another_uid_is_refused_by_the_peer_uid_check() {
    // The engine runs as `nobody`; root can open the 0600 socket despite its
    // mode, so only the peer-uid check stands between them.
    let scratch = Scratch::new("other-uid");
    scratch.write_config("[notify]\nenabled = false\n");
    let data = scratch.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let chown = Command::new("chown").args(["65534:65534", data.to_str().unwrap()]).status();
    assert!(chown.unwrap().success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(scratch.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let daemon =
        scratch.daemon_via(&["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
    let socket = data.join("engine.sock");
    assert!(
        wait_until(Duration::from_secs(60), || socket.exists()),
        "the daemon as nobody never served its socket:\n{}",
        daemon.log()
    );
    let out = scratch.command(&["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "another uid was answered: {out:?}");
    assert!(
        daemon.wait_for_log("refused a connection from uid 0"),
        "no word of the refusal:\n{}",
        daemon.log()
    );
}

/// Sets `pid`'s soft descriptor limit (the hard one unchanged) with `prlimit(2)`,
/// returning the soft limit it had.
fn set_soft_fd_limit(pid: u32, soft: u64) -> u64 {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a null `new_limit` only reads; `old` is a valid rlimit to fill.
    let read = unsafe {
        libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old)
    };
    assert_eq!(read, 0, "prlimit read: {}", std::io::Error::last_os_error());
    let new = libc::rlimit { rlim_cur: soft, rlim_max: old.rlim_max };
    // SAFETY: `new` is a valid rlimit; a null `old_limit` is allowed.
    let set = unsafe {
        libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut())
    };
    assert_eq!(set, 0, "prlimit set: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64
}

/// A daemon with notifications on watching an `lw-helper` by pidfile, and the
/// helper (kept alive by the caller).
fn exhaustion_daemon(scratch: &Scratch, interval: &str) -> (Daemon, leakwatch_test_helper::Helper) {
    let helper = leakwatch_test_helper::Helper::spawn().unwrap();
    let pidfile = scratch.path("helper.pid");
    std::fs::write(&pidfile, helper.pid().to_string()).unwrap();
    // A rule the helper crosses (it holds a few descriptors), so that there
    // is something to notify.
    scratch.write_config(&format!(
        "[notify]\nenabled = true\n\n[[watch]]\nname = \"leaky\"\npidfile = \"{}\"\n\
         interval = \"{interval}\"\n\n[watch.rules]\nfds = {{ warn = 2, critical = 1000 }}\n",
        pidfile.display()
    ));
    let daemon = scratch.daemon();
    assert!(daemon.wait_for_log("leakwatch daemon started"), "{}", daemon.log());
    assert!(daemon.log().contains("notifications on"), "{}", daemon.log());
    (daemon, helper)
}

/// Regression (issue 10, item 4), against a real daemon: with notifications on,
/// its descriptor limit lowered at run time below what it holds (every open
/// fails with EMFILE), it neither panics nor stops sampling for good, nor takes
/// its target for gone: once the limit is back, its ticks resume.
#[test]
fn daemon_out_of_descriptors_at_run_time_survives_and_resumes_sampling() {
    let scratch = Scratch::new("fd-exhaustion");
    // 1 s ticks: the 20 failed ticks after which it would give up are 20 s, far
    // more than the test needs between seeing a failure and lifting the limit.
    let (mut daemon, mut helper) = exhaustion_daemon(&scratch, "1s");
    let mut before = None;
    assert!(
        wait_until(Duration::from_secs(60), || {
            before = status_json(&scratch).filter(|s| {
                s["targets"][0]["state"] == "up" && s["targets"][0]["sample"]["at"].is_u64()
            });
            before.is_some()
        }),
        "the daemon never sampled:\n{}",
        daemon.log()
    );
    let pid = daemon.pid();
    let held = open_fds(pid);
    // Descriptors 0-2 are open, so a limit of 3 refuses every new one.
    let soft = 3.min(held - 1);
    let original = set_soft_fd_limit(pid, soft);
    assert!(
        daemon.wait_for_log("out of file descriptors"),
        "no tick failed for want of descriptors:\n{}",
        daemon.log()
    );
    set_soft_fd_limit(pid, original);
    let restored_at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64;
    assert!(daemon.child.try_wait().unwrap().is_none(), "the daemon exited:\n{}", daemon.log());
    // Ticks resume: fresh samples, of the target still up (never taken for gone).
    let mut after = None;
    assert!(
        wait_until(Duration::from_secs(60), || {
            after = status_json(&scratch).filter(|s| {
                s["targets"][0]["sample"]["at"].as_u64().is_some_and(|at| at > restored_at)
            });
            after.is_some()
        }),
        "no fresh sample after the limit was restored:\n{}",
        daemon.log()
    );
    let after = after.unwrap();
    assert_eq!(after["targets"][0]["state"], "up", "{after}");
    assert!(after["tick"].as_u64() > before.unwrap()["tick"].as_u64(), "{after}");
    // The notifier works on: a descriptor count crossing the critical
    // threshold is notified (logged, without a session bus).
    let notified = |log: &str| log.matches("notification: leaky:").count();
    let earlier = notified(&daemon.log());
    helper.ok("open file /dev/null 1000");
    assert!(
        wait_until(Duration::from_secs(60), || notified(&daemon.log()) > earlier),
        "no notification after the exhaustion:\n{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("not running"), "the target was taken for gone:\n{log}");
    assert!(!log.contains("the engine stopped"), "{log}");
    assert!(daemon.child.try_wait().unwrap().is_none(), "the daemon exited:\n{log}");
}

/// Regression (issue 10, item 4): a daemon whose ticks keep failing (its
/// descriptor limit stays below what it holds) exits 1 after
/// `GIVE_UP_AFTER_FAILED_TICKS` (20) failed ticks in a row, saying why, so that
/// launchd or systemd starts a fresh one.
#[test]
fn daemon_whose_ticks_keep_failing_exits_1_saying_why() {
    let scratch = Scratch::new("fd-give-up");
    let (mut daemon, _helper) = exhaustion_daemon(&scratch, "100ms");
    assert!(
        wait_until(Duration::from_secs(60), || status_json(&scratch)
            .is_some_and(|s| s["tick"].as_u64() > Some(0))),
        "the daemon never ticked:\n{}",
        daemon.log()
    );
    let pid = daemon.pid();
    set_soft_fd_limit(pid, 3.min(open_fds(pid) - 1));
    let mut status = None;
    assert!(
        wait_until(Duration::from_secs(120), || {
            status = daemon.child.try_wait().unwrap();
            status.is_some()
        }),
        "the daemon never gave up:\n{}",
        daemon.log()
    );
    assert_eq!(status.unwrap().code(), Some(1), "{}", daemon.log());
    // The reader thread may still be draining the pipe.
    assert!(daemon.wait_for_log("20 ticks in a row failed"), "{}", daemon.log());
    let log = daemon.log();
    assert!(log.contains("out of file descriptors"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
