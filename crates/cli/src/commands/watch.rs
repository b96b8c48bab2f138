//! `leakwatch watch`: the engine live in a terminal. A table refreshed in place on
//! a terminal; plain lines, or one JSON status per tick, when piped, so the same
//! command serves a person, `grep` and a test. When another engine (the daemon,
//! the app) owns the data directory, `watch` shows that engine's state through
//! its local API rather than run a second one, and takes over if it goes away.

use super::{EngineArgs, parse_duration, runtime};
use crate::output::{self, Align, Table};
use leakwatch_core::config::MIN_INTERVAL;
use leakwatch_core::engine::{Engine, EngineError, EngineHandle};
use leakwatch_core::model::{Event, Severity, human_duration};
use leakwatch_core::notifier::{DesktopNotifier, Notifier, NullNotifier};
use leakwatch_core::owner::{Face, LockError, Owner};
use leakwatch_core::status::{Reading, Status, TargetState, TargetStatus};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Watch targets live: descriptors by kind against the limit, leak slope, time
/// to the limit, memory, and alerts as they are raised.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "With no config file, the current user's ten processes holding \
    the most descriptors are watched.\n\nJSON (--json): one object per tick, one per line, with \
    the fields at (Unix ms), tick, targets [{name, selector, state (up, down, \
    permission_denied, unknown), reason?, process {pid, start_time, name, argv, started_at}, sample \
    {at, total, kinds {<kind>: count}, limit, rss_bytes, cpu_seconds, threads, descendants}, \
    limit {soft, hard, source}, slope_per_hour, kind_slopes_per_hour {<kind>: per hour}, \
    eta_seconds, severity (ok, warning, critical), reading (measuring until a slope exists, \
    measured, at_limit when the descriptor table is full), down_since (Unix ms, while down), \
    rules [{metric, severity, value}], \
    top_paths [{path, kind, count, companions}], grew [{kind, first, now}], history [[at, \
    total]]}], config {path, error, automatic}, own {pid, fds, rss_bytes, cpu_seconds, \
    threads}, recent_events [{at, subject {type (target, process, orphans, leakwatch), name?, \
    instance? (target), pid? (process)}, pid, kind, rule, severity, value, message, notified}], \
    alerts_paused_until, orphans [orphan trees as in `leakwatch orphans --json`, with \
    idle_seconds and no idle_now], orphan_rules [{metric, severity, value}].\n\n\
    One engine per data directory: when another engine (`leakwatch daemon`, the menubar app, \
    another `watch`) owns it, `watch` attaches to that engine's local API and shows its live \
    state, trend history included, instead of sampling a second time; --interval and \
    --no-notify then do not apply (the owner's config does). If that engine stops or dies, \
    `watch` says so on stderr and takes over: it becomes the owner (history, notifications) \
    until it exits. --standalone always runs its own engine (which fails while another \
    engine owns the data directory, unless --no-store); --no-store runs one without history \
    that needs no data directory.")]
