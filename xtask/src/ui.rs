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

/// Fails when the UI declares a wire type of its own (issue 13): every type the
/// app sends or receives is generated from Rust into `ui/src/bindings/`, so an
/// `interface Status` or `type Event = …` elsewhere in `ui/src` is a second copy
/// that can drift (as `lib/types.ts` did), and `lib/types.ts` must not return.
pub(crate) fn check_generated_types_only() -> Result<()> {
    let src = ui_dir().join("src");
    let bindings = src.join("bindings");
    let names: std::collections::BTreeSet<String> = std::fs::read_dir(&bindings)
        .with_context(|| format!("could not list {}", bindings.display()))?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?.strip_suffix(".ts")?.to_owned();
            // kinds.ts holds generated values, not a type.
            name.chars().next().is_some_and(char::is_uppercase).then_some(name)
        })
        .collect();
    let mut found = Vec::new();
    if src.join("lib/types.ts").exists() {
        found.push("ui/src/lib/types.ts exists: import the generated bindings instead".to_owned());
    }
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            if path == bindings || path.ends_with("node_modules") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if !path.extension().is_some_and(|e| e == "ts" || e == "svelte") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("could not read {}", path.display()))?;
            let shown = path.strip_prefix(workspace_root()).unwrap_or(&path).display().to_string();
            for (line, name) in declared_types(&text) {
                if names.contains(&name) {
                    found.push(format!(
                        "{shown}:{line}: declares `{name}`, a generated type: import it from \
                         ui/src/bindings/{name}.ts"
                    ));
                }
            }
        }
    }
    found.sort();
    anyhow::ensure!(
        found.is_empty(),
        "hand-written wire types in the UI:\n  {}",
        found.join("\n  ")
    );
    eprintln!("xtask: the UI's wire types are the generated ones ({} bindings)", names.len());
    Ok(())
}

/// The (line, name) of every `interface X` and `type X =` a TypeScript or Svelte
/// file declares (exported or not; `import type` and `export type { … }` re-exports
/// are not declarations).
fn declared_types(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace().peekable();
        if words.peek() == Some(&"export") {
            words.next();
        }
        if words.peek() == Some(&"declare") {
            words.next();
        }
        let keyword = words.next();
        if !matches!(keyword, Some("interface" | "type")) {
            continue;
        }
        let Some(name) = words.next() else { continue };
        let name: String =
            name.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '$').collect();
        // `type X = …`, `type X<T> = …`, `interface X {` or `interface X extends`.
        if !name.is_empty() {
            out.push((i + 1, name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{check_generated_types_only, declared_types};

    /// Issue 13: the UI had its own copy of the wire types (lib/types.ts) beside
    /// the generated ones; this repository's UI uses the generated ones only.
    #[test]
    fn the_ui_declares_no_wire_type_of_its_own() {
        check_generated_types_only().unwrap();
    }

    #[test]
    fn declarations_are_found_and_reexports_are_not() {
        let text = "import type { Status } from '../bindings/Status';\n\
                    export type { View };\n\
                    export type Status = { at: number };\n\
                    \x20 interface Event {\n\
                    type Outcome<T> = T;\n\
                    export interface Backend extends X {\n\
                    const type = 'button';\n";
        let names: Vec<(usize, String)> = declared_types(text);
        assert_eq!(
            names,
            vec![
                (3, "Status".to_owned()),
                (4, "Event".to_owned()),
                (5, "Outcome".to_owned()),
                (6, "Backend".to_owned())
            ]
        );
    }
}
