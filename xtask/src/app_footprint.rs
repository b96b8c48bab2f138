//! The menubar app's footprint for `cargo xtask bench`: the resident memory of
//! its whole process tree (the app and, while the popover is open, WebKit's web
//! and network processes) and its CPU use at idle, with the popover closed (a
//! normal start: tray and engine only) and open (`LEAKWATCH_E2E=1` opens it as a
//! window at start). Runs under Xvfb with an empty config in a scratch directory.

use crate::util::ensure_debian_packages;
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const DISPLAY: &str = ":97";
/// Settling time after start, then the idle window CPU is measured over.
const SETTLE: Duration = Duration::from_secs(15);
const IDLE: Duration = Duration::from_secs(30);

/// One measurement.
struct Footprint {
    processes: usize,
    rss_kib: u64,
    cpu_percent: f64,
}

/// Builds the app (release, serving ui/dist), measures it and appends a section to `out`.
pub(crate) fn section(out: &mut String, build: bool) -> Result<()> {
    ensure_debian_packages(&crate::ui::APP_PACKAGES)?;
    ensure_debian_packages(&["xvfb"])?;
    let app = if build {
        crate::ui::build_app(true)?
    } else {
        crate::util::target_dir().join("release/leakwatch-app")
    };
    let mut xvfb = Command::new("Xvfb")
        .args([DISPLAY, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("could not start Xvfb")?;
    std::thread::sleep(Duration::from_secs(1));
    let closed = measure(&app, false);
    let open = measure(&app, true);
    let _ = xvfb.kill();
    let _ = xvfb.wait();
    let (closed, open) = (closed?, open?);
    out.push_str("\n### Menubar app footprint (release build, under Xvfb, no targets)\n\n");
    out.push_str("| popover | processes | tree RSS | CPU at idle |\n|---|---:|---:|---:|\n");
    for (name, f) in [("closed (tray + engine)", &closed), ("open", &open)] {
        let _ = writeln!(
            out,
            "| {name} | {} | {:.1} MiB | {:.2} % |",
            f.processes,
            f.rss_kib as f64 / 1024.0,
            f.cpu_percent
        );
    }
    Ok(())
}

fn measure(app: &Path, popover_open: bool) -> Result<Footprint> {
    let dir = std::env::temp_dir()
        .join(format!("leakwatch-footprint-{}-{popover_open}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("config.toml"), "[defaults]\ninterval = \"2s\"\n")?;
    let child = Command::new(app)
        .env("DISPLAY", DISPLAY)
        .env("LEAKWATCH_CONFIG", dir.join("config.toml"))
        .env("LEAKWATCH_DATA_DIR", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env("LEAKWATCH_E2E", if popover_open { "1" } else { "0" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("could not start {}", app.display()))?;
    let mut child = Reaped(child);
    std::thread::sleep(SETTLE);
    let pid = child.0.id();
    let cpu0 = tree(pid).iter().map(|p| cpu_ticks(*p)).sum::<u64>();
    std::thread::sleep(IDLE);
    let pids = tree(pid);
    let cpu1 = pids.iter().map(|p| cpu_ticks(*p)).sum::<u64>();
    let rss_kib = pids.iter().map(|p| rss_kib(*p)).sum();
    let _ = child.0.kill();
    let _ = std::fs::remove_dir_all(&dir);
    // Clock ticks are 1/100 s on Linux.
    let cpu_percent = cpu1.saturating_sub(cpu0) as f64 / 100.0 / IDLE.as_secs_f64() * 100.0;
    Ok(Footprint { processes: pids.len(), rss_kib, cpu_percent })
}

/// Kills and reaps the app, and its WebKit children, on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        for pid in tree(self.0.id()).into_iter().rev() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = self.0.wait();
    }
}

/// `pid` and its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let tasks =
            std::fs::read_dir(format!("/proc/{}/task", out[i])).into_iter().flatten().flatten();
        for task in tasks {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            out.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
        i += 1;
    }
    out
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    // utime and stime are fields 14 and 15; after the ")" they are the 12th and 13th.
    fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
