//! The protections: what may never be signalled ([`Guard`], from the config) and
//! the fixed ones no setting lifts ([`Shield`]), checked when planning and again
//! before every signal.

use super::outcome::Refusal;
use crate::config::Config;
use crate::tree::ProcessTree;
use leakwatch_probe::ProcessInfo;
use regex::Regex;
use std::collections::HashSet;

/// What may never be signalled, beyond the fixed protections (pid 0 and 1,
/// leakwatch and its ancestors, kernel threads), which no setting can lift.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// Processes whose name or argv\[0\] (whole, or its last path component)
    /// matches one of these are never signalled.
    pub protect: Vec<Regex>,
    /// Root only: whether other users' processes may be signalled. Without root
    /// they never are, whatever this says.
    pub allow_other_users: bool,
}

impl Guard {
    /// The config's `protect` list and `allow_other_users`.
    pub fn from_config(config: &Config) -> Guard {
        Guard { protect: config.protect.clone(), allow_other_users: config.allow_other_users }
    }

    /// Why `process` must not be signalled, or `None` if it may be. `table` (a
    /// recent process table) finds leakwatch's ancestors; without it only the
    /// direct parent is known. For UIs that mark protected processes; [`plan`](super::plan) and
    /// [`execute`](super::execute) check this themselves.
    pub fn refusal(&self, process: &ProcessInfo, table: Option<&[ProcessInfo]>) -> Option<Refusal> {
        Shield::new(table).check(self, process)
    }
}

/// The fixed protections, with what they need to know about leakwatch itself.
#[derive(Debug)]
pub(super) struct Shield {
    pub(super) me: u32,
    pub(super) parent: Option<u32>,
    pub(super) ancestors: HashSet<u32>,
    pub(super) uids: [u32; 2],
    pub(super) root: bool,
}

impl Shield {
    pub(super) fn new(table: Option<&[ProcessInfo]>) -> Shield {
        let me = std::process::id();
        let parent = parent_pid();
        let mut ancestors: HashSet<u32> = parent.into_iter().collect();
        if let Some(table) = table {
            ancestors.extend(ProcessTree::new(table).ancestors(me).iter().map(|p| p.id.pid));
        }
        let (uid, euid) = own_uids();
        Shield { me, parent, ancestors, uids: [uid, euid], root: euid == 0 }
    }

    /// Why `p` must not be signalled, or `None`.
    pub(super) fn check(&self, guard: &Guard, p: &ProcessInfo) -> Option<Refusal> {
        let pid = p.id.pid;
        if pid == 0 {
            return Some(Refusal::PidZero);
        }
        if pid == 1 {
            return Some(Refusal::Init);
        }
        if pid == self.me {
            return Some(Refusal::Leakwatch);
        }
        if Some(pid) == self.parent {
            return Some(Refusal::LeakwatchParent);
        }
        if self.ancestors.contains(&pid) {
            return Some(Refusal::LeakwatchAncestor);
        }
        if p.is_kernel_thread {
            return Some(Refusal::KernelThread);
        }
        let permitted = self.uids.contains(&p.uid) || (self.root && guard.allow_other_users);
        if !permitted {
            return Some(if self.root {
                Refusal::OtherUserNotAllowed { uid: p.uid }
            } else {
                Refusal::OtherUser { uid: p.uid, own_uid: self.uids[1] }
            });
        }
        if let Some(re) = crate::config::protect_match(
            &guard.protect,
            &p.name,
            p.argv.first().map(String::as_str),
        ) {
            return Some(Refusal::ProtectPattern { pattern: re.as_str().to_owned() });
        }
        None
    }
}

#[cfg(unix)]
fn parent_pid() -> Option<u32> {
    Some(std::os::unix::process::parent_id()).filter(|&p| p != 0)
}

#[cfg(not(unix))]
fn parent_pid() -> Option<u32> {
    None
}

/// Real and effective uid.
#[cfg(unix)]
pub(super) fn own_uids() -> (u32, u32) {
    (nix::unistd::getuid().as_raw(), nix::unistd::geteuid().as_raw())
}

#[cfg(not(unix))]
pub(super) fn own_uids() -> (u32, u32) {
    (u32::MAX, u32::MAX)
}
