//! `cargo xtask ci`: the one command CI and developers run. Every check a change
//! must pass is listed here, in the order that fails fastest.

use crate::util::{cargo, ensure_debian_packages, run as run_command};
use anyhow::Result;

/// Debian packages the tests run: `prometheus` (with `promtool`).
pub(crate) const TEST_PACKAGES: [&str; 1] = ["prometheus"];

pub(crate) fn run() -> Result<()> {
    run_command(cargo().args(["fmt", "--all", "--check"]))?;
    // Cheap, and a source changed without its renders fails here, not in a bundle.
    crate::icons::run(true)?;
    // The menubar app links WebKitGTK and friends, and embeds the built UI.
    ensure_debian_packages(&crate::ui::APP_PACKAGES)?;
    crate::ui::build()?;
    run_command(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Tests run Debian's Prometheus against the daemon, and promtool on the
    // packaged alert rules (crates/cli/tests/prometheus.rs).
    ensure_debian_packages(&TEST_PACKAGES)?;
    run_command(cargo().args(["test", "--workspace", "--locked"]))?;
    crate::ui::check_bindings_current()?;
    crate::ui::test()?;
    crate::e2e::run_e2e()?;
    crate::dist::ci_check()?;
    crate::macos_check::run()?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}
