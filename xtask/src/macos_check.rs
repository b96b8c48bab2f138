//! `cargo xtask macos-check`: type-checks and lints the whole workspace for
//! `aarch64-apple-darwin` on Linux, so macOS-only code (the libproc backend, the
//! menubar app's macOS parts) cannot rot unseen (DESIGN.md, "Tests and checks").
//!
//! It uses Debian's `rustc-web` toolchain rather than rustup's: `rust-web-src`
//! gives it the standard library's source, so `-Zbuild-std` (with
//! `RUSTC_BOOTSTRAP=1`) can build `std` for the target without a macOS SDK, and
//! `rust-web-clippy` gives the matching clippy. Nothing is linked, so no Apple
//! linker is needed; the few build scripts that still run the target's C compiler
//! or archiver get stand-ins that only create the files they are asked for.
//! Type errors and lints are caught this way; behaviour is not.

use crate::util::{ensure_debian_packages, workspace_root};
use anyhow::{Context, Result, bail};
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const TARGET: &str = "aarch64-apple-darwin";
const DEBIAN_PACKAGES: [&str; 4] = ["rustc-web", "cargo-web", "rust-web-src", "rust-web-clippy"];

/// The Debian toolchain, by full path: never the rustup proxies on `PATH`.
const CARGO: &str = "/usr/bin/cargo";
const RUSTC: &str = "/usr/bin/rustc";
/// Installed by `rust-web-clippy`; `cargo clippy` finds `cargo-clippy` on `PATH`,
/// which then runs the `clippy-driver` beside it.
const CARGO_CLIPPY: &str = "/usr/bin/cargo-clippy";
const CLIPPY_DRIVER: &str = "/usr/bin/clippy-driver";
const TOOLCHAIN_BIN: &str = "/usr/bin";

/// The target directory, at the workspace root (git-ignored as `/target-*`).
const TARGET_DIR: &str = "target-macos";

/// A C compiler that compiles nothing: it creates each `-o FILE` it is given, empty.
const CC_STAND_IN: &str = r#"#!/bin/sh
# Stand-in for the aarch64-apple-darwin C compiler, written by `cargo xtask macos-check`.
# A type-check links nothing, so output files only have to exist.
while [ "$#" -gt 0 ]; do
    case "$1" in
        -o) if [ "$#" -gt 1 ]; then shift; : > "$1"; fi ;;
        -o?*) : > "${1#-o}" ;;
    esac
    shift
done
exit 0
"#;

/// An archiver that archives nothing: `ar OPERATION ARCHIVE [FILE...]` leaves an
/// empty archive at ARCHIVE.
const AR_STAND_IN: &str = r#"#!/bin/sh
# Stand-in for the aarch64-apple-darwin archiver, written by `cargo xtask macos-check`.
# A type-check links nothing, so the archive only has to exist.
[ "$#" -gt 0 ] && shift
while [ "$#" -gt 0 ]; do
    case "$1" in
        -*) shift ;;
        *) printf '!<arch>\n' > "$1"; exit 0 ;;
    esac
done
exit 0
"#;

pub(crate) fn run() -> Result<()> {
    ensure_debian_packages(&DEBIAN_PACKAGES)?;
    check_toolchain()?;
    // The app's `generate_context!` embeds ui/dist, which must exist to compile.
    crate::ui::ensure_dist()?;

    let root = workspace_root();
    let target_dir = root.join(TARGET_DIR);
    let stand_ins = target_dir.join("stand-ins");
    let cc = write_stand_in(&stand_ins, "cc", CC_STAND_IN)?;
    let ar = write_stand_in(&stand_ins, "ar", AR_STAND_IN)?;

    let mut cmd = debian_cargo()?;
    cmd.env("CARGO_TARGET_DIR", &target_dir)
        .env("CC_aarch64_apple_darwin", &cc)
        .env("AR_aarch64_apple_darwin", &ar)
        .args(["clippy", "-Zbuild-std=std,panic_abort", "--target", TARGET])
        .args(["--workspace", "--all-targets", "--locked", "--keep-going"])
        .args(["--", "-D", "warnings"]);

    let started = Instant::now();
    crate::util::run(&mut cmd)
        .context("the macOS type-check failed: the errors above are what a Mac build reports")?;
    eprintln!("macos-check: {TARGET} checks cleanly ({:.0?})", started.elapsed());
    Ok(())
}

