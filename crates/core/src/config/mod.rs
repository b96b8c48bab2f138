//! The TOML configuration: what to watch, how to find and restart it, and when to
//! warn. It exists as its own pure module so that every face (CLI, daemon, app)
//! reads one file the same way, and so that a bad file is caught with a message a
//! person can fix at once: every error names the file, the line, the key and what
//! was expected, e.g.
//! `~/.config/leakwatch/config.toml:12: watch[0].interval: expected a duration like "2s" or "1h", found "2x"`.
//!
//! The document is parsed into toml's spanned tree ([`toml::de::DeTable`]) and
//! validated by hand rather than through `serde` derive: only that way does every
//! semantic error (two selectors, an unknown metric, a bad glob, a duplicate name)
//! carry the line of the key that caused it, not just the syntax errors. Unknown
//! keys are errors, with a "did you mean" where one is close.
//!
//! Layout: `schema` holds the model and its limits, `rule` the rule vocabulary,
//! `document` and `parser` the validating walk (with `suggest`'s did-you-mean),
//! `load` the paths and queries, `example.toml` the commented example;
//! [`source`] says where the file comes from, [`edit`] and [`form`] change the
//! user's file in place.
//!
//! Layering: the config sits just above the foundation and uses nothing else
//! (`model`, `units`, `private`). The rule vocabulary lives here and rule
//! evaluation in `crate::rules`, above; proposing a locator for a running
//! process, which asks the actions' `locate`, lives in `crate::proposal`.

mod document;
pub mod edit;
pub mod form;
mod load;
mod parser;
mod rule;
mod schema;
pub mod source;
mod suggest;
#[cfg(test)]
mod tests;

pub use document::parse_bytes;
pub use load::protect_match;
pub use rule::{
    DEFAULT_COOLDOWN, DEFAULT_SAMPLES, Direction, Metric, PathGlob, RuleMap, RuleSpec, Threshold,
    builtin_rules,
};
pub use schema::*;
