//! Small helpers shared by the tasks: running commands loudly, finding the
//! workspace root, installing missing Debian packages.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

/// The workspace root (the parent of this crate's manifest directory).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map_or(manifest_dir.clone(), PathBuf::from)
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the workspace when
/// relative), else `target/` in the workspace.
pub(crate) fn target_dir() -> PathBuf {
    let root = workspace_root();
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir))
}

/// Runs `cmd` with inherited stdio from the workspace root, failing with the
/// command line when it does not exit 0.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(workspace_root());
    }
    eprintln!("$ {}", display(cmd));
    let status = cmd.status().with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", display(cmd));
    }
    Ok(())
}

/// `cargo` as the one that runs xtask (so the same toolchain checks everything).
pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn display(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Installs the Debian packages in `packages` that are not installed yet. Needs
/// root (CI and these machines run as root); elsewhere it says what to install.
pub(crate) fn ensure_debian_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> =
        packages.iter().copied().filter(|package| !debian_package_installed(package)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false);
    if !is_root {
        bail!(
            "missing Debian packages: {}; install them with `sudo apt-get install {}`",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("installing missing Debian packages: {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing))
}

fn debian_package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Like [`run`], with stderr passed through line by line and then handed to
/// `complaints`: the command fails when that finds anything (for tools that can
/// only print a warning, not fail the build).
pub(crate) fn run_checking_stderr(
    cmd: &mut Command,
    complaints: impl Fn(&[String]) -> Vec<String>,
) -> Result<()> {
    use std::io::BufRead;
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(workspace_root());
    }
    eprintln!("$ {}", display(cmd));
    let mut child = cmd
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    let mut lines = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            eprintln!("{line}");
            lines.push(line);
        }
    }
    let status = child.wait().with_context(|| format!("`{}` did not finish", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", display(cmd));
    }
    let found = complaints(&lines);
    if !found.is_empty() {
        bail!("`{}`:\n  {}", display(cmd), found.join("\n  "));
    }
    Ok(())
}
