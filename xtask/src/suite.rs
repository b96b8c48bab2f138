//! The workspace's test suite as CI runs it (issue 13): every test, including the
//! ones `#[ignore = "needs …"]`d because they need something a developer's machine
//! may lack (util-linux's `script`, pid namespaces, …). A test never skips itself
//! and passes: it is ignored with its reason, CI provides the prerequisite where it
//! can (installing a Debian package, or finding the kernel allows it) and runs it,
//! and the summary says which ignored tests ran and which stayed ignored, and why.
//!
//! The suite runs under cargo-nextest when it is installed (every test of every
//! binary in one pool, so a slow binary no longer holds the others up), with the
//! doctests (which nextest does not run) by `cargo test --doc`; else under plain
//! `cargo test`.
//!
//! All in one cargo invocation, so cargo unifies features across the workspace:
//! the core's tests are built with the CLI's `notifications` and `metrics` (and
//! link notify-rust and prometheus-client), which its metrics and notifier tests
//! need anyway. Running the core's and the probe's tests in an invocation of
//! their own, without them, was measured (issue 13, on the 2-core CI machine) to
//! cost more than 90 s per run: the run phase alone went from 127 s in one pool
//! to at least 170 s in two (98 s + 72 s), before the extra builds of the core
//! (without its features, and again with them for the feature-gated tests).
//! `cargo test -p leakwatch-core` builds them without.

use crate::util::{cargo, ensure_debian_packages, workspace_root};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A test that is `#[ignore]`d in the sources, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IgnoredTest {
    /// The test function's name (the last segment of its test path).
    pub(crate) name: String,
    pub(crate) reason: String,
    /// Where it is, relative to the workspace.
    pub(crate) file: PathBuf,
}

/// A prerequisite some tests declare (`#[ignore = "needs <key> …"]`) and how CI
/// provides it: `Ok(None)` when it is there (after installing it, where it can be),
/// `Ok(Some(why))` when this machine cannot have it.
struct Prerequisite {
    key: &'static str,
    provide: fn() -> Result<Option<String>>,
}

const PREREQUISITES: [Prerequisite; 6] = [
    Prerequisite { key: "needs util-linux `script`", provide: provide_script },
    Prerequisite { key: "needs systemd-analyze", provide: provide_systemd_analyze },
    Prerequisite { key: "needs pid namespaces", provide: provide_pid_namespaces },
    Prerequisite { key: "needs pidfds", provide: provide_pidfds },
    Prerequisite { key: "needs orphans to go to pid 1", provide: provide_init_reaper },
    Prerequisite {
        key: "needs a descriptor limit of at least 10,200",
        provide: provide_descriptor_limit,
    },
];

/// The descriptors `holds_ten_thousand_descriptors` needs (10,000 and some for the
/// helper's own): its `lw-helper` raises its soft limit to the hard one.
const DESCRIPTOR_LIMIT: u64 = 10_200;

/// How long one step of CI took, for the summary.
#[derive(Debug)]
pub(crate) struct Timing {
    pub(crate) step: String,
    pub(crate) took: Duration,
}

/// Runs `f` as the CI step `step`, timing it.
pub(crate) fn timed(
    timings: &mut Vec<Timing>,
    step: &str,
    f: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let start = Instant::now();
    let result = f();
    timings.push(Timing { step: step.to_owned(), took: start.elapsed() });
    eprintln!("xtask: {step}: {:.1} s", start.elapsed().as_secs_f64());
    result
}

/// Prints the steps' wall times, the total, and the tests' total.
pub(crate) fn print_timings(timings: &[Timing]) {
    eprintln!("\nxtask ci: wall time per step");
    let mut total = Duration::ZERO;
    for timing in timings {
        total += timing.took;
        eprintln!("  {:<34} {:>8.1} s", timing.step, timing.took.as_secs_f64());
    }
    eprintln!("  {:<34} {:>8.1} s", "total", total.as_secs_f64());
}

