//! The popover's web UI as the Rust build sees it. Tauri embeds `ui/dist` at
//! compile time (`generate_context!`), so every build of `leakwatch-app`, the
//! macOS type-check included, needs that folder to exist. `build` makes the real
//! one (`npm ci && npm run build` in `ui/`); `ensure_dist` only makes sure there
//! is one, with a placeholder page when the UI has not been built.

use crate::util::{ensure_debian_packages, run, workspace_root};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// Debian packages the menubar app (Tauri 2 on WebKitGTK) needs to build.
pub(crate) const APP_PACKAGES: [&str; 6] = [
    "build-essential",
    "pkg-config",
    "libwebkit2gtk-4.1-dev",
    "libayatana-appindicator3-dev",
    "librsvg2-dev",
    "libxdo-dev",
];

fn ui_dir() -> PathBuf {
    workspace_root().join("ui")
}

/// Makes sure `ui/dist/index.html` exists (a placeholder if the UI is unbuilt).
pub(crate) fn ensure_dist() -> Result<()> {
    let dist = ui_dir().join("dist");
    if dist.join("index.html").is_file() {
        return Ok(());
    }
    std::fs::create_dir_all(&dist)
        .with_context(|| format!("could not create {}", dist.display()))?;
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>Leakwatch</title>\n\
         <p>The UI is not built: run <code>npm ci &amp;&amp; npm run build</code> in ui/.</p>\n",
    )
    .context("could not write the placeholder ui/dist/index.html")
}

/// Installs the UI's dependencies and builds `ui/dist`, when the UI has sources
/// (`ui/package.json` and the Vite entry `ui/index.html`); else a placeholder.
pub(crate) fn build() -> Result<()> {
    let dir = ui_dir();
    if !(dir.join("package.json").is_file() && dir.join("index.html").is_file()) {
        eprintln!("xtask: ui/ has no sources yet; using a placeholder ui/dist");
        return ensure_dist();
    }
    install()?;
    run(Command::new("npm").args(["run", "build"]).current_dir(&dir))?;
    ensure_dist()
}

/// Installs the UI's npm packages as `package-lock.json` pins them (`npm ci`),
/// Node itself first if it is missing.
pub(crate) fn install() -> Result<()> {
    if Command::new("npm").arg("--version").output().is_err() {
        ensure_debian_packages(&["nodejs", "npm"])?;
    }
    run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(ui_dir()))
}

/// The UI's own checks: svelte-check and tsc (`npm run check`) and the Vitest
/// suite (`npm test`), run after `build` has installed its packages.
pub(crate) fn test() -> Result<()> {
    let dir = workspace_root().join("ui");
    run(Command::new("npm").args(["run", "check"]).current_dir(&dir))?;
    run(Command::new("npm").args(["test"]).current_dir(&dir))
}

/// Fails when the TypeScript bindings `cargo test -p leakwatch-app` writes differ
/// from the committed ones: the UI would be coding against stale types.
pub(crate) fn check_bindings_current() -> Result<()> {
    let root = workspace_root();
    let out = Command::new("git")
        .args(["status", "--porcelain", "--", "ui/src/bindings"])
        .current_dir(&root)
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let changed = String::from_utf8_lossy(&out.stdout);
            anyhow::ensure!(
                changed.trim().is_empty(),
                "ui/src/bindings is out of date with the Rust types; commit what \
                 `cargo test -p leakwatch-app` generated:\n{changed}"
            );
            Ok(())
        }
        // Not a git checkout (a source tarball): nothing to compare against.
        _ => Ok(()),
    }
}

/// Builds the menubar app serving the built UI (the `custom-protocol` feature), in
/// the release profile or not, and returns the binary's path.
pub(crate) fn build_app(release: bool) -> Result<PathBuf> {
    build()?;
    let mut cargo = crate::util::cargo();
    cargo.arg("build");
    if release {
        cargo.arg("--release");
    }
    run(cargo.args(["--locked", "-p", "leakwatch-app", "--features", "custom-protocol"]))?;
    let profile = if release { "release" } else { "debug" };
    Ok(crate::util::target_dir().join(profile).join("leakwatch-app"))
}
