//! `cargo xtask dist [--debug] [--check]`: the menubar app as a Debian package,
//! built by Tauri's own bundler (`@tauri-apps/cli`, pinned in ui/package.json to
//! the `tauri` crate's version and installed by `npm ci`, so no global tool and
//! nothing outside npm and crates.io is fetched). Only the `.deb`: an AppImage
//! would download its tooling at build time. The package also carries the
//! `leakwatch` CLI as /usr/bin/leakwatch: built here by cargo first, then handed
//! to the bundler's `bundle.linux.deb.files` mapping through `--config`, because
//! its path depends on the target dir and profile, which tauri.conf.json cannot
//! know.
//!
//! `--check` unpacks the package into a scratch root (`dpkg-deb -x`, no install
//! on this machine), checks that the binaries, the desktop entry and the icons are
//! where a `.deb` puts them, runs both packaged binaries with `--version`, and
//! reads the control file's Depends and Description (`dpkg-deb -f`). CI
//! runs it with `--debug`, which reuses the end-to-end test's build; a release
//! build is what `cargo xtask dist` makes for users.

use crate::util::{cargo, ensure_debian_packages, run as run_command, target_dir, workspace_root};
use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Bundle the debug build (fast; what CI checks) instead of the release one.
    #[arg(long)]
    debug: bool,
    /// Unpack the package into a scratch root, run its binaries' `--version` and
    /// check its control file.
    #[arg(long)]
    check: bool,
}

/// What `cargo xtask ci` runs: the debug package, unpacked, run and inspected.
pub(crate) fn ci_check() -> Result<()> {
    run(&Args { debug: true, check: true })
}

pub(crate) fn run(args: &Args) -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!("`cargo xtask dist` makes the Linux .deb; on a Mac run the Tauri bundler there");
    }
    ensure_debian_packages(&crate::ui::APP_PACKAGES)?;
    // The bundler's own beforeBuildCommand builds ui/dist; only its packages
    // (the bundler among them) are needed first.
    crate::ui::install()?;
    let root = workspace_root();
    let tauri = root.join("ui/node_modules/.bin/tauri");
    ensure!(tauri.is_file(), "{} is missing after `npm ci` in ui/", tauri.display());
    let profile = if args.debug { "debug" } else { "release" };
    let cli = build_cli(args.debug, profile)?;
    let files = serde_json::json!({
        "bundle": { "linux": { "deb": { "files": { CLI_IN_PACKAGE: cli } } } }
    });
    let mut bundle = Command::new(&tauri);
    bundle
        .arg("build")
        .args(["--bundles", "deb", "--ci"])
        .arg("--config")
        .arg(files.to_string())
        .current_dir(root.join("src-tauri"));
    if args.debug {
        bundle.arg("--debug");
    }
    // The bundler runs cargo: keep it on the workspace's lock file and target dir.
    bundle.env("CARGO_TARGET_DIR", target_dir());
    run_command(&mut bundle)?;
    let deb = newest_deb(&target_dir().join(profile))?;
    eprintln!("xtask dist: {}", deb.display());
    if args.check {
        check(&deb)?;
    }
    Ok(())
}

/// Where the package puts the CLI (on PATH, beside the app's binary).
const CLI_IN_PACKAGE: &str = "/usr/bin/leakwatch";

/// The Debian package of the appindicator library the tray icon loads at run time
/// (the bundler adds it only for a tray declared in tauri.conf.json, and this
/// app builds its tray in code); `ui::APP_PACKAGES` builds against its -dev.
const APPINDICATOR: &str = "libayatana-appindicator3-1";

/// Builds the `leakwatch` CLI in `profile` and returns its path, as a string
/// because the bundler's configuration is JSON.
fn build_cli(debug: bool, profile: &str) -> Result<String> {
    let mut build = cargo();
    build.args(["build", "--locked", "-p", "leakwatch", "--bin", "leakwatch"]);
    if !debug {
        build.arg("--release");
    }
    build.env("CARGO_TARGET_DIR", target_dir());
    run_command(&mut build)?;
    let cli = target_dir().join(profile).join("leakwatch");
    ensure!(cli.is_file(), "{} is missing after building it", cli.display());
    cli.into_os_string()
        .into_string()
        .map_err(|path| anyhow::anyhow!("the CLI's path {path:?} is not UTF-8"))
}

/// The most recent `.deb` under `profile_dir/bundle/deb`.
fn newest_deb(profile_dir: &Path) -> Result<PathBuf> {
    let dir = profile_dir.join("bundle/deb");
    let mut debs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .filter_map(|path| Some((path.metadata().ok()?.modified().ok()?, path)))
        .collect();
    debs.sort();
    debs.pop().map(|(_, path)| path).with_context(|| format!("no .deb in {}", dir.display()))
}