/// Runs the workspace's tests (see the module's docs) and reports the ignored ones.
pub(crate) fn run(timings: &mut Vec<Timing>) -> Result<()> {
    let ignored = find_ignored(&workspace_root())?;
    let mut ran = Vec::new();
    let mut left = Vec::new();
    for test in &ignored {
        let Some(prerequisite) = PREREQUISITES.iter().find(|p| test.reason.starts_with(p.key))
        else {
            if test.reason.starts_with("needs ") {
                bail!(
                    "{}: `{}` is ignored for \"{}\", a prerequisite xtask does not know: add it \
                     to PREREQUISITES in xtask/src/suite.rs",
                    test.file.display(),
                    test.name,
                    test.reason
                );
            }
            // Not a prerequisite: the child process of another test, run by it.
            left.push((test, test.reason.clone()));
            continue;
        };
        match (prerequisite.provide)()? {
            None => ran.push(test),
            Some(why) => left.push((test, why)),
        }
    }
    let skip: Vec<&str> = left.iter().map(|(test, _)| test.name.as_str()).collect();
    let nextest = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if nextest {
        timed(timings, "tests (cargo nextest)", || {
            crate::util::run(cargo().args(nextest_args(&skip)))
        })?;
        timed(timings, "doctests (cargo test --doc)", || {
            crate::util::run(cargo().args(["test", "--workspace", "--locked", "--doc"]))
        })?;
    } else {
        eprintln!("xtask: cargo-nextest is not installed; running the tests with cargo test");
        timed(timings, "tests (cargo test)", || {
            crate::util::run(cargo().args(cargo_test_args(&skip)))
        })?;
    }
    eprintln!("\nxtask: ignored tests that ran (CI provides what they need):");
    for test in &ran {
        eprintln!("  ran      {} ({}): {}", test.name, test.file.display(), test.reason);
    }
    eprintln!("xtask: ignored tests that did not run:");
    for (test, why) in &left {
        eprintln!("  ignored  {} ({}): {why}", test.name, test.file.display());
    }
    Ok(())
}

/// nextest: every test, the ignored ones included, except those in `skip`.
fn nextest_args(skip: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["nextest", "run", "--workspace", "--locked", "--run-ignored", "all", "--no-fail-fast"]
            .map(str::to_owned)
            .to_vec();
    if !skip.is_empty() {
        let names: Vec<String> = skip.iter().map(|name| format!("test(/(^|::){name}$/)")).collect();
        args.push("-E".to_owned());
        args.push(format!("not ({})", names.join(" | ")));
    }
    args
}

/// cargo test: the same selection through libtest's flags (`--skip` matches a
/// substring of the test's path, and the names here are whole function names).
fn cargo_test_args(skip: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["test", "--workspace", "--locked", "--", "--include-ignored"].map(str::to_owned).to_vec();
    for name in skip {
        args.push("--skip".to_owned());
        args.push((*name).to_owned());
    }
    args
}

/// Every `#[ignore]`d test function in the workspace's crates (their `src/` and
/// `tests/`), found by parsing them.
pub(crate) fn find_ignored(root: &Path) -> Result<Vec<IgnoredTest>> {
    let mut dirs = vec![root.join("src-tauri"), root.join("xtask")];
    for entry in std::fs::read_dir(root.join("crates")).context("could not list crates/")? {
        dirs.push(entry?.path());
    }
    let mut files = Vec::new();
    for dir in dirs {
        for sub in ["src", "tests"] {
            rust_files(&dir.join(sub), &mut files);
        }
    }
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("could not read {}", file.display()))?;
        let parsed = syn::parse_file(&text)
            .with_context(|| format!("could not parse {}", file.display()))?;
        let shown = file.strip_prefix(root).unwrap_or(&file).to_path_buf();
        ignored_in(&parsed.items, &shown, &mut found);
    }
    Ok(found)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn ignored_in(items: &[syn::Item], file: &Path, out: &mut Vec<IgnoredTest>) {
    for item in items {
        match item {
            syn::Item::Mod(module) => {
                if let Some((_, items)) = &module.content {
                    ignored_in(items, file, out);
                }
            }
            syn::Item::Fn(function) => {
                let is_test = function.attrs.iter().any(|a| a.path().is_ident("test"));
                let reason = function.attrs.iter().find_map(|attr| {
                    if !attr.path().is_ident("ignore") {
                        return None;
                    }
                    match &attr.meta {
                        syn::Meta::NameValue(syn::MetaNameValue {
                            value: syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(text), .. }),
                            ..
                        }) => Some(text.value()),
                        _ => Some(String::new()),
                    }
                });
                if let (true, Some(reason)) = (is_test, reason) {
                    out.push(IgnoredTest {
                        name: function.sig.ident.to_string(),
                        reason,
                        file: file.to_path_buf(),
                    });
                }
            }
            _ => {}
        }
    }
}

/// Whether `program` runs (`--version` exits 0).
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn install_for(program: &str, package: &str) -> Result<Option<String>> {
    if !runs(program, &["--version"])
        && let Err(e) = ensure_debian_packages(&[package])
    {
        return Ok(Some(format!("`{program}` is missing and could not be installed: {e}")));
    }
    Ok((!runs(program, &["--version"])).then(|| format!("`{program}` does not run here")))
}

fn provide_script() -> Result<Option<String>> {
    install_for("script", "bsdutils")
}

fn provide_systemd_analyze() -> Result<Option<String>> {
    install_for("systemd-analyze", "systemd")
}

