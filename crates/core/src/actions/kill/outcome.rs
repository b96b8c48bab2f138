//! What a kill run reports per process ([`Outcome`]) and why ([`Refusal`],
//! [`Survival`]), plus the signals it sends ([`Sig`]): the vocabulary the
//! planner, the guard and the escalation share, so it sits below all three.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What happened to one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Gone before it was frozen or SIGKILLed: it exited on SIGTERM (its own, or
    /// its parent's clean-up).
    ExitedAfterTerm,
    /// Gone after it was frozen (SIGSTOP) or SIGKILLed: it outlived SIGTERM and
    /// its grace. A frozen process cannot exit by itself; one that vanishes before
    /// its SIGKILL was killed by the kernel's job control (see the module docs).
    Killed,
    /// Gone (or a zombie) before the first signal was sent.
    AlreadyGone,
    /// Before the first signal, its pid already belonged to another process (a
    /// different start time): it was gone, and the newcomer was left alone.
    IdentityChanged,
    /// Never signalled: a protection of DESIGN.md ("Identity").
    Protected { reason: Refusal },
    /// Still there at the end, and why (uninterruptible, a signal refused, ...).
    Survived { reason: Survival },
}

/// An [`Outcome`] without its reason: what reports are counted and filtered by
/// ([`KillReport::with_outcome`](super::KillReport::with_outcome)). Its serde names are the `outcome` values of
/// the JSON, DESIGN.md's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    ExitedAfterTerm,
    Killed,
    AlreadyGone,
    IdentityChanged,
    Protected,
    Survived,
}

impl OutcomeKind {
    /// Every kind, in the order of the escalation's report (gone first).
    pub const ALL: [OutcomeKind; 6] = [
        OutcomeKind::ExitedAfterTerm,
        OutcomeKind::Killed,
        OutcomeKind::AlreadyGone,
        OutcomeKind::IdentityChanged,
        OutcomeKind::Protected,
        OutcomeKind::Survived,
    ];

    /// The canonical name, as in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            OutcomeKind::ExitedAfterTerm => "exited_after_term",
            OutcomeKind::Killed => "killed",
            OutcomeKind::AlreadyGone => "already_gone",
            OutcomeKind::IdentityChanged => "identity_changed",
            OutcomeKind::Protected => "protected",
            OutcomeKind::Survived => "survived",
        }
    }
}

impl fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a process is left alone: one of the fixed protections of DESIGN.md
/// ("Identity"), the config's `protect` list, or (for a root pinned by
/// identity) that it no longer runs. In JSON an object tagged by `code`; its
/// [`Display`](fmt::Display) is the sentence the CLI prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    /// pid 0 (the scheduler, or "every process in my group" to kill(2)).
    PidZero,
    /// pid 1: init or launchd.
    Init,
    /// Leakwatch's own process.
    Leakwatch,
    /// The process that started Leakwatch.
    LeakwatchParent,
    /// Any further ancestor of Leakwatch.
    LeakwatchAncestor,
    KernelThread,
    /// Another user's, and Leakwatch runs as root without `allow_other_users`.
    OtherUserNotAllowed {
        uid: u32,
    },
    /// Another user's, and Leakwatch does not run as root (`own_uid`).
    OtherUser {
        uid: u32,
        own_uid: u32,
    },
    /// Its name or argv\[0\] matches this `protect` pattern.
    ProtectPattern {
        pattern: String,
    },
    /// Not in the process table: a thread id, or a process of `uid` this user
    /// may not inspect.
    Unreadable {
        uid: u32,
    },
    /// A root pinned by identity that has exited.
    NotRunning,
    /// A root pinned by identity whose pid now belongs to another process.
    PidReused {
        pid: u32,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::PidZero => f.write_str("pid 0 is never signalled"),
            Refusal::Init => f.write_str("pid 1 (init) is never signalled"),
            Refusal::Leakwatch => f.write_str("it is leakwatch itself"),
            Refusal::LeakwatchParent => f.write_str("it is leakwatch's parent"),
            Refusal::LeakwatchAncestor => f.write_str("it is an ancestor of leakwatch"),
            Refusal::KernelThread => f.write_str("it is a kernel thread"),
            Refusal::OtherUserNotAllowed { uid } => write!(
                f,
                "it belongs to uid {uid}; other users' processes need allow_other_users = true \
                 in the config"
            ),
            Refusal::OtherUser { uid, own_uid } => write!(
                f,
                "it belongs to uid {uid}, not to you (uid {own_uid}); only root may signal other \
                 users' processes, with allow_other_users = true"
            ),
            Refusal::ProtectPattern { pattern } => {
                write!(f, "it matches the protect pattern `{pattern}`")
            }
            Refusal::Unreadable { uid } => write!(
                f,
                "it is not in the process table (a thread id, or a process of uid {uid} this user \
                 may not inspect)"
            ),
            Refusal::NotRunning => f.write_str("no longer running"),
            Refusal::PidReused { pid } => {
                write!(f, "no longer running: pid {pid} now belongs to another process")
            }
        }
    }
}