/// Unpacks `deb` into a scratch root and checks what a user would get.
fn check(deb: &Path) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("leakwatch-dist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let result = check_in(deb, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn check_in(deb: &Path, scratch: &Path) -> Result<()> {
    run_command(Command::new("dpkg-deb").arg("-x").arg(deb).arg(scratch))?;
    let package = control_field(deb, "Package")?;
    ensure!(!package.trim().is_empty(), "{} has no Package field", deb.display());
    let depends = control_field(deb, "Depends")?;
    ensure!(
        depends_on(&depends, APPINDICATOR),
        "{} does not depend on {APPINDICATOR}: Depends: {depends}",
        deb.display()
    );
    let description = control_field(deb, "Description")?;
    check_description(&description).with_context(|| format!("{}'s Description", deb.display()))?;
    for path in [
        "usr/bin/leakwatch-app",
        "usr/bin/leakwatch",
        "usr/share/applications/Leakwatch.desktop",
        "usr/share/icons/hicolor/128x128/apps/leakwatch-app.png",
    ] {
        ensure!(scratch.join(path).is_file(), "{} lacks /{path}", deb.display());
    }
    let desktop =
        std::fs::read_to_string(scratch.join("usr/share/applications/Leakwatch.desktop"))?;
    ensure!(
        desktop.lines().any(|l| l == "Exec=leakwatch-app"),
        "the desktop entry does not start leakwatch-app:\n{desktop}"
    );
    let app = check_version(scratch, "leakwatch-app")?;
    let cli = check_version(scratch, "leakwatch")?;
    eprintln!(
        "xtask dist: package {} unpacks, depends on {APPINDICATOR}, and its binaries say \
         {app:?} and {cli:?}",
        package.trim()
    );
    Ok(())
}

/// Runs the packaged `usr/bin/<name> --version` (without a display, as the
/// app must answer it before starting any GUI) and returns its answer.
fn check_version(scratch: &Path, name: &str) -> Result<String> {
    let out = Command::new(scratch.join("usr/bin").join(name))
        .arg("--version")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .with_context(|| format!("running the packaged {name} --version"))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let expected = format!("{name} {}", env!("CARGO_PKG_VERSION"));
    ensure!(
        out.status.success() && version == expected,
        "the packaged {name} answered {version:?} ({}) to --version, not {expected:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(expected)
}

/// One field of `deb`'s control file, continuation lines included, as
/// `dpkg-deb -f` prints it; empty when the field is absent.
fn control_field(deb: &Path, field: &str) -> Result<String> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(field)
        .output()
        .with_context(|| format!("running dpkg-deb -f {} {field}", deb.display()))?;
    ensure!(
        out.status.success(),
        "dpkg-deb -f {} {field} failed ({}): {}",
        deb.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .with_context(|| format!("{}'s {field} field is not UTF-8", deb.display()))
}

/// Whether a Depends value names `package`, alone or as one of alternatives,
/// with or without a version constraint.
fn depends_on(depends: &str, package: &str) -> bool {
    depends.split([',', '|']).any(|alternative| {
        alternative.split_whitespace().next().and_then(|name| name.split(':').next())
            == Some(package)
    })
}

/// A Description is a synopsis line and an extended description on the
/// continuation lines; the bundler writes "(none)" for either when it is unset.
fn check_description(description: &str) -> Result<()> {
    let mut lines = description.lines();
    let synopsis = lines.next().unwrap_or("").trim();
    ensure!(
        !synopsis.is_empty() && synopsis != "(none)",
        "no synopsis (shortDescription in src-tauri/tauri.conf.json): {description:?}"
    );
    let extended: Vec<&str> = lines.map(str::trim).filter(|l| !l.is_empty() && *l != ".").collect();
    ensure!(
        !extended.is_empty() && extended != ["(none)"],
        "no extended description (longDescription in src-tauri/tauri.conf.json): \
         {description:?}"
    );
    // Past 80 columns a line overflows apt's and dselect's display (lintian's
    // extended-description-line-too-long).
    if let Some(long) = extended.iter().find(|l| l.chars().count() > 80) {
        bail!("an extended description line is over 80 characters: {long:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_on_finds_the_package_alone_among_alternatives_and_versioned() {
        let depends = "libwebkit2gtk-4.1-0, libgtk-3-0 (>= 3.24), libayatana-appindicator3-1";
        assert!(depends_on(depends, APPINDICATOR));
        assert!(depends_on(
            "libgtk-3-0, libappindicator3-1 | libayatana-appindicator3-1 (>= 0.5)",
            APPINDICATOR
        ));
        assert!(depends_on("libayatana-appindicator3-1:amd64", APPINDICATOR));
    }

    #[test]
    fn depends_on_rejects_missing_and_prefix_names() {
        assert!(!depends_on("libwebkit2gtk-4.1-0, libgtk-3-0", APPINDICATOR));
        assert!(!depends_on("libayatana-appindicator3-1-dev", APPINDICATOR));
        assert!(!depends_on("", APPINDICATOR));
    }

    #[test]
    fn description_needs_a_synopsis_and_an_extended_part() {
        check_description("Watchdog for leaks\n Long text.\n .\n More.\n").unwrap();
        // What the bundler writes without longDescription / shortDescription.
        assert!(check_description("Watchdog for leaks\n (none)\n").is_err());
        assert!(check_description("(none)\n Long text.\n").is_err());
        assert!(check_description("Watchdog for leaks\n").is_err());
        assert!(check_description("").is_err());
        let long_line = format!("Watchdog for leaks\n {}\n", "word ".repeat(20));
        assert!(check_description(&long_line).is_err());
    }
}
