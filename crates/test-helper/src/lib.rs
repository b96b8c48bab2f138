//! Test support for Leakwatch: [`Helper`] drives `lw-helper`, a real process that holds
//! descriptors, leaks them, builds process trees and double-forks on command, so that
//! the probe, the engine, the actions and the CLI are tested against the real OS
//! rather than against what we believe the OS does.
//!
//! Use it as a dev-dependency. A test starts a helper, tells it what to do, then looks
//! at it the way Leakwatch would:
//!
//! ```no_run
//! use leakwatch_test_helper::Helper;
//!
//! let mut h = Helper::spawn()?;
//! h.cmd("open pipe 3").expect("pipes"); // 6 more fds
//! let kids = h.cmd("tree 2 2").expect("tree"); // 6 descendant pids
//! // ... probe h.pid() and kids ...
//! drop(h); // SIGKILLs the helper, its whole process group and any double-forked pid
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # The protocol of `lw-helper`
//!
//! `lw-helper [--stay] [--exec CMD]... [--ready-file PATH]`. Each `--exec` runs a
//! command before `ready` (silently; on failure: message on stderr, exit 2). `--stay`:
//! stdin EOF does not end the helper. `--ready-file`: write `ready` to PATH once up.
//! At startup it raises its soft RLIMIT_NOFILE to the hard limit, resets SIGTERM to
//! the default, then prints `ready <pid>`. Each line on stdin gets exactly one line
//! back: `ok [DATA...]` or `err MESSAGE`. On stdin EOF it exits 0.
//!
//! | command | reply data |
//! |---|---|
//! | `open KIND [N]`, `open file PATH [N]`, `open dir PATH [N]`, `open unix-listen PATH` | fds added |
//! | `open tcp-conn N` | `ADDED listener=0/1 client=N accepted=N` |
//! | `close KIND [N\|all]` (the last N of that kind) | fds closed |
//! | `no-cloexec` (children spawned later inherit every held fd) | fds changed |
//! | `count` | `KIND=N`... then `leaked= leaking= leak-errors= http= total=` |
//! | `leak KIND[:PATH] EVERY_MS` / `stop-leak` / `close-leaked` | — / leaked fds held / closed |
//! | `ignore-term` / `term-marker PATH` / `term-delay MS` / `term-log PATH` | — |
//! | `spawn N [CMD [; CMD]...]` | child pids |
//! | `tree DEPTH WIDTH [ignore-term]` | all descendant pids |
//! | `fork-every MS [MAX] [ignore-term]` | — (children start in the background) |
//! | `double-fork [tcp-listen PORT]` | `GRANDCHILD_PID PORT` (0 when not listening) |
//! | `serve-http [PORT]` | port |
//! | `pid` / `exit [CODE]` / `sleep-forever` / `detach` / `help` | pid / — / — / — / usage |
//!
//! KIND is one of `file dir device pipe unix unix-listen tcp-listen tcp-conn udp shm
//! close-wait` (a loopback connection whose peer closed: CLOSE_WAIT),
//! plus `epoll eventfd timerfd signalfd inotify` on Linux and `kqueue` on macOS (on
//! the other OS they answer `err unsupported on this OS`). N defaults to 1; `pipe`
//! and `unix` open two fds per unit. If opening fails part-way, what was opened is
//! kept and the error says how many. `term-marker PATH`: on SIGTERM, write
//! `terminated <pid>` to PATH and exit 0, after sleeping MS milliseconds if
//! `term-delay MS` was given (a clean-up that takes a while). `term-log PATH`: on
//! each SIGTERM, append `term <ns>` (CLOCK_MONOTONIC, the clock of `Instant`) to
//! PATH and keep running. Children of `spawn` and `tree` run with
//! `--stay`, so they outlive a SIGKILLed parent; `tree ... ignore-term` makes every
//! member, this helper included, ignore SIGTERM. `fork-every` starts one such
//! `--stay` child every MS milliseconds from a background thread, at most MAX
//! (default 200, `ignore-term`: the children ignore SIGTERM), so a test can kill a
//! process that keeps forking while it is being killed.

mod helper;
mod locate;
#[doc(hidden)]
pub mod shm;

pub use helper::{DEFAULT_TIMEOUT, Helper, wait_until};
pub use locate::{OVERRIDE_ENV, helper_binary, try_helper_binary};