fn provide_pid_namespaces() -> Result<Option<String>> {
    install_for("unshare", "util-linux")?;
    // As the tests do it: as root, or in a user namespace where this user is root.
    let inside = ["sh", "-c", "echo 100 > /proc/sys/kernel/ns_last_pid"];
    let plain = ["--pid", "--fork", "--mount-proc"];
    let user = ["--user", "--map-root-user", "--pid", "--fork", "--mount-proc"];
    let works = |args: &[&str]| runs("unshare", &[args, &inside[..]].concat());
    Ok((!works(&plain) && !works(&user)).then(|| {
        "`unshare --pid --fork --mount-proc` with a writable ns_last_pid is not permitted here \
         (needs root, or unprivileged user namespaces)"
            .to_owned()
    }))
}

fn provide_pidfds() -> Result<Option<String>> {
    // pidfd_open(2) came with Linux 5.3.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release.trim().split(['.', '-']).map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    Ok((version < (5, 3))
        .then(|| format!("Linux {} has no pidfd_open (5.3 or later)", release.trim())))
}

fn provide_descriptor_limit() -> Result<Option<String>> {
    // The tests inherit xtask's hard limit; only root could raise it.
    Ok(descriptor_limit_missing(&shell_output("ulimit -Hn")?))
}

/// Why a hard descriptor limit of `hard` (as `ulimit -Hn` prints it) is not enough.
fn descriptor_limit_missing(hard: &str) -> Option<String> {
    let enough = hard == "unlimited" || hard.parse::<u64>().is_ok_and(|n| n >= DESCRIPTOR_LIMIT);
    (!enough).then(|| {
        format!("the hard descriptor limit here is {hard}, below {DESCRIPTOR_LIMIT} (`ulimit -Hn`)")
    })
}

/// What `sh -c script` prints, trimmed.
fn shell_output(script: &str) -> Result<String> {
    let out = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .output()
        .context("could not run sh")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn provide_init_reaper() -> Result<Option<String>> {
    // Orphan a `sleep` and see who adopts it: a subreaper above xtask (a service
    // manager, some container inits) takes orphans instead of pid 1.
    let pid = shell_output("sleep 30 >/dev/null 2>&1 & echo $!")?;
    let mut parent = None;
    for _ in 0..50 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        parent = stat
            .rfind(')')
            .and_then(|end| stat[end + 2..].split_whitespace().nth(1).map(str::to_owned));
        if parent.as_deref().is_some_and(|p| p != "0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill").arg(&pid).status();
    Ok(match parent.as_deref() {
        Some("1") => None,
        Some(other) => Some(format!("orphans here go to subreaper {other}, not to pid 1")),
        None => Some("could not see where an orphan goes".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_tests_are_found_with_their_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let tests = dir.path().join("crates/demo/tests");
        std::fs::create_dir_all(&tests).unwrap();
        std::fs::write(
            tests.join("it.rs"),
            "#[test]\nfn plain() {}\n\
             #[test]\n#[ignore = \"needs util-linux `script` (Debian: bsdutils)\"]\nfn on_a_tty() {}\n\
             mod inner {\n  #[test]\n  #[ignore]\n  fn bare() {}\n  #[ignore = \"x\"]\n  fn not_a_test() {}\n}\n",
        )
        .unwrap();
        let found = find_ignored(dir.path()).unwrap();
        let names: Vec<(&str, &str)> =
            found.iter().map(|t| (t.name.as_str(), t.reason.as_str())).collect();
        assert_eq!(
            names,
            vec![("on_a_tty", "needs util-linux `script` (Debian: bsdutils)"), ("bare", "")]
        );
        assert_eq!(found[0].file, Path::new("crates/demo/tests/it.rs"));
    }

    #[test]
    fn every_needs_reason_in_the_workspace_is_a_known_prerequisite() {
        for test in find_ignored(&workspace_root()).unwrap() {
            if test.reason.starts_with("needs ") {
                assert!(PREREQUISITES.iter().any(|p| test.reason.starts_with(p.key)), "{test:?}");
            }
        }
    }

    #[test]
    fn a_low_hard_descriptor_limit_leaves_the_ten_thousand_descriptor_test_ignored() {
        assert_eq!(descriptor_limit_missing("20000"), None);
        assert_eq!(descriptor_limit_missing("unlimited"), None);
        let why = descriptor_limit_missing("4096").unwrap();
        assert!(why.contains("4096") && why.contains("10200"), "{why}");
        assert!(descriptor_limit_missing("").is_some());
    }

    #[test]
    fn skipped_tests_are_left_out_of_both_runners() {
        let next = nextest_args(&["a_b", "c"]);
        assert_eq!(next.last().unwrap(), "not (test(/(^|::)a_b$/) | test(/(^|::)c$/))");
        assert!(next.contains(&"--run-ignored".to_owned()));
        let plain = cargo_test_args(&["a_b"]);
        assert_eq!(plain[plain.len() - 3..], ["--include-ignored", "--skip", "a_b"]);
    }
}
