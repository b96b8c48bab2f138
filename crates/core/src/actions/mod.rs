//! Everything Leakwatch does *to* processes, kept in one folder so the rule
//! "nothing outside `core::actions` sends a signal" (DESIGN.md) is visible in the
//! tree: [`kill`] (the one escalation routine), [`restart`] (graceful restarts and
//! their circuit breaker), [`service`] (launchd and systemd, asked to restart what
//! they supervise) and [`locate`] (finding the process behind a target, which every
//! action needs first).
//!
//! Layering: actions use the foundation (model, tree, escape, summary), config and
//! the store's snapshot type; the engine, autopilot and faces use actions, never
//! the reverse.

pub mod kill;
pub mod locate;
pub mod restart;
pub mod service;
