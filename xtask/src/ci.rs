//! `cargo xtask ci`: the one command CI and developers run. Every check a change
//! must pass is listed here, in the order that fails fastest; each step's wall
//! time is printed at the end (issue 13: the suite's time is watched, so it can
//! only go down knowingly).

use crate::suite::{Timing, print_timings, timed};
use crate::util::{cargo, ensure_debian_packages, run as run_command};
use anyhow::Result;

/// Debian packages the tests run: `prometheus` (with `promtool`).
pub(crate) const TEST_PACKAGES: [&str; 1] = ["prometheus"];

pub(crate) fn run() -> Result<()> {
    let mut timings = Vec::new();
    let result = steps(&mut timings);
    print_timings(&timings);
    result?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}

fn steps(timings: &mut Vec<Timing>) -> Result<()> {
    timed(timings, "fmt", || run_command(cargo().args(["fmt", "--all", "--check"])))?;
    // Cheap, and a source changed without its renders fails here, not in a bundle.
    timed(timings, "icons", || crate::icons::run(true))?;
    // Cheap and independent of a build: the layering and the UI's types.
    timed(timings, "module cycles", crate::cycles::run)?;
    timed(timings, "UI wire types", crate::ui::check_generated_types_only)?;
    // The menubar app links WebKitGTK and friends, and embeds the built UI.
    ensure_debian_packages(&crate::ui::APP_PACKAGES)?;
    timed(timings, "UI build", crate::ui::build)?;
    timed(timings, "clippy", || {
        crate::util::run_checking_stderr(
            cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ]),
            ts_rs_serde_mismatches,
        )
    })?;
    // Tests run Debian's Prometheus against the daemon, and promtool on the
    // packaged alert rules (crates/cli/tests/prometheus.rs).
    ensure_debian_packages(&TEST_PACKAGES)?;
    crate::suite::run(timings)?;
    timed(timings, "bindings current", crate::ui::check_bindings_current)?;
    timed(timings, "UI checks and tests", crate::ui::test)?;
    timed(timings, "e2e", crate::e2e::run_e2e)?;
    timed(timings, "dist check", crate::dist::ci_check)?;
    timed(timings, "macOS check", crate::macos_check::run)?;
    Ok(())
}

/// Serde attributes ts-rs does not read but that cannot make the TypeScript differ
/// from the JSON: `other` (a catch-all variant) and `alias` (another name accepted,
/// e.g. an older engine's `target` for an event's subject), both read when
/// deserializing only, and `transparent` (ts-rs writes a newtype as its field
/// anyway).
const HARMLESS_SERDE: [&str; 3] = ["alias", "other", "transparent"];

/// ts-rs prints (a proc macro cannot raise) a warning for each serde attribute it
/// does not understand: the TypeScript it writes may then not match the JSON
/// (issue 13 turned these warnings back on). Returns each such attribute but the
/// harmless ones, from the build's stderr.
fn ts_rs_serde_mismatches(lines: &[String]) -> Vec<String> {
    let plain: Vec<String> = lines.iter().map(|line| strip_ansi(line)).collect();
    let mut found = Vec::new();
    for (i, line) in plain.iter().enumerate() {
        if !line.contains("failed to parse serde attribute") {
            continue;
        }
        // "  | <attribute> <tokens>", after an empty "  | ".
        let attribute = plain[i + 1..]
            .iter()
            .take(3)
            .filter_map(|l| l.trim().strip_prefix('|').map(str::trim))
            .find(|l| !l.is_empty())
            .unwrap_or("?");
        let name = attribute.split_whitespace().next().unwrap_or("?");
        if !HARMLESS_SERDE.contains(&name) {
            found.push(format!(
                "ts-rs cannot read `#[serde({attribute})]`: the generated TypeScript may not \
                 match the JSON (use `with` and `#[ts(type)]`, or `#[ts(...)]` to say it)"
            ));
        }
    }
    found
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ts_rs_serde_mismatches;

    fn warning(attribute: &str) -> Vec<String> {
        [
            "\u{1b}[1;33mwarning\u{1b}[0m: failed to parse serde attribute".to_owned(),
            "  | ".to_owned(),
            format!("  | {attribute}"),
            "  | ".to_owned(),
            "  = note: ts-rs failed to parse this attribute. It will be ignored.".to_owned(),
        ]
        .to_vec()
    }

    #[test]
    fn serde_attributes_ts_rs_ignores_fail_unless_harmless() {
        assert!(ts_rs_serde_mismatches(&warning("other ")).is_empty());
        assert!(ts_rs_serde_mismatches(&warning("transparent ")).is_empty());
        let found = ts_rs_serde_mismatches(&warning("serialize_with = \"secs\""));
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("serialize_with = \"secs\""), "{found:?}");
        assert!(ts_rs_serde_mismatches(&warning("alias = \"target\"")).is_empty());
        let mut both = warning("serialize_with = \"x\"");
        both.extend(warning("other"));
        assert_eq!(ts_rs_serde_mismatches(&both).len(), 1);
        assert!(ts_rs_serde_mismatches(&["warning: unused".to_owned()]).is_empty());
    }
}
