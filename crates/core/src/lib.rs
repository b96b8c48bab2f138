//! `leakwatch-core` is Leakwatch's one engine, shared by the CLI, the daemon and the
//! menubar app so that all of them show the same numbers. Everything here is pure
//! logic over the plain data of `leakwatch-probe`: summaries of descriptor tables,
//! process trees, and (as the engine grows) trend, rules and actions. Being pure,
//! it is tested with made-up snapshots as well as real processes.
//!
//! # Layers
//!
//! The modules form layers, low to high; a module uses only modules below it or
//! beside it in its own layer, never above, and no two modules use each other
//! (`cargo xtask cycles`, run by `cargo xtask ci`, fails on a cycle, and on a
//! use of a module from a layer above, by the list below):
//!
//! 1. foundation: `model` (processes, samples, events and their subject), `units`, `escape`, `private`,
//!    `throttle`, `http`, `summary`, `tree`, `owner` (the data directory's lock and
//!    who holds it, which the state reports);
//! 2. `config` (schema, parser, source, edit, form, and the rule vocabulary);
//! 3. analysis: `trend`, `window`, `rules` (evaluation), `diagnose`, `orphans`;
//! 4. `store`;
//! 5. `actions` (kill, restart, service, locate), `proposal` (what Watch proposes);
//! 6. `status` (the engine's state as data), `command` (what faces
//!    ask the engine), `relay` (its statuses and events in the engine's order);
//! 7. `engine` (with its autopilot), `api`, `attach`, and the faces' optional
//!    parts: `metrics` (feature `metrics`) and the desktop notifier, `notifier`
//!    (feature `notifications`), which the CLI and the app turn on.

pub mod actions;
pub mod api;
pub mod attach;
pub mod command;
pub mod config;
pub mod diagnose;
pub mod engine;
pub mod escape;
pub mod http;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod model;
pub mod notifier;
pub mod orphans;
pub mod owner;
pub mod private;
pub mod proposal;
pub mod relay;
pub mod rules;
pub mod status;
pub mod store;
pub mod summary;
#[cfg(test)]
mod test_noise;
pub mod throttle;
pub mod tree;
pub mod trend;
pub mod units;
pub mod window;

pub use config::{Config, ConfigError, RuleSpec};
// The old top-level paths of the config's source, edit and form, kept for the
// other crates (they moved into `config/`).
pub use config::{edit as config_edit, form as config_form, source as config_source};
pub use config_source::ConfigSource;
pub use rules::{MetricValue, RuleOutcome, RuleState};
pub use store::{
    Opened, PruneReport, Retention, SeriesId, SeriesInfo, Snapshot, Store, StoreError,
};
pub use summary::{Companion, EndpointGroup, FdSummary, PathGroup};
pub use tree::{ProcessTree, TreeNode};
pub use trend::Trend;
