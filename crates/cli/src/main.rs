//! `leakwatch`, the command line. Each subcommand is one module under
//! `commands/`; this file only parses arguments and turns errors into one clear
//! line and an exit code (1 for a failure, 2 for bad usage, as clap does, 3 when
//! `status` finds no engine running).

mod commands;
mod output;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;

const JSON_HELP: &str =
    "Print JSON instead of a table; field names are stable (see each command's --help)";

#[derive(Debug, Parser)]
#[command(
    name = "leakwatch",
    version,
    about = "Watch long-running servers for descriptor leaks and orphaned processes",
    long_about = "Leakwatch shows which processes hold how many file descriptors, of which \
                  kind (kqueue, epoll, sockets, files...), against their limit, and the \
                  process trees below them.\n\nEvery command takes --json."
)]
struct Cli {
    #[arg(long, global = true, help = JSON_HELP)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Watch(commands::watch::Args),
    Ps(commands::ps::Args),
    Fds(commands::fds::Args),
    Explain(commands::explain::Args),
    Tree(commands::tree::Args),
    Orphans(commands::orphans::Args),
    KillTree(commands::kill_tree::Args),
    CleanOrphans(commands::clean_orphans::Args),
    Restart(commands::restart::Args),
    History(commands::history::Args),
    Daemon(commands::daemon::Args),
    Doctor(commands::doctor::Args),
    Status(commands::status::Args),
    Config(commands::config::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Ps(args) => commands::ps::run(args, cli.json),
        Command::Fds(args) => commands::fds::run(args, cli.json),
        Command::Explain(args) => commands::explain::run(args, cli.json),
        Command::Tree(args) => commands::tree::run(args, cli.json),
        Command::Orphans(args) => commands::orphans::run(args, cli.json),
        Command::KillTree(args) => commands::kill_tree::run(args, cli.json),
        Command::CleanOrphans(args) => commands::clean_orphans::run(args, cli.json),
        Command::Restart(args) => commands::restart::run(args, cli.json),
        Command::Watch(args) => commands::watch::run(args, cli.json),
        Command::History(args) => commands::history::run(args, cli.json),
        Command::Daemon(args) => commands::daemon::run(args, cli.json),
        Command::Doctor(args) => commands::doctor::run(args, cli.json),
        Command::Status(args) => commands::status::run(args, cli.json),
        Command::Config(args) => commands::config::run(args, cli.json),
    };
    match result.and_then(|text| output::print(&text)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "leakwatch: {error:#}");
            if commands::status::is_no_engine(&error) {
                return ExitCode::from(commands::status::NO_ENGINE_EXIT);
            }
            ExitCode::FAILURE
        }
    }
}
