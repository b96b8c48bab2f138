//! The tray's content as plain data: which icon, which title, and which menu
//! items with which labels and check marks, computed from a [`Status`]. Keeping
//! it free of Tauri makes it testable without a display and keeps `tray.rs` a
//! thin translation into native menus.

use leakwatch_core::model::{Severity, UnixMillis};
use leakwatch_core::status::{Status, TargetState, TargetStatus};

/// Menu item ids (a row's carries its view, a restart's the target's name,
/// after the colon).
pub mod ids {
    pub const TARGET: &str = "target:";
    pub const RESTART: &str = "restart:";
    pub const CLEANUP: &str = "cleanup";
    pub const OPEN: &str = "open";
    pub const PAUSE: &str = "pause";
    pub const RESUME: &str = "resume";
    pub const AUTOSTART: &str = "autostart";
    pub const QUIT: &str = "quit";
}

/// A row's menu id: [`ids::TARGET`] and the row's view (its target and
/// instance) as JSON, which the click reads back: never the row's name, which
/// faces do not parse.
pub fn row_id(row: &TargetStatus) -> String {
    let view = serde_json::to_string(&crate::popover::View::row(row)).unwrap_or_default();
    format!("{}{view}", ids::TARGET)
}

/// The icon variant: the worst severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IconVariant {
    Ok,
    Warning,
    Critical,
}

impl From<Severity> for IconVariant {
    fn from(severity: Severity) -> Self {
        match severity {
            Severity::Ok => IconVariant::Ok,
            Severity::Warning => IconVariant::Warning,
            Severity::Critical => IconVariant::Critical,
        }
    }
}

/// One row of the native menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Item { id: String, label: String, enabled: bool },
    Check { id: String, label: String, checked: bool },
    Separator,
}

/// Everything the tray shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayModel {
    pub icon: IconVariant,
    /// Beside the icon (macOS): the worst target's top kind count, when not ok.
    pub title: Option<String>,
    pub tooltip: String,
    pub entries: Vec<Entry>,
}

/// What the model needs besides the status.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub launch_at_login: bool,
    pub now: UnixMillis,
}

/// The tray for `status`.
pub fn model(status: &Status, inputs: &Inputs) -> TrayModel {
    let worst = status.worst();
    let mut entries = Vec::new();
    if status.targets.is_empty() {
        entries.push(item("target:", "No targets watched".to_owned(), false));
    }
    for target in &status.targets {
        entries.push(item(&row_id(target), target_label(target), true));
    }
    // One item per target, however many processes (rows) it matched.
    let mut restarts: Vec<&str> = Vec::new();
    for name in status.targets.iter().filter(|t| t.restartable).filter_map(|t| t.target.as_deref())
    {
        if !restarts.contains(&name) {
            restarts.push(name);
        }
    }
    if !restarts.is_empty() {
        entries.push(Entry::Separator);
        for name in restarts {
            entries.push(item(
                &format!("{}{name}", ids::RESTART),
                format!("Restart {name}…"),
                true,
            ));
        }
    }
    // A tree holding a watched target is never part of the one-click clean-up.
    let candidates: Vec<_> = status.orphans.iter().filter(|o| o.chosen_by_default()).collect();
    if !candidates.is_empty() {
        let bytes: u64 = candidates.iter().map(|o| o.total_rss_bytes).sum();
        let n = candidates.len();
        let noun = if n == 1 { "orphan" } else { "orphans" };
        entries.push(Entry::Separator);
        entries.push(item(
            ids::CLEANUP,
            format!("Clean up {n} {noun} ({})…", bytes_text(bytes)),
            true,
        ));
    }
    entries.push(Entry::Separator);
    entries.push(item(ids::OPEN, "Open Leakwatch".to_owned(), true));
    match status.alerts_paused_until.filter(|until| *until > inputs.now) {
        Some(until) => {
            let minutes = (until - inputs.now).div_ceil(60_000);
            entries.push(item(
                ids::RESUME,
                format!("Resume alerts (paused, {minutes} min left)"),
                true,
            ));
        }
        None => entries.push(item(ids::PAUSE, "Pause alerts for 1 h".to_owned(), true)),
    }
    entries.push(Entry::Check {
        id: ids::AUTOSTART.to_owned(),
        label: "Launch at login".to_owned(),
        checked: inputs.launch_at_login,
    });
    entries.push(Entry::Separator);
    entries.push(item(ids::QUIT, "Quit Leakwatch".to_owned(), true));
    TrayModel {
        icon: worst.into(),
        title: (worst > Severity::Ok).then(|| worst_title(status)).flatten(),
        tooltip: tooltip(status, worst),
        entries,
    }
}

fn item(id: &str, label: String, enabled: bool) -> Entry {
    Entry::Item { id: id.to_owned(), label, enabled }
}