pub(crate) struct Args {
    #[command(flatten)]
    engine: EngineArgs,
    /// Poll every target this often, whatever the config says (at least 100ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    interval: Option<Duration>,
    /// Take one sample and exit.
    #[arg(long, conflicts_with = "samples")]
    once: bool,
    /// Take this many samples and exit (at least 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    samples: Option<u64>,
    /// Do not show desktop notifications (alerts still appear in the output).
    #[arg(long)]
    no_notify: bool,
    /// Run an engine of its own even if another engine runs (by default `watch`
    /// attaches to the engine that owns the data directory).
    #[arg(long)]
    standalone: bool,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<String> {
    if !args.no_notify {
        super::daemon::set_notification_application();
    }
    let notifier: Arc<dyn Notifier> =
        if args.no_notify { Arc::new(NullNotifier) } else { Arc::new(DesktopNotifier) };
    let options = args.engine.options(notifier, args.interval)?;
    let own = match Engine::new_as(options.clone(), Face::Watch) {
        Ok(engine) => Some(engine),
        // Another engine owns the data directory: show its state.
        Err(EngineError::Locked(LockError::Held { .. })) if !args.standalone => None,
        Err(error) => return Err(error.into()),
    };
    let samples = if args.once { Some(1) } else { args.samples };
    let mode = if json {
        Mode::Json
    } else if std::io::stdout().is_terminal() {
        Mode::Screen
    } else {
        Mode::Lines
    };
    runtime()?.block_on(async move {
        let handle = match own {
            Some(mut engine) => {
                // `watch` logs nothing, so what the engine has to say at start is
                // said here: a history moved aside or run without, permissions
                // tightened.
                for note in engine.take_notes() {
                    eprintln!("leakwatch: {note}");
                }
                engine.spawn()
            }
            // Follows the owner; if it goes away, this opens an engine of its own.
            None => EngineHandle::spawn_retrying(
                move || Engine::new_as(options.clone(), Face::Watch),
                TAKEOVER_RETRY,
            ),
        };
        let mut status = handle.status();
        // Subscribed before the first tick's status: each event raised from now
        // on is printed once, with the status of the tick that raised it.
        let mut events = handle.events();
        let mut attached = handle.attached_to();
        let mut shown_owner: Option<Owner> = None;
        let mut following = true;
        let mut seen = 0u64;
        let failure = handle.failure();
        loop {
            tokio::select! {
                // The owner first, so its first status is shown as its.
                biased;
                // Closed at once for an engine of its own: then no longer polled.
                changed = attached.changed(), if following => {
                    if changed.is_err() {
                        following = false;
                        continue;
                    }
                    let now = attached.borrow_and_update().clone();
                    announce(shown_owner.as_ref(), now.as_ref());
                    shown_owner = now;
                }
                changed = status.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let current = status.borrow_and_update().clone();
                    if current.tick == 0 {
                        continue;
                    }
                    seen += 1;
                    let raised = raised_since(&mut events);
                    let text = render(&current, mode, &raised, shown_owner.as_ref())?;
                    if !output::print_or_closed(&text)? {
                        break;
                    }
                    if samples.is_some_and(|n| seen >= n) {
                        break;
                    }
                }
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        handle.shutdown().await;
        if mode == Mode::Screen {
            let _ = std::io::stdout().write_all(b"\n");
        }
        // The status channel closes when the engine gave up: that is a failure.
        if let Some(reason) = failure.borrow().clone() {
            anyhow::bail!("{reason}");
        }
        anyhow::Ok(String::new())
    })
}

/// How often an attached `watch` retries an engine of its own that cannot
/// start once the owner went away (a config broken meanwhile, say).
const TAKEOVER_RETRY: Duration = Duration::from_secs(3);

/// Says on stderr whose state is shown, when that changes.
fn announce(before: Option<&Owner>, now: Option<&Owner>) {
    match (before, now) {
        (_, Some(owner)) => eprintln!(
            "leakwatch: showing the state of {owner}, which owns the data directory \
             (--standalone runs a separate engine)"
        ),
        (Some(owner), None) => {
            eprintln!("leakwatch: {owner} went away: this watch took over and is the engine now");
        }
        (None, None) => {}
    }
}

/// `--interval`: a duration no shorter than the config's minimum, so a typo like
/// `0s` or `1ns` is a usage error rather than a busy loop or a panic.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text)?;
    if interval < MIN_INTERVAL {
        return Err(format!(
            "{} is too short: the interval is at least {} (as in the config)",
            humantime::format_duration(interval),
            humantime::format_duration(MIN_INTERVAL)
        ));
    }
    Ok(interval)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A terminal: the table redrawn in place.
    Screen,
    /// A pipe: plain lines, one per target per tick, and one per new event.
    Lines,
    /// `--json`: one status object per line.
    Json,
}

/// The events the engine raised since the last call, in order. The engine
/// publishes a tick's events before its status, so by the time a status is seen
/// its tick's events are here: each is taken once, never rebuilt from the
/// status's `recent_events` (which repeated some and, past 50 a tick, lost some).
fn raised_since(events: &mut broadcast::Receiver<Arc<[Event]>>) -> Vec<Event> {
    let mut raised = Vec::new();
    loop {
        match events.try_recv() {
            Ok(tick) => raised.extend(tick.iter().cloned()),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                eprintln!("leakwatch: {missed} ticks' events were not shown (output fell behind)");
            }
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => {
                return raised;
            }
        }
    }
}

fn render(
    status: &Status,
    mode: Mode,
    raised: &[Event],
    owner: Option<&Owner>,
) -> anyhow::Result<String> {
    Ok(match mode {
        Mode::Json => {
            let mut line = serde_json::to_string(status)?;
            line.push('\n');
            line
        }
        Mode::Lines => lines(status, raised),
        Mode::Screen => screen(status, owner),
    })
}

