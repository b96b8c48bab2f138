//! The async loop that runs an engine: it schedules ticks on blocking threads,
//! applies commands between them, parses config reloads and reads marked
//! baselines on blocking threads too, publishes statuses, events and the
//! config in force, serves the local API, and gives up when ticks keep
//! failing. Nothing that can block (a probe, a file the user names) runs on
//! the loop's own task.

use super::handle::EngineHandle;
use super::marks::Taken;
use super::reload::Loaded;
use super::{Command, Engine, GIVE_UP_AFTER_FAILED_TICKS, TICK_FAILURE_LOG_EVERY};
use crate::diagnose::{Mark, MarkError};
use crate::model::unix_millis;
use crate::status::{ConfigStatus, Status};
use crate::throttle::Throttle;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

impl Engine {
    /// Runs the engine on the current tokio runtime until [`EngineHandle::shutdown`].
    pub fn spawn(mut self) -> EngineHandle {
        // Before the first tick, the status already says why there is no
        // config in force, if there is none (the local API's `/v1/config`
        // answers with it).
        let first = Status {
            config: ConfigStatus { error: self.config_error.clone(), ..ConfigStatus::default() },
            ..Status::default()
        };
        let (status_tx, status_rx) = watch::channel(Arc::new(first));
        let (events_tx, _) = broadcast::channel(256);
        let (command_tx, mut command_rx) = mpsc::unbounded_channel::<Command>();
        let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
        let (listen_tx, listen_rx) = watch::channel(self.config.metrics.listen);
        let (config_tx, config_rx) = watch::channel(self.config_in_force());
        let (marked_tx, mut marked_rx) = mpsc::unbounded_channel::<Marked>();
        let (failure_tx, failure_rx) = watch::channel(None::<String>);
        let events = events_tx.clone();
        // The lock owner serves the local API, so other faces attach to it.
        let api = self.lock.as_ref().map(|lock| crate::api::socket_path(lock.dir()));
        let api = api.and_then(|socket| match crate::api::SameUserListener::bind(&socket) {
            Ok(listener) => {
                let engine = crate::api::Engine {
                    status: status_rx.clone(),
                    events: events_tx.clone(),
                    commands: command_tx.clone(),
                    config: config_rx.clone(),
                    store: self.options.store_path.clone(),
                };
                Some((socket, tokio::spawn(crate::api::serve(listener, engine))))
            }
            Err(error) => {
                tracing::warn!("local API: cannot listen on {}: {error}", socket.display());
                None
            }
        });
        let task = tokio::spawn(async move {
            for note in self.take_notes() {
                tracing::warn!("{note}");
            }
            let mut period = self.base_interval();
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
            self.defer_reloads();
            let mut engine = Some(self);
            let mut pending: Vec<Command> = Vec::new();
            // A config being parsed, and one parsed while a tick had the engine.
            let mut reloading: Option<JoinHandle<Loaded>> = None;
            let mut loaded_meanwhile: Option<Loaded> = None;
            // Marks read while a tick had the engine, to keep when it is back.
            let mut marked_meanwhile: Vec<Marked> = Vec::new();
            let mut in_flight: Option<tokio::task::JoinHandle<(Engine, TickResult)>> = None;
            let mut failed_in_a_row: u32 = 0;
            let mut failure_log = Throttle::new(TICK_FAILURE_LOG_EVERY);
            loop {
                tokio::select! {
                    _ = interval.tick() => {
                        let Some(mut current) = engine.take() else {
                            tracing::warn!("the previous tick is still running: skipping this one");
                            continue;
                        };
                        for done in marked_meanwhile.drain(..) {
                            keep(&mut current, done);
                        }
                        for command in pending.drain(..) {
                            dispatch(&mut current, command, &marked_tx);
                        }
                        start_reload(&mut current, &mut reloading);
                        in_flight = Some(tokio::task::spawn_blocking(move || {
                            // A tick that panics loses that tick, not the engine:
                            // its state is plain data, and the next tick reads
                            // everything afresh. Out of descriptors, a tick would
                            // read every target as gone (and feed `down` rules and
                            // automatic restarts with that): it fails instead.
                            let status = match descriptor_exhaustion() {
                                Some(why) => Err(why),
                                None => catch_quietly(|| current.tick()),
                            };
                            (current, status)
                        }));
                    }
                    finished = async {
                        match in_flight.as_mut() {
                            Some(handle) => handle.await,
                            None => std::future::pending().await,
                        }
                    } => {
                        in_flight = None;
                        let (current, status) = match finished {
                            Ok((current, Ok(status))) => {
                                failed_in_a_row = 0;
                                if failure_log.cleared() {
                                    tracing::info!("engine ticks succeed again");
                                }
                                (current, status)
                            }
                            Ok((current, Err(message))) => {
                                failed_in_a_row += 1;
                                if let Some(held_back) = failure_log.occurred() {
                                    tracing::error!(
                                        "an engine tick failed: {message} ({failed_in_a_row} in a \
                                         row{})",
                                        if held_back > 0 {
                                            format!(", {held_back} not logged")
                                        } else {
                                            String::new()
                                        }
                                    );
                                }
                                if failed_in_a_row >= GIVE_UP_AFTER_FAILED_TICKS {
                                    let reason = format!(
                                        "the engine stopped: {failed_in_a_row} ticks in a row \
                                         failed, the last with: {message}"
                                    );
                                    tracing::error!("{reason}");
                                    let _ = failure_tx.send(Some(reason));
                                    engine = Some(current);
                                    break;
                                }
                                engine = Some(current);
                                continue;
                            }
                            Err(error) => {
                                // The blocking task itself could not run (the
                                // runtime is shutting down, or no thread could be
                                // started): the engine's state is gone with it.
                                let reason = format!("the engine stopped: its tick could not run: {error}");
                                tracing::error!("{reason}");
                                let _ = failure_tx.send(Some(reason));
                                break;
                            }
                        };
                        // The tick's own events, whole and once, before its status:
                        // a face that sees the status has its events already.
                        let mut current = current;
                        let raised = current.take_events();
                        if !raised.is_empty() {
                            let _ = events.send(raised.into());
                        }
                        let _ = status_tx.send(status);
                        let listen = current.config().metrics.listen;
                        listen_tx.send_if_modified(|old| std::mem::replace(old, listen) != listen);
                        let config = current.config_in_force();
                        config_tx.send_if_modified(|old| {
                            let same = match (old.as_ref(), config.as_ref()) {
                                (Some(old), Some(new)) => Arc::ptr_eq(old, new),
                                (old, new) => old.is_none() && new.is_none(),
                            };
                            if !same {
                                *old = config;
                            }
                            !same
                        });
                        let wanted = current.base_interval();
                        if wanted != period {
                            period = wanted;
                            interval = tokio::time::interval(period);
                            interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
                        }
                        // Marks read meanwhile first, so a since-mark asked
                        // after one was answered finds it kept.
                        for done in marked_meanwhile.drain(..) {
                            keep(&mut current, done);
                        }
                        // Someone waits for these: answer now, not a period later.
                        let (awaited, later): (Vec<Command>, Vec<Command>) =
                            pending.drain(..).partition(Command::awaited);
                        pending = later;
                        for command in awaited {
                            dispatch(&mut current, command, &marked_tx);
                        }
                        if let Some(loaded) = loaded_meanwhile.take() {
                            current.apply_loaded(loaded, unix_millis(SystemTime::now()));
                            interval.reset_immediately();
                        }
                        start_reload(&mut current, &mut reloading);
                        engine = Some(current);
                    }
                    loaded = async {
                        match reloading.as_mut() {
                            Some(handle) => handle.await,
                            None => std::future::pending().await,
                        }
                    } => {
                        reloading = None;
                        match loaded {
                            Ok(loaded) => match engine.as_mut() {
                                Some(current) => {
                                    current.apply_loaded(loaded, unix_millis(SystemTime::now()));
                                    start_reload(current, &mut reloading);
                                    // Watch under the new config now, not a period later.
                                    interval.reset_immediately();
                                }
                                None => loaded_meanwhile = Some(loaded),
                            },
                            Err(error) => {
                                tracing::error!("reading the configuration could not run: {error}");
                            }
                        }
                    }
                    command = command_rx.recv() => match command {
                        Some(command) => {
                            if command.ticks_now() {
                                // A tick in flight keeps running; the next one is
                                // due at once instead of a whole period later.
                                interval.reset_immediately();
                            }
                            match engine.as_mut() {
                                Some(current) => {
                                    dispatch(current, command, &marked_tx);
                                    start_reload(current, &mut reloading);
                                }
                                None => pending.push(command),
                            }
                        }
                        None => break,
                    },
                    Some(done) = marked_rx.recv() => match engine.as_mut() {
                        Some(current) => keep(current, done),
                        None => marked_meanwhile.push(done),
                    },
                    _ = shutdown_rx.changed() => break,
                }
            }
            // The socket goes while the lock is still held, so no later owner's is removed.
            if let Some((socket, server)) = api {
                server.abort();
                let _ = std::fs::remove_file(socket);
            }
            // Let a running tick finish so its samples reach the store.
            if let Some(handle) = in_flight.take()
                && let Ok(Ok((current, _))) =
                    tokio::time::timeout(Duration::from_secs(10), handle).await
            {
                engine = Some(current);
            }
            // A restart in progress is seen through, so no server is left half-started.
            if let Some(mut current) = engine.take() {
                let finishing = tokio::task::spawn_blocking(move || current.finish());
                let _ = tokio::time::timeout(Duration::from_secs(60), finishing).await;
            }
        });
        EngineHandle {
            status: status_rx,
            events: events_tx,
            commands: command_tx,
            shutdown: shutdown_tx,
            metrics_listen: listen_rx,
            config: config_rx,
            failure: failure_rx,
            owner: watch::channel(None).1,
            task,
        }
    }
}