/// `copilot: 812 kqueue · warning`, `webui: down`.
pub fn target_label(target: &TargetStatus) -> String {
    let state = match &target.state {
        TargetState::Up => None,
        TargetState::Down(_) => Some("down"),
        TargetState::PermissionDenied(_) => Some("not permitted"),
        TargetState::Unknown(_) => Some("unknown"),
    };
    if let Some(state) = state {
        return format!("{}: {state}", target.name);
    }
    let mut label = target.name.clone();
    match (top_kind(target), target.sample.as_ref()) {
        (Some((kind, count)), Some(sample)) => {
            label.push_str(&format!(": {count} {kind} ({} fds)", sample.total));
        }
        (None, Some(sample)) => label.push_str(&format!(": {} fds", sample.total)),
        _ => {}
    }
    if target.severity > Severity::Ok {
        label.push_str(&format!(" · {}", target.severity.name()));
    }
    label
}

/// The kind with most descriptors, and its count.
fn top_kind(target: &TargetStatus) -> Option<(String, u64)> {
    let sample = target.sample.as_ref()?;
    let (kind, count) =
        sample.kinds.iter().max_by_key(|(kind, count)| (**count, std::cmp::Reverse(**kind)))?;
    Some((kind_name(*kind), *count))
}

fn kind_name(kind: leakwatch_probe::FdKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The worst target's top kind count, as the tray's title.
fn worst_title(status: &Status) -> Option<String> {
    let worst = status.targets.iter().max_by(|a, b| {
        a.severity.cmp(&b.severity).then_with(|| {
            let pct = |t: &TargetStatus| {
                t.sample.as_ref().and_then(|s| s.percent_of_limit()).unwrap_or(0.0)
            };
            pct(a).total_cmp(&pct(b))
        })
    })?;
    if worst.severity == Severity::Ok {
        return None;
    }
    top_kind(worst).map(|(_, count)| count.to_string())
}

fn tooltip(status: &Status, worst: Severity) -> String {
    let n = status.targets.len();
    let mut text = format!("Leakwatch: {n} watched, {}", worst.name());
    if !status.orphans.is_empty() {
        text.push_str(&format!(", {} orphan trees", status.orphans.len()));
    }
    text
}

/// `1.2 GB`, `340 MB`: decimal units, as Finder shows them.
pub fn bytes_text(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.0} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leakwatch_core::model::Sample;
    use leakwatch_probe::{FdKind, ProcessId, StartTime};
    use std::collections::BTreeMap;

    fn target(name: &str, severity: Severity, kinds: &[(FdKind, u64)]) -> TargetStatus {
        let kinds: BTreeMap<FdKind, u64> = kinds.iter().copied().collect();
        let total = kinds.values().sum();
        TargetStatus {
            target: Some(name.to_owned()),
            sample: Some(Sample {
                at: 0,
                total,
                kinds,
                limit: Some(1024),
                rss_bytes: None,
                cpu_seconds: None,
                threads: None,
                descendants: 0,
            }),
            severity,
            ..TargetStatus::unsampled(name, "port 4321", TargetState::Up)
        }
    }

    fn labels(model: &TrayModel) -> Vec<String> {
        model
            .entries
            .iter()
            .map(|e| match e {
                Entry::Item { label, .. } => label.clone(),
                Entry::Check { label, checked, .. } => {
                    format!("[{}] {label}", if *checked { "x" } else { " " })
                }
                Entry::Separator => "---".to_owned(),
            })
            .collect()
    }

    #[test]
    fn all_ok_shows_the_plain_icon_and_no_title() {
        let status = Status {
            targets: vec![target(
                "copilot",
                Severity::Ok,
                &[(FdKind::Kqueue, 12), (FdKind::Unix, 3)],
            )],
            ..Status::default()
        };
        let m = model(&status, &Inputs::default());
        assert_eq!(m.icon, IconVariant::Ok);
        assert_eq!(m.title, None);
        assert_eq!(
            labels(&m),
            [
                "copilot: 12 kqueue (15 fds)",
                "---",
                "Open Leakwatch",
                "Pause alerts for 1 h",
                "[ ] Launch at login",
                "---",
                "Quit Leakwatch"
            ]
        );
    }

    #[test]
    fn the_worst_target_picks_icon_and_title() {
        let mut down = target("webui", Severity::Critical, &[]);
        down.state = TargetState::Down("nothing listens on port 8787".to_owned());
        down.sample = None;
        let mut copilot =
            target("copilot", Severity::Warning, &[(FdKind::Kqueue, 812), (FdKind::Unix, 40)]);
        copilot.restartable = true;
        let status = Status { targets: vec![copilot, down], ..Status::default() };
        let m = model(&status, &Inputs { launch_at_login: true, now: 0 });
        assert_eq!(m.icon, IconVariant::Critical);
        // The critical target is down: no count, so the title comes from nobody.
        assert_eq!(m.title, None);
        let l = labels(&m);
        assert_eq!(l[0], "copilot: 812 kqueue (852 fds) · warning");
        assert_eq!(l[1], "webui: down");
        assert!(l.contains(&"Restart copilot…".to_owned()), "{l:?}");
        assert!(!l.iter().any(|l| l == "Restart webui…"));
        assert!(l.contains(&"[x] Launch at login".to_owned()));

        let status = Status { targets: status.targets[..1].to_vec(), ..Status::default() };
        let m = model(&status, &Inputs::default());
        assert_eq!(m.icon, IconVariant::Warning);
        assert_eq!(m.title.as_deref(), Some("812"));
    }

    #[test]
    fn orphans_and_pause() {
        let tree = leakwatch_core::orphans::OrphanTree {
            root: ProcessId { pid: 42, start_time: StartTime(1) },
            reason: leakwatch_core::orphans::OrphanReason::ParentDied,
            original_parent: None,
            label: "python -m mcp".to_owned(),
            members: Vec::new(),
            total_rss_bytes: 2_400_000_000,
            total_fds: 30,
            age: std::time::Duration::from_secs(60),
            idle_for: None,
            watched: Vec::new(),
        };
        let status = Status {
            orphans: vec![tree.clone(), tree],
            alerts_paused_until: Some(90 * 60_000),
            ..Status::default()
        };
        let m = model(&status, &Inputs { now: 60 * 60_000, ..Inputs::default() });
        let l = labels(&m);
        assert!(l.contains(&"Clean up 2 orphans (4.8 GB)…".to_owned()), "{l:?}");
        assert!(l.contains(&"Resume alerts (paused, 30 min left)".to_owned()), "{l:?}");
        assert_eq!(l[0], "No targets watched");
        assert!(
            m.entries.iter().any(|e| matches!(e, Entry::Item { id, .. } if id == ids::CLEANUP))
        );
    }

    #[test]
    fn the_clean_up_item_leaves_out_trees_holding_a_watched_target() {
        let tree = leakwatch_core::orphans::OrphanTree {
            root: ProcessId { pid: 42, start_time: StartTime(1) },
            reason: leakwatch_core::orphans::OrphanReason::ParentDied,
            original_parent: None,
            label: "python -m mcp".to_owned(),
            members: Vec::new(),
            total_rss_bytes: 2_400_000_000,
            total_fds: 30,
            age: std::time::Duration::from_secs(60),
            idle_for: None,
            watched: Vec::new(),
        };
        let holding = leakwatch_core::orphans::OrphanTree {
            watched: vec!["agent-server".to_owned()],
            ..tree.clone()
        };
        let status = Status { orphans: vec![tree, holding.clone()], ..Status::default() };
        let l = labels(&model(&status, &Inputs::default()));
        assert!(l.contains(&"Clean up 1 orphan (2.4 GB)…".to_owned()), "{l:?}");
        let status = Status { orphans: vec![holding], ..Status::default() };
        let m = model(&status, &Inputs::default());
        assert!(
            !m.entries.iter().any(|e| matches!(e, Entry::Item { id, .. } if id == ids::CLEANUP))
        );
    }

    #[test]
    fn a_multi_process_target_gets_one_restart_item() {
        let mut rows = Vec::new();
        for pid in [123, 124, 125] {
            let mut row = target(&format!("worker[{pid}]"), Severity::Ok, &[(FdKind::Unix, 3)]);
            row.target = Some("worker".to_owned());
            row.instance = Some(pid);
            row.restartable = true;
            rows.push(row);
        }
        let status = Status { targets: rows, ..Status::default() };
        let m = model(&status, &Inputs::default());
        let restarts: Vec<&str> = m
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Item { id, .. } if id.starts_with(ids::RESTART) => Some(id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(restarts, [format!("{}worker", ids::RESTART)]);
        assert_eq!(bytes_text(340_000_000), "340 MB");
    }

    /// Issue 13: a row's item carried the row's name (`worker[124]`), which
    /// the popover matched against row names; it carries the row's target and
    /// instance, read back as the view to open.
    #[test]
    fn a_rows_item_opens_that_row_by_target_and_instance() {
        use crate::popover::View;
        let mut row = target("worker[124]", Severity::Ok, &[(FdKind::Unix, 3)]);
        row.target = Some("worker".to_owned());
        row.instance = Some(124);
        let mut holder = target("python3[9]", Severity::Ok, &[(FdKind::Unix, 3)]);
        holder.target = None;
        holder.instance = Some(9);
        let status = Status { targets: vec![row, holder], ..Status::default() };
        let views: Vec<View> = model(&status, &Inputs::default())
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Item { id, .. } => id.strip_prefix(ids::TARGET),
                _ => None,
            })
            .map(|json| serde_json::from_str(json).unwrap())
            .collect();
        assert_eq!(
            views,
            [
                View::Target { target: Some("worker".to_owned()), instance: Some(124) },
                View::Target { target: None, instance: Some(9) },
            ]
        );
    }
}