/// Why a process is still there at the end of the escalation. In JSON an object
/// tagged by `code`; its [`Display`](fmt::Display) is the CLI's wording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Survival {
    /// In uninterruptible sleep (D state): no signal acts until its I/O ends.
    Uninterruptible,
    /// Stopped by a debugger, which holds it.
    Traced,
    /// Still running after SIGKILL (and the confirmation wait).
    AfterSigkill,
    /// Still running, no SIGKILL having been sent to it.
    StillRunning,
    /// Sending `signal` failed with `error` ("permission denied", ...).
    SignalFailed { signal: Sig, error: String },
    /// Its state could not be read (`error` says why).
    Unreadable { error: String },
    /// The run ended without an outcome for it (never expected).
    Unknown,
}

impl fmt::Display for Survival {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Survival::Uninterruptible => f.write_str("uninterruptible (D state)"),
            Survival::Traced => f.write_str("traced by a debugger"),
            Survival::AfterSigkill => f.write_str("still running after SIGKILL"),
            Survival::StillRunning => f.write_str("still running"),
            Survival::SignalFailed { signal, error } => {
                write!(f, "{} failed: {error}", signal.name())
            }
            Survival::Unreadable { error } => write!(f, "could not be read: {error}"),
            Survival::Unknown => f.write_str("unknown"),
        }
    }
}

impl Outcome {
    /// What happened, without why.
    pub const fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::ExitedAfterTerm => OutcomeKind::ExitedAfterTerm,
            Outcome::Killed => OutcomeKind::Killed,
            Outcome::AlreadyGone => OutcomeKind::AlreadyGone,
            Outcome::IdentityChanged => OutcomeKind::IdentityChanged,
            Outcome::Protected { .. } => OutcomeKind::Protected,
            Outcome::Survived { .. } => OutcomeKind::Survived,
        }
    }

    /// The canonical name, as in JSON.
    pub const fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Why, in words, for `protected` and `survived`.
    pub fn reason(&self) -> Option<String> {
        match self {
            Outcome::Protected { reason } => Some(reason.to_string()),
            Outcome::Survived { reason } => Some(reason.to_string()),
            _ => None,
        }
    }

    /// Whether the recorded process no longer runs.
    pub const fn is_gone(&self) -> bool {
        matches!(
            self,
            Outcome::ExitedAfterTerm
                | Outcome::Killed
                | Outcome::AlreadyGone
                | Outcome::IdentityChanged
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(reason) => write!(f, "{} ({reason})", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// The signals of the escalation. In JSON by their usual names (`"SIGTERM"`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Sig {
    #[serde(rename = "SIGTERM")]
    Term,
    #[serde(rename = "SIGSTOP")]
    Stop,
    #[serde(rename = "SIGCONT")]
    Cont,
    #[serde(rename = "SIGKILL")]
    Kill,
}

impl Sig {
    /// `SIGTERM`, as in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Sig::Term => "SIGTERM",
            Sig::Stop => "SIGSTOP",
            Sig::Cont => "SIGCONT",
            Sig::Kill => "SIGKILL",
        }
    }
}