/// Says which part of the Debian toolchain is missing, and which package has it.
fn check_toolchain() -> Result<()> {
    let tools = [
        (CARGO, "cargo-web"),
        (RUSTC, "rustc-web"),
        (CARGO_CLIPPY, "rust-web-clippy"),
        (CLIPPY_DRIVER, "rust-web-clippy"),
    ];
    for (tool, package) in tools {
        if !Path::new(tool).is_file() {
            bail!("{tool} is missing: install Debian's `{package}` package");
        }
    }
    let sysroot = Command::new(RUSTC)
        .arg("--print=sysroot")
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .with_context(|| format!("could not run `{RUSTC} --print=sysroot`"))?;
    if !sysroot.status.success() {
        bail!(
            "`{RUSTC} --print=sysroot` failed: {}",
            String::from_utf8_lossy(&sysroot.stderr).trim()
        );
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let library = sysroot.join("lib/rustlib/src/rust/library/Cargo.lock");
    if !library.is_file() {
        bail!(
            "the standard library's source is missing ({} not found), which -Zbuild-std \
             needs: install Debian's `rust-web-src` package",
            library.display()
        );
    }
    // `cargo clippy` must reach Debian's clippy, whose driver matches /usr/bin/rustc;
    // rustup's would refuse the compiler or lint with another version's rules.
    let rustc_version = version_of(Command::new(RUSTC).arg("--version"))?;
    let clippy_version = version_of(debian_cargo()?.args(["clippy", "--version"]))?;
    let minor = |version: &str| version.split('.').nth(1).map(str::to_owned);
    if minor(&rustc_version).is_none() || minor(&rustc_version) != minor(&clippy_version) {
        bail!(
            "`{CARGO} clippy` runs clippy {clippy_version}, which does not match rustc \
             {rustc_version}: check that {CARGO_CLIPPY} (from `rust-web-clippy`) is installed"
        );
    }
    Ok(())
}

/// The release a `--version` line names: `rustc 1.96.0 (...)` gives `1.96.0`, and
/// `clippy 0.1.96 (...)` gives `1.96`, so the two compare by their second part.
fn version_of(cmd: &mut Command) -> Result<String> {
    let output = cmd.output().with_context(|| format!("could not run {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match (output.status.success(), stdout.split_whitespace().nth(1)) {
        (true, Some(version)) => {
            // clippy's "0.1.96" puts the release third, rustc's "1.96.0" second.
            let parts: Vec<&str> = version.split('.').collect();
            Ok(match parts.as_slice() {
                ["0", "1", release, ..] => format!("1.{release}"),
                _ => version.to_owned(),
            })
        }
        _ => bail!(
            "{cmd:?} failed: {} {}",
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

/// `/usr/bin/cargo` with none of the rustup toolchain's settings inherited from the
/// `cargo xtask` that started us, and with the Debian tools first on `PATH`.
fn debian_cargo() -> Result<Command> {
    let mut cmd = Command::new(CARGO);
    cmd.current_dir(workspace_root());
    for (name, _) in std::env::vars_os() {
        if inherited_from_toolchain(&name) {
            cmd.env_remove(&name);
        }
    }
    if let Some(paths) = std::env::var_os("LD_LIBRARY_PATH") {
        // `cargo run` puts the rustup toolchain's libraries here.
        let rustup_home = std::env::var_os("RUSTUP_HOME").map(PathBuf::from);
        let from_rustup = |dir: &PathBuf| {
            dir.components().any(|part| part.as_os_str() == ".rustup")
                || rustup_home.as_ref().is_some_and(|home| dir.starts_with(home))
        };
        let kept: Vec<PathBuf> =
            std::env::split_paths(&paths).filter(|dir| !from_rustup(dir)).collect();
        cmd.env("LD_LIBRARY_PATH", std::env::join_paths(kept)?);
    }
    cmd.env("PATH", toolchain_path()?).env("RUSTC", RUSTC).env("RUSTC_BOOTSTRAP", "1");
    Ok(cmd)
}

/// Whether an environment variable configures the toolchain (or describes the
/// package) that runs xtask, and so must not reach `/usr/bin/cargo`. What only
/// configures cargo's home, network, registries, terminal or job count is kept.
fn inherited_from_toolchain(name: &OsStr) -> bool {
    const KEEP: [&str; 7] = [
        "CARGO_HOME",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_TERM_",
        "CARGO_BUILD_JOBS",
    ];
    const DROP: [&str; 7] =
        ["RUSTUP_", "CARGO", "__CARGO", "RUSTC", "RUSTDOC", "RUSTFLAGS", "CLIPPY_"];
    let Some(name) = name.to_str() else {
        return false;
    };
    if KEEP.iter().any(|keep| name.starts_with(keep)) {
        return false;
    }
    DROP.iter().any(|drop| name.starts_with(drop)) || name == "OUT_DIR"
}

/// `/usr/bin` first, so that `cargo clippy` runs Debian's `cargo-clippy`. Cargo
/// looks for subcommands in `$CARGO_HOME/bin` before `PATH` unless that directory
/// is on `PATH` itself, so it is kept on (or added to) the end.
fn toolchain_path() -> Result<OsString> {
    let mut dirs = vec![PathBuf::from(TOOLCHAIN_BIN)];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path).filter(|dir| dir != Path::new(TOOLCHAIN_BIN)));
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    if let Some(cargo_bin) = cargo_home.map(|home| home.join("bin"))
        && !dirs.contains(&cargo_bin)
    {
        dirs.push(cargo_bin);
    }
    Ok(std::env::join_paths(dirs)?)
}

/// Writes an executable stand-in script and returns its path.
fn write_stand_in(dir: &Path, name: &str, script: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, script).with_context(|| format!("could not write {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("could not make {} executable", path.display()))?;
    Ok(path)
}
