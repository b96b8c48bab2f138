//! Says what is leaking and why. The engine and `leakwatch explain` keep each
//! descriptor's identity across reads ([`survivors`]), so what a process opened
//! and kept can be told from what it opened and closed; the shape of what it kept
//! is then matched against the leaks Leakwatch knows ([`signatures`]). Pure logic:
//! tables in, findings out.

pub mod mark;
pub mod signatures;
pub mod survivors;

pub use mark::{Mark, MarkError, SinceMark};
pub use signatures::{
    ChildFacts, ChildTable, Confidence, Diagnosis, Evidence, Finding, OrphanFacts, Signature,
    diagnose,
};
pub use survivors::{Baseline, BaselineReason, SurvivorGroup, Survivors};