/// The table view, preceded by "clear screen, cursor home".
fn screen(status: &Status, owner: Option<&Owner>) -> String {
    let mut out = String::from("\x1b[H\x1b[2J");
    let mode = if status.config.automatic {
        "no config: top descriptor holders".to_owned()
    } else {
        status.config.path.clone().unwrap_or_default()
    };
    out.push_str(&format!(
        "Leakwatch · {} watched · tick {} · {mode}\n",
        status.targets.len(),
        status.tick
    ));
    if let Some(owner) = owner {
        out.push_str(&format!("engine: {owner}\n"));
    }
    if let Some(error) = &status.config.error {
        let error = output::escape(error);
        out.push_str(&format!("config error, last good config kept: {error}\n"));
    }
    if let Some(until) = status.alerts_paused_until {
        let left = Duration::from_millis(until.saturating_sub(status.at));
        out.push_str(&format!("alerts paused for {}\n", human_duration(left)));
    }
    out.push('\n');
    let mut table = Table::new(&[
        ("TARGET", Align::Left),
        ("PID", Align::Right),
        ("FDS/LIMIT", Align::Right),
        ("TOP KIND", Align::Left),
        ("SLOPE", Align::Right),
        ("LIMIT IN", Align::Right),
        ("RSS", Align::Right),
        ("STATUS", Align::Left),
    ]);
    for target in &status.targets {
        let row = Row::of(target);
        table.row(vec![
            target.name.clone(),
            row.pid,
            row.fds,
            row.top_kind,
            row.slope,
            row.eta,
            row.rss,
            row.status,
        ]);
    }
    out.push_str(&table.render());
    let events: Vec<&Event> = status.recent_events.iter().rev().take(5).collect();
    if !events.is_empty() {
        out.push_str("\nrecent events:\n");
        for event in events {
            let ago = Duration::from_millis(status.at.saturating_sub(event.at));
            let message = output::escape(&event.message);
            out.push_str(&format!("  {:>8} ago  {message}\n", output::age(ago)));
        }
    }
    let own = &status.own;
    out.push_str(&format!(
        "\nleakwatch itself: pid {}, {} descriptors, {} resident\n",
        own.pid,
        own.fds.map_or_else(|| "?".to_owned(), |n| n.to_string()),
        own.rss_bytes.map_or_else(|| "?".to_owned(), output::bytes)
    ));
    out
}

/// Plain lines for pipes: `TIME target pid=.. fds=N/LIMIT ... status=..`.
fn lines(status: &Status, new_events: &[Event]) -> String {
    let time = timestamp(status.at);
    let mut out = String::new();
    for target in &status.targets {
        let row = Row::of(target);
        out.push_str(&format!(
            "{time} {} pid={} fds={} top={} slope={} eta={} rss={} status={}\n",
            target.name,
            row.pid,
            row.fds.replace(' ', ""),
            row.top_kind.replace(' ', ":"),
            row.slope,
            row.eta.replace(' ', ""),
            row.rss.replace(' ', ""),
            row.status.replace(' ', "_"),
        ));
    }
    for event in new_events {
        out.push_str(&format!(
            "{} event {} {}: {}\n",
            timestamp(event.at),
            serde_json::to_value(event.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            output::escape(&event.subject.to_string()),
            output::escape(&event.message)
        ));
    }
    out
}

/// The cells of one target, shared by the table and the plain lines.
#[derive(Debug)]
struct Row {
    pid: String,
    fds: String,
    top_kind: String,
    slope: String,
    eta: String,
    rss: String,
    status: String,
}

impl Row {
    fn of(target: &TargetStatus) -> Self {
        let dash = || "-".to_owned();
        let sample = target.sample.as_ref();
        let fds = sample.map_or_else(dash, |s| match s.limit {
            Some(limit) => format!("{}/{limit}", s.total),
            None => s.total.to_string(),
        });
        let top_kind = sample
            .and_then(|s| s.kinds.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))))
            .map_or_else(dash, |(kind, n)| format!("{kind} {n}"));
        let slope = target.slope_per_hour.map_or_else(dash, |s| {
            if s.abs() < 0.5 { "flat".to_owned() } else { format!("{s:+.0}/h") }
        });
        let eta = target
            .eta_seconds
            .map_or_else(dash, |s| human_duration(Duration::from_secs_f64(s.max(0.0))));
        let rss = sample.and_then(|s| s.rss_bytes).map_or_else(dash, output::bytes);
        let status = match &target.state {
            TargetState::Up => {
                let firing: Vec<&str> = target
                    .rules
                    .iter()
                    .filter(|r| r.severity > Severity::Ok)
                    .map(|r| r.metric.as_str())
                    .collect();
                if target.reading == Reading::AtLimit {
                    "at limit: descriptor table full".to_owned()
                } else if firing.is_empty() && target.reading == Reading::Measuring {
                    "measuring".to_owned()
                } else if firing.is_empty() {
                    target.severity.name().to_owned()
                } else {
                    format!("{} ({})", target.severity.name(), firing.join(", "))
                }
            }
            TargetState::Down(reason) => format!("down: {reason}"),
            TargetState::PermissionDenied(reason) => format!("not permitted: {reason}"),
            TargetState::Unknown(reason) => format!("unknown: {reason}"),
        };
        let pid = target.process.as_ref().map_or_else(dash, |p| p.id.pid.to_string());
        Self { pid, fds, top_kind, slope, eta, rss, status }
    }
}

/// RFC 3339 UTC, to the second.
fn timestamp(at: u64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(at);
    humantime::format_rfc3339_seconds(time).to_string()
}