/// A mark read on a blocking thread, on its way back to the engine: the
/// target, what was read, and who waits for the answer.
type Marked = (String, Result<Taken, MarkError>, oneshot::Sender<Result<Vec<Mark>, MarkError>>);

/// Applies `command` to the engine, which no tick has now. A mark's or a
/// since-mark's descriptor reads (`/proc`, libproc: blocking) run on a
/// blocking thread with a probe of their own, apart from the engine, so one
/// that hangs holds up neither this loop nor the ticks; a since-mark answers
/// from there, a mark comes back through `marked` to be kept first.
fn dispatch(engine: &mut Engine, command: Command, marked: &mpsc::UnboundedSender<Marked>) {
    match command {
        Command::MarkBaseline { target, reply } => match engine.mark_read(&target) {
            Ok(read) => {
                let marked = marked.clone();
                drop(tokio::task::spawn_blocking(move || {
                    let _ = marked.send((target, read.read_alone(), reply));
                }));
            }
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        },
        Command::SinceMark { target, reply } => match engine.since_read(&target) {
            Ok(read) => {
                drop(tokio::task::spawn_blocking(move || {
                    let _ = reply.send(read.read_alone());
                }));
            }
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        },
        command => engine.apply(command),
    }
}

/// Keeps a mark read on a blocking thread, then answers whoever asked: once
/// kept, so a since-mark asked after the answer finds it.
fn keep(engine: &mut Engine, (target, taken, reply): Marked) {
    let kept = taken.map(|taken| engine.keep_marks(taken)).and_then(|marks| {
        // Every row read was dropped meanwhile (its process exited).
        if marks.is_empty() { Err(MarkError::NotRunning { target }) } else { Ok(marks) }
    });
    let _ = reply.send(kept);
}

