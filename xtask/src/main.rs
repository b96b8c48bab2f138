//! `cargo xtask`: the project's automation, written in Rust so it runs wherever
//! cargo does and needs no shell scripts. `.ci/run` calls `cargo xtask ci`.

mod app_footprint;
mod bench;
mod cask;
mod ci;
mod cycles;
mod dist;
mod e2e;
mod icons;
mod macos_check;
mod suite;
mod ui;
mod util;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Leakwatch's build, check and benchmark automation")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Everything CI checks: rustfmt, clippy -D warnings, all tests, the macOS type-check.
    Ci,
    /// Fail on a dependency cycle between the top-level modules of a crate.
    Cycles,
    /// Type-check and lint the workspace for aarch64-apple-darwin (see DESIGN.md).
    MacosCheck,
    /// Time Leakwatch's probe against lsof, ps and sysinfo, side by side.
    Bench(bench::Args),
    /// The menubar app end to end under Xvfb, over WebDriver (Linux).
    E2e,
    /// Fill the Homebrew cask template with a release's version and checksum.
    Cask(cask::Args),
    /// Build the Linux .deb (menubar app and CLI) with the Tauri bundler (and check it).
    Dist(dist::Args),
    /// Render icons/*.svg into every icon file the app and its bundles use.
    Icons {
        /// Fail if a generated file differs from what its source renders to.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Ci => ci::run(),
        Task::Cycles => cycles::run(),
        Task::MacosCheck => macos_check::run(),
        Task::Bench(args) => bench::run(&args),
        Task::E2e => e2e::run_e2e(),
        Task::Cask(args) => cask::run(&args),
        Task::Dist(args) => dist::run(&args),
        Task::Icons { check } => icons::run(check),
    }
}
