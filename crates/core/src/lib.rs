//! `leakwatch-core` is Leakwatch's one engine, shared by the CLI, the daemon and the
//! menubar app so that all of them show the same numbers. Everything here is pure
//! logic over the plain data of `leakwatch-probe`: summaries of descriptor tables,
//! process trees, and (as the engine grows) trend, rules and actions. Being pure,
//! it is tested with made-up snapshots as well as real processes.

pub mod api;
pub mod attach;
pub mod autopilot;
pub mod config;
pub mod config_edit;
pub mod config_form;
pub mod config_source;
pub mod diagnose;
pub mod engine;
pub mod escape;
pub mod http;
pub mod kill;
pub mod locate;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod model;
pub mod notifier;
pub mod orphans;
pub mod owner;
pub mod private;
pub mod restart;
pub mod rules;
pub mod service;
pub mod status;
pub mod store;
pub mod summary;
#[cfg(test)]
mod test_noise;
pub mod throttle;
pub mod tree;
pub mod trend;
pub mod window;

pub use config::{Config, ConfigError, RuleSpec};
pub use config_source::ConfigSource;
pub use rules::{MetricValue, RuleOutcome, RuleState};
pub use store::{
    Opened, PruneReport, Retention, SeriesId, SeriesInfo, Snapshot, Store, StoreError,
};
pub use summary::{Companion, EndpointGroup, FdSummary, PathGroup};
pub use tree::{ProcessTree, TreeNode};
pub use trend::Trend;