/// Starts reading the config on a blocking thread when the engine wants a
/// reload and none is being read: a config on a FIFO or a hung mount then
/// holds up that thread, never the loop, its commands or its ticks.
fn start_reload(engine: &mut Engine, reloading: &mut Option<JoinHandle<Loaded>>) {
    if reloading.is_none()
        && let Some(source) = engine.take_reload()
    {
        *reloading = Some(tokio::task::spawn_blocking(move || super::reload::load(&source)));
    }
}

/// A tick's status, or what its panic said.
pub(super) type TickResult = Result<Arc<Status>, String>;

thread_local! {
    /// Set while [`catch_quietly`] runs: a panic then is logged by the engine,
    /// throttled, instead of by the default hook on every tick.
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Where the last panic caught quietly on this thread happened.
    static CAUGHT_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f`, turning a panic into its message (with where it happened). The
/// default panic hook would print every one, a stack of identical lines per
/// tick when a tick fails for good; the engine logs them itself, throttled.
pub(super) fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(std::cell::Cell::get) {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
                CAUGHT_AT.with(|cell| *cell.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
    let was = CATCHING.with(|cell| cell.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|cell| cell.set(was));
    result.map_err(|panic| {
        let message = panic_message(panic.as_ref());
        match CAUGHT_AT.with(|cell| cell.borrow_mut().take()) {
            Some(at) => format!("{message} (at {at})"),
            None => message,
        }
    })
}

/// The message of a caught panic (a `&str` or `String` payload, as `panic!` makes).
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Why this process cannot open a descriptor now (its limit reached, or the
/// system's), or `None` if it can. Checked before every tick by opening one:
/// under exhaustion every pidfile, `/proc` and socket read of the tick would
/// fail, and the tick would take its targets for gone.
pub fn descriptor_exhaustion() -> Option<String> {
    descriptor_exhaustion_of(std::fs::File::open(NULL_DEVICE).map(drop))
}

#[cfg(unix)]
const NULL_DEVICE: &str = "/dev/null";
#[cfg(not(unix))]
const NULL_DEVICE: &str = "NUL";

/// [`descriptor_exhaustion`]'s verdict on one attempt to open a descriptor:
/// only EMFILE and ENFILE mean exhaustion.
pub(super) fn descriptor_exhaustion_of(opened: std::io::Result<()>) -> Option<String> {
    let error = opened.err()?;
    #[cfg(unix)]
    let exhausted = error.raw_os_error().is_some_and(|code| {
        code == nix::errno::Errno::EMFILE as i32 || code == nix::errno::Errno::ENFILE as i32
    });
    #[cfg(not(unix))]
    let exhausted = false;
    exhausted
        .then(|| format!("the process is out of file descriptors (opening {NULL_DEVICE}: {error})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::ConfigSource;
    use crate::engine::EngineOptions;
    use crate::model::Severity;
    use crate::notifier::{Notification, Notifier, NotifyError};
    use std::path::Path;

    /// A notifier whose reactor cannot start, as notify-rust's did when the
    /// process was out of descriptors: it panics.
    #[derive(Debug, Default)]
    struct PanickingNotifier {
        calls: std::sync::atomic::AtomicU64,
    }

    impl Notifier for PanickingNotifier {
        fn notify(&self, _: &Notification) -> Result<(), NotifyError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            panic!("cannot initialize I/O event notification: Too many open files (os error 24)");
        }
    }

    /// An engine in `dir` watching one target whose pidfile names no process, so
    /// its `down` rule raises (and notifies) within a few ticks.
    fn down_target_engine(dir: &Path, notifier: Arc<dyn Notifier>) -> Engine {
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[notify]\nenabled = true\n\n[[watch]]\nname = \"gone\"\npidfile = '{}'\n",
                dir.join("missing.pid").display()
            ),
        )
        .expect("config");
        Engine::new(EngineOptions {
            config: ConfigSource::Named(config),
            store_path: Some(dir.join("data/history.sqlite3")),
            notifier,
            interval: Some(Duration::from_millis(20)),
        })
        .expect("engine")
    }

    /// Waits (generously) until the status satisfies `done`.
    async fn status_until(
        status: &mut watch::Receiver<Arc<Status>>,
        done: impl Fn(&Status) -> bool,
    ) -> Arc<Status> {
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let current = status.borrow_and_update().clone();
                if done(&current) {
                    return current;
                }
                status.changed().await.expect("the engine stopped");
            }
        })
        .await
        .expect("status within 60 s")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_notifier_never_stops_the_engine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let notifier = Arc::new(PanickingNotifier::default());
        let handle = down_target_engine(dir.path(), notifier.clone()).spawn();
        let mut status = handle.status();
        // The `down` rule raising (not the row, which is critical at once).
        let raised = status_until(&mut status, |s| {
            s.targets.iter().any(|t| t.rules.iter().any(|r| r.severity > Severity::Ok))
        })
        .await;
        // The notification that panicked was the raise's; ticks go on after it.
        assert!(notifier.calls.load(std::sync::atomic::Ordering::Relaxed) >= 1);
        let later = status_until(&mut status, |s| s.tick >= raised.tick + 5).await;
        assert!(later.targets.iter().any(|t| t.name == "gone"));
        assert_eq!(*handle.failure().borrow(), None);
        handle.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_tick_is_survived_and_the_next_one_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = down_target_engine(dir.path(), Arc::new(crate::notifier::NullNotifier));
        engine.fail_ticks = 3;
        let handle = engine.spawn();
        let mut status = handle.status();
        let ticked = status_until(&mut status, |s| s.tick >= 3).await;
        assert!(ticked.targets.iter().any(|t| t.name == "gone"));
        assert_eq!(*handle.failure().borrow(), None);
        handle.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ticks_that_keep_failing_stop_the_engine_and_say_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = down_target_engine(dir.path(), Arc::new(crate::notifier::NullNotifier));
        engine.fail_ticks = u32::MAX;
        let handle = engine.spawn();
        let mut failure = handle.failure();
        let reason = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Some(reason) = failure.borrow_and_update().clone() {
                    return reason;
                }
                failure.changed().await.expect("the engine ended without saying why");
            }
        })
        .await
        .expect("the engine gave up within 60 s");
        assert!(
            reason.contains(&format!("{GIVE_UP_AFTER_FAILED_TICKS} ticks in a row failed"))
                && reason.contains("test fault"),
            "{reason}"
        );
        // The status channel closes with it: a face waiting on it is not left hanging.
        let mut status = handle.status();
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while status.changed().await.is_ok() {}
        })
        .await;
        assert!(closed.is_ok(), "the status channel stayed open");
        handle.shutdown().await;
    }

    /// Issue 13: a mark and a since-mark read descriptor tables (`/proc`,
    /// libproc) on the loop's own task, so a read that hangs stopped the loop:
    /// no tick, no command, no status. They read on a blocking thread now,
    /// apart from the engine: here the mark's read is held (the stand-in for a
    /// hung read) and ticks go on meanwhile; let go, it answers, and the mark
    /// kept is what a since-mark then compares against.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ticks_go_on_while_a_marks_descriptor_read_hangs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let helper = leakwatch_test_helper::Helper::spawn().expect("lw-helper");
        let pidfile = dir.path().join("me.pid");
        std::fs::write(&pidfile, helper.pid().to_string()).expect("pidfile");
        let config = dir.path().join("config.toml");
        let text = format!("[[watch]]\nname = \"me\"\npidfile = '{}'\n", pidfile.display());
        std::fs::write(&config, text).expect("config");
        let mut engine = Engine::new(EngineOptions {
            config: ConfigSource::Named(config),
            store_path: None,
            notifier: Arc::new(crate::notifier::NullNotifier),
            interval: Some(Duration::from_millis(20)),
        })
        .expect("engine");
        let (release, held) = std::sync::mpsc::channel::<()>();
        engine.mark_gate = Some(Arc::new(std::sync::Mutex::new(held)));
        let handle = engine.spawn();
        let mut status = handle.status();
        let up = status_until(&mut status, |s| s.targets.iter().any(|t| t.process.is_some())).await;

        let (reply, answer) = tokio::sync::oneshot::channel();
        handle.send(Command::MarkBaseline { target: "me".to_owned(), reply });
        // Not a wall-clock bound: ticks counted while the read is held.
        status_until(&mut status, |s| s.tick >= up.tick + 5).await;
        release.send(()).expect("the read waits");
        let marks = tokio::time::timeout(Duration::from_secs(60), answer)
            .await
            .expect("an answer once the read is let go")
            .expect("the loop answers")
            .expect("marked");
        assert_eq!(marks.len(), 1, "{marks:?}");
        assert_eq!(marks[0].process.pid, helper.pid());

        let (reply, answer) = tokio::sync::oneshot::channel();
        handle.send(Command::SinceMark { target: "me".to_owned(), reply });
        let since = tokio::time::timeout(Duration::from_secs(60), answer)
            .await
            .expect("an answer")
            .expect("the loop answers")
            .expect("the mark was kept");
        assert_eq!(since[0].mark, marks[0]);
        handle.shutdown().await;
    }

    #[cfg(unix)]
    #[test]
    fn descriptor_exhaustion_fails_the_tick_only_on_emfile_or_enfile() {
        assert_eq!(descriptor_exhaustion(), None, "this test process has descriptors left");
        let emfile = descriptor_exhaustion_of(Err(std::io::Error::from_raw_os_error(
            nix::errno::Errno::EMFILE as i32,
        )))
        .expect("EMFILE is exhaustion");
        assert!(emfile.contains("out of file descriptors"), "{emfile}");
        assert!(emfile.contains("os error"), "{emfile}");
        assert!(
            descriptor_exhaustion_of(Err(std::io::Error::from_raw_os_error(
                nix::errno::Errno::ENFILE as i32
            )))
            .is_some()
        );
        let other = std::io::Error::from_raw_os_error(nix::errno::Errno::ENOENT as i32);
        assert_eq!(descriptor_exhaustion_of(Err(other)), None);
        assert_eq!(descriptor_exhaustion_of(Ok(())), None);
    }
}
