//! A face's engine when another engine may already own the data directory.
//! Sampling twice would write every sample and notify every alert twice, so a
//! face that finds the directory locked (the app beside the daemon, `watch`
//! beside the app) follows the owner's `/v1/stream` instead: its statuses and
//! events reach the face's handle as if its own engine made them, so does the
//! config the owner has in force (the face acts on the config the owner runs
//! on, not on a file that may be broken meanwhile), and its commands (rescan,
//! reload, pause alerts) go to the owner through the local API.
//! The stream ends when the owner stops or dies (the kernel closes its socket
//! either way, and releases its lock), and the face then takes the lock and
//! runs its own engine: the takeover costs one lock attempt, not a poll period.

use crate::api::{self, ClientError, ConfigText, StreamItem};
use crate::command::Command;
use crate::config::Config;
use crate::model::Event;
use crate::owner::Owner;
use crate::status::Status;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// How soon a face tries again when the directory is locked but its owner does
/// not answer yet (it took the lock and is still starting its engine).
pub const ATTACH_RETRY: Duration = Duration::from_millis(250);

/// Why following an owner ended.
#[derive(Debug)]
pub(crate) enum Detached {
    /// The face's handle was shut down (or dropped): stop.
    Shutdown,
    /// The owner went away, or does not answer yet: try the lock again.
    Retry,
}

/// The face's side of a handle, which following an owner feeds.
#[derive(Debug)]
pub(crate) struct Outputs<'a> {
    pub(crate) status: &'a watch::Sender<Arc<Status>>,
    pub(crate) events: &'a broadcast::Sender<Arc<[Event]>>,
    pub(crate) owner: &'a watch::Sender<Option<Owner>>,
    /// The owner's config in force; `None` while there is none to follow.
    pub(crate) config: &'a watch::Sender<Option<Arc<Config>>>,
}

/// Follows the engine owning `dir` (`owner`, as its lock file names it) until
/// it goes away or the handle is shut down.
pub(crate) async fn follow_owner(
    dir: &Path,
    owner: Option<Owner>,
    out: &Outputs<'_>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    shutdown: &mut watch::Receiver<bool>,
) -> Detached {
    let detached = follow(dir, owner, out, commands, shutdown).await;
    // The owner's config is no longer in force anywhere this face can see.
    out.config.send_replace(None);
    detached
}

async fn follow(
    dir: &Path,
    owner: Option<Owner>,
    out: &Outputs<'_>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    shutdown: &mut watch::Receiver<bool>,
) -> Detached {
    let socket =
        owner.as_ref().and_then(|o| o.socket.clone()).unwrap_or_else(|| api::socket_path(dir));
    let mut subscription = match api::subscribe(&socket).await {
        Ok(subscription) => subscription,
        Err(error) => {
            tracing::debug!("the data directory is locked but its owner does not answer: {error}");
            if out.owner.borrow().is_none() {
                // Said, in case it lasts (an engine too old to serve the API).
                let named = owner.as_ref().map_or_else(|| "an engine".to_owned(), Owner::to_string);
                let _ = out.status.send(Arc::new(unanswered(&named, &error)));
            }
            return wait(ATTACH_RETRY, commands, shutdown).await;
        }
    };
    let named = owner.as_ref().map_or_else(|| "an engine".to_owned(), Owner::to_string);
    let newly = out.owner.send_replace(owner.clone()) != owner;
    if newly {
        tracing::info!(
            "attached to {named}, which owns the data directory {}: showing its state",
            dir.display()
        );
    }
    loop {
        tokio::select! {
            item = subscription.next() => match item {
                Some(Ok(StreamItem::Status(status))) => {
                    let _ = out.status.send(Arc::new(*status));
                }
                Some(Ok(StreamItem::Events(events))) => {
                    let _ = out.events.send(events.into());
                }
                Some(Ok(StreamItem::Event(event))) => {
                    let _ = out.events.send(Arc::new([event]));
                }
                Some(Ok(StreamItem::Config(text))) => {
                    out.config.send_replace(parse_in_force(text, &named).await);
                }
                // A line this version cannot read (a newer engine's): skip it,
                // the next status replaces what it would have said.
                Some(Err(error @ ClientError::Body { .. })) => {
                    tracing::debug!("{error}");
                }
                Some(Err(_)) | None => {
                    // Gone, or it dropped this face's stream (fallen behind):
                    // the lock tells which, and a live owner is followed again.
                    tracing::info!(
                        "the stream from {named} ended: taking over the data directory if it is free"
                    );
                    return Detached::Retry;
                }
            },
            command = commands.recv() => match command {
                Some(command) => {
                    let socket = socket.clone();
                    let what = format!("{command:?}");
                    tokio::spawn(async move {
                        if let Err(error) = api::send_command(&socket, command).await {
                            tracing::warn!("{what} not passed to the engine: {error}");
                        }
                    });
                }
                None => return Detached::Shutdown,
            },
            _ = shutdown.changed() => return Detached::Shutdown,
        }
    }
}

/// The owner's config in force, parsed here as the owner parsed it (on a
/// blocking thread: compiling a large config's regexes is CPU work). `None`
/// when this version cannot read it: the face then reads the file itself.
async fn parse_in_force(text: ConfigText, named: &str) -> Option<Arc<Config>> {
    match tokio::task::spawn_blocking(move || text.parse()).await {
        Ok(Ok(config)) => Some(Arc::new(config)),
        Ok(Err(error)) => {
            tracing::warn!("cannot read the config {named} has in force: {error}");
            None
        }
        Err(error) => {
            tracing::warn!("the config {named} has in force was not parsed: {error}");
            None
        }
    }
}

/// The status while the owner of the data directory does not answer.
fn unanswered(named: &str, error: &ClientError) -> Status {
    Status {
        at: crate::model::unix_millis(std::time::SystemTime::now()),
        problems: vec![crate::status::Problem {
            what: crate::status::Affected::Engine,
            message: format!("{named} owns the data directory but does not answer: {error}"),
            fix: "Leakwatch attaches to it as soon as it answers, and takes over when it stops; \
                  see `leakwatch doctor`"
                .to_owned(),
        }],
        ..Status::default()
    }
}

/// Waits `period`, dropping commands meanwhile (there is no engine to take
/// them; the next one reads everything afresh), unless shut down.
pub(crate) async fn wait(
    period: Duration,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    shutdown: &mut watch::Receiver<bool>,
) -> Detached {
    let sleep = tokio::time::sleep(period);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return Detached::Retry,
            _ = shutdown.changed() => return Detached::Shutdown,
            command = commands.recv() => if command.is_none() { return Detached::Shutdown },
        }
    }
}
