//! `cargo xtask dist [--debug] [--check]`: the menubar app as a Debian package,
//! built by Tauri's own bundler (`@tauri-apps/cli`, pinned in ui/package.json to
//! the `tauri` crate's version and installed by `npm ci`, so no global tool and
//! nothing outside npm and crates.io is fetched). Only the `.deb`: an AppImage
//! would download its tooling at build time.
//!
//! `--check` unpacks the package into a scratch root (`dpkg-deb -x`, no install
//! on this machine), checks that the binary, the desktop entry and the icons are
//! where a `.deb` puts them, and runs the packaged binary with `--version`. CI
//! runs it with `--debug`, which reuses the end-to-end test's build; a release
//! build is what `cargo xtask dist` makes for users.

use crate::util::{ensure_debian_packages, run as run_command, target_dir, workspace_root};
use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Bundle the debug build (fast; what CI checks) instead of the release one.
    #[arg(long)]
    debug: bool,
    /// Unpack the package into a scratch root and run its binary's `--version`.
    #[arg(long)]
    check: bool,
}

/// What `cargo xtask ci` runs: the debug package, unpacked and run.
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
    let mut bundle = Command::new(&tauri);
    bundle.arg("build").args(["--bundles", "deb", "--ci"]).current_dir(root.join("src-tauri"));
    if args.debug {
        bundle.arg("--debug");
    }
    // The bundler runs cargo: keep it on the workspace's lock file and target dir.
    bundle.env("CARGO_TARGET_DIR", target_dir());
    run_command(&mut bundle)?;
    let deb = newest_deb(&target_dir().join(if args.debug { "debug" } else { "release" }))?;
    eprintln!("xtask dist: {}", deb.display());
    if args.check {
        check(&deb)?;
    }
    Ok(())
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
    let fields = Command::new("dpkg-deb").args(["-f"]).arg(deb).arg("Package").output()?;
    let package = String::from_utf8_lossy(&fields.stdout).trim().to_owned();
    ensure!(!package.is_empty(), "{} has no Package field", deb.display());
    for path in [
        "usr/bin/leakwatch-app",
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
    let out = Command::new(scratch.join("usr/bin/leakwatch-app"))
        .arg("--version")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .context("running the packaged leakwatch-app --version")?;
    let version = String::from_utf8_lossy(&out.stdout);
    let expected = format!("leakwatch-app {}", env!("CARGO_PKG_VERSION"));
    ensure!(
        out.status.success() && version.trim() == expected,
        "the packaged binary answered {:?} ({}) to --version, not {expected:?}: {}",
        version.trim(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("xtask dist: package {package} unpacks and its binary says {expected:?}");
    Ok(())
}
