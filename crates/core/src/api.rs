//! The running engine's local API: HTTP/1.1 on a Unix socket in the data
//! directory (`engine.sock`), served by the engine that owns the directory's
//! lock ([`crate::owner`]), so the CLI (`leakwatch status`), scripts (`curl
//! --unix-socket`) and other faces read the one engine's state instead of
//! starting a second one. Only the same user may connect: the socket is 0600 in
//! a 0700 directory, and every connection's peer uid (`SO_PEERCRED`,
//! `getpeereid`) is checked before a byte is read. It is the same server code as
//! `/metrics` ([`crate::http`]), with limits for long-lived streams.
//!
//! Routes (bodies are JSON; `v1` is the version of their shape):
//! - `GET /v1/status`: the latest status, as `leakwatch watch --json` prints it.
//! - `GET /v1/stream`: newline-delimited JSON, `{"events": [...]}` with the
//!   events a tick raised (all of them, in one line, before that tick's status)
//!   and `{"status": ...}` after every tick; `{"config": ...}` first and again
//!   whenever a reload puts another config in force. A client too slow to read
//!   is dropped rather than allowed to hold the engine back, or sent a stream
//!   with events missing (it subscribes again). (Engines before
//!   issue 13 sent `{"event": ...}` per event instead: clients still read those.)
//! - `GET /v1/config`: the config in force ([`ConfigText`]): the text the engine
//!   parsed and runs on, which is the last good one while the file is broken.
//!   409 while the engine has no config in force (it started on a broken file
//!   and watches on the built-in defaults, which no face may act on, until a
//!   reload reads a good file), with the config's error as the message (the
//!   stream sends no config line until then); 503 once the engine has stopped.
//! - `GET /v1/history?target=NAME&since=1h`: the target's recorded series with
//!   their samples, and its events, since then (as `leakwatch history --json`).
//! - `POST /v1/rescan`, `POST /v1/reload`: the engine's commands.
//! - `POST /v1/pause-alerts?for=1h` (no `for`: resume).
//! - `POST /v1/baseline?target=NAME`: marks a baseline on the target's processes
//!   now; answers with the marks (`[{instance, target, process, at,
//!   descriptors}]`) once taken. `GET /v1/baseline?target=NAME`: what survived
//!   since (`[{mark, baseline, survivors}]`), read now. 404 for an unknown target
//!   or no mark, 409 for a target with no running process.

use crate::command::Command;
use crate::config::{Config, ConfigError};
use crate::diagnose::{Mark, MarkError, SinceMark};
use crate::http::{Body, Handler, Limits, full};
use crate::model::Event;
use crate::status::Status;
pub use hyper::Method;
use hyper::body::{Bytes, Frame};
use hyper::{Response, StatusCode, header};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

// Where the socket is belongs to the data directory's owner (it is written
// into the lock file); re-exported here, where faces connecting look for it.
pub use crate::owner::{SOCKET_FILE, socket_path};

/// Connections to the local API: few faces, but streams stay open.
pub const LIMITS: Limits = Limits {
    max_connections: 32,
    header_timeout: Duration::from_secs(10),
    connection_timeout: None,
    keep_alive: true,
};

/// Lines a stream client may fall behind before it is dropped.
const STREAM_BACKLOG: usize = 64;

/// What the API serves from: the engine's channels.
#[derive(Debug, Clone)]
pub struct Engine {
    pub status: watch::Receiver<Arc<Status>>,
    /// Each tick's events, as the engine raised them.
    pub events: broadcast::Sender<Arc<[Event]>>,
    pub commands: mpsc::UnboundedSender<Command>,
    /// The config in force, for `/v1/config` and the stream.
    pub config: watch::Receiver<Option<Arc<Config>>>,
    /// The history database, read (read-only) for `/v1/history`.
    pub store: Option<PathBuf>,
}

/// The config an engine has in force, as the local API serves it: the text it
/// parsed and the file that text came from (no text: no file, the built-in
/// defaults of automatic mode; never the defaults an engine falls back on when
/// its file is broken, which are no config in force and not served). While the file is broken the engine runs on its
/// last good text, and so must every face attached to it: a face that read the
/// file itself would act on a config nobody runs, or fail on the file's error
/// (issue 13). A face parses the text again ([`ConfigText::parse`]) rather than
/// receive the parsed config, whose regexes and rule tables have no wire form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigText {
    /// The file; relative paths in the text (pidfiles, logs) are taken
    /// relative to its directory, as the engine took them.
    pub path: Option<PathBuf>,
    pub text: Option<String>,
}

impl ConfigText {
    /// What `config` was parsed from.
    pub fn of(config: &Config) -> Self {
        Self { path: config.source.clone(), text: config.text.as_deref().map(str::to_owned) }
    }

    /// The config again, as the engine parsed it; automatic mode's defaults
    /// without a text.
    /// Fails only when this version cannot read a newer engine's config.
    pub fn parse(&self) -> Result<Config, ConfigError> {
        let Some(text) = &self.text else { return Ok(Config::default()) };
        let path = self.path.as_deref().unwrap_or(Path::new("(the engine's config)"));
        Config::parse(text, path)
    }
}

/// A Unix listener that only hands over connections from this process's own
/// user; others are closed unread (and logged).
#[derive(Debug)]
pub struct SameUserListener {
    listener: tokio::net::UnixListener,
    uid: u32,
}

impl SameUserListener {
    /// Binds `path` (a stale socket file is replaced: the caller holds the
    /// data directory's lock, so no live engine owns it) and makes it 0600.
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = tokio::net::UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self { listener, uid: nix::unistd::getuid().as_raw() })
    }
}

impl crate::http::Listener for SameUserListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&mut self) -> std::io::Result<Self::Io> {
        loop {
            let (stream, _) = self.listener.accept().await?;
            match stream.peer_cred() {
                Ok(peer) if peer.uid() == self.uid => return Ok(stream),
                Ok(peer) => tracing::warn!(
                    "local API: refused a connection from uid {} (pid {:?}): only uid {} may connect",
                    peer.uid(),
                    peer.pid(),
                    self.uid
                ),
                Err(error) => tracing::warn!("local API: refused a connection: {error}"),
            }
        }
    }
}

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: SameUserListener, engine: Engine) {
    crate::http::serve(listener, LIMITS, handler(engine)).await;
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let text = serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

/// The API's routes.
pub fn handler(engine: Engine) -> Handler {
    Arc::new(move |request| {
        let engine = engine.clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        let method = request.method().clone();
        Box::pin(async move {
            let command = |command: Command| {
                if engine.commands.send(command).is_err() {
                    return error(StatusCode::SERVICE_UNAVAILABLE, "the engine has stopped");
                }
                json(StatusCode::ACCEPTED, &serde_json::json!({ "accepted": true }))
            };
            match (&method, path.as_str()) {
                (&Method::GET | &Method::HEAD, "/v1/status") => {
                    let status = engine.status.borrow().clone();
                    json(StatusCode::OK, &*status)
                }
                (&Method::GET, "/v1/stream") => stream(&engine),
                (&Method::GET | &Method::HEAD, "/v1/config") => config_in_force(&engine),
                (&Method::GET, "/v1/history") => history(engine.store.clone(), &query).await,
                (&Method::POST, "/v1/rescan") => command(Command::Rescan),
                (&Method::POST, "/v1/reload") => command(Command::Reload),
                (&Method::POST, "/v1/pause-alerts") => match pause_for(&query) {
                    Ok(duration) => command(Command::PauseAlerts(duration)),
                    Err(message) => error(StatusCode::BAD_REQUEST, &message),
                },
                (&Method::POST | &Method::GET, "/v1/baseline") => {
                    baseline(&engine, &method, &query).await
                }
                (
                    _,
                    "/v1/status" | "/v1/stream" | "/v1/config" | "/v1/rescan" | "/v1/reload"
                    | "/v1/pause-alerts" | "/v1/baseline",
                ) => error(StatusCode::METHOD_NOT_ALLOWED, "wrong method for this route"),
                _ => error(
                    StatusCode::NOT_FOUND,
                    "unknown route; try GET /v1/status, GET /v1/stream, GET /v1/config, \
                     POST /v1/rescan, POST /v1/reload, POST /v1/pause-alerts?for=1h, \
                     POST /v1/baseline?target=NAME",
                ),
            }
        })
    })
}

/// `/v1/config`: the config in force now. Without one, 409 with the config's
/// error while the engine runs (it started on a broken file: a face must not
/// act on the defaults it watches with, so it gets the reason to refuse with),
/// 503 once it has stopped.
fn config_in_force(engine: &Engine) -> Response<Body> {
    if let Some(config) = engine.config.borrow().as_deref().map(ConfigText::of) {
        return json(StatusCode::OK, &config);
    }
    if engine.commands.is_closed() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the engine has stopped");
    }
    let why = engine.status.borrow().config.error.clone();
    let why = why.as_deref().unwrap_or("the configuration could not be read");
    error(
        StatusCode::CONFLICT,
        &format!("no configuration in force: {why}; fix the file and the engine reloads it"),
    )
}

/// `/v1/history?target=NAME&since=DURATION` (default 1h), read from the store
/// on a blocking thread through its own read-only connection, so a long query
/// never holds up a tick.
async fn history(store: Option<PathBuf>, query: &str) -> Response<Body> {
    use crate::model::unix_millis;
    let params: std::collections::HashMap<String, String> =
        form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let Some(target) = params.get("target").cloned() else {
        return error(StatusCode::BAD_REQUEST, "history needs ?target=NAME");
    };
    let since = match params.get("since").map(|s| (s, humantime::parse_duration(s))) {
        None => Duration::from_secs(3600),
        Some((_, Ok(since))) => since,
        Some((text, Err(e))) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("since={text}: {e}: expected a duration like \"1h\""),
            );
        }
    };
    let Some(path) = store else {
        return error(StatusCode::NOT_FOUND, "this engine keeps no history (--no-store)");
    };
    let read = tokio::task::spawn_blocking(move || {
        let store = crate::store::Store::open_read_only(&path)?;
        let now = unix_millis(std::time::SystemTime::now());
        let since = now.saturating_sub(u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
        let mut series = Vec::new();
        for info in store.series(&target)? {
            if info.ended_at.is_some_and(|end| end < since) {
                continue;
            }
            let samples = store.samples(info.id, since)?;
            let mut value = serde_json::to_value(&info).unwrap_or_default();
            value["samples"] = serde_json::to_value(samples).unwrap_or_default();
            series.push(value);
        }
        let events = store.events(Some(&target), since)?;
        Ok::<_, crate::store::StoreError>(serde_json::json!({
            "target": target, "since": since, "series": series, "events": events,
        }))
    })
    .await;
    match read {
        Ok(Ok(report)) => json(StatusCode::OK, &report),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("history read failed: {e}")),
    }
}

/// How long `/v1/baseline` waits for the engine: a tick in flight finishes
/// first, and a tick over many targets may take seconds on a loaded machine.
const BASELINE_WAIT: Duration = Duration::from_secs(60);

/// `POST /v1/baseline?target=NAME` marks, `GET` reads what survived since.
async fn baseline(engine: &Engine, method: &Method, query: &str) -> Response<Body> {
    use tokio::sync::oneshot;
    let Some(target) = form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "target")
        .map(|(_, value)| value.into_owned())
    else {
        return error(StatusCode::BAD_REQUEST, "baseline needs ?target=NAME");
    };
    let stopped = || error(StatusCode::SERVICE_UNAVAILABLE, "the engine has stopped");
    if *method == Method::POST {
        let (reply, answer) = oneshot::channel();
        if engine.commands.send(Command::MarkBaseline { target, reply }).is_err() {
            return stopped();
        }
        match tokio::time::timeout(BASELINE_WAIT, answer).await {
            Ok(Ok(Ok(marks))) => json(StatusCode::OK, &marks),
            Ok(Ok(Err(e))) => mark_error(&e),
            Ok(Err(_)) => stopped(),
            Err(_) => error(StatusCode::GATEWAY_TIMEOUT, "the engine did not answer in time"),
        }
    } else {
        let (reply, answer) = oneshot::channel();
        if engine.commands.send(Command::SinceMark { target, reply }).is_err() {
            return stopped();
        }
        match tokio::time::timeout(BASELINE_WAIT, answer).await {
            Ok(Ok(Ok(since))) => json(StatusCode::OK, &since),
            Ok(Ok(Err(e))) => mark_error(&e),
            Ok(Err(_)) => stopped(),
            Err(_) => error(StatusCode::GATEWAY_TIMEOUT, "the engine did not answer in time"),
        }
    }
}

/// A [`MarkError`] as its HTTP status and message.
fn mark_error(e: &MarkError) -> Response<Body> {
    let status = match e {
        MarkError::UnknownTarget { .. } | MarkError::NoMark { .. } => StatusCode::NOT_FOUND,
        MarkError::NotRunning { .. } => StatusCode::CONFLICT,
        MarkError::Probe { permission: true, .. } => StatusCode::FORBIDDEN,
        MarkError::Probe { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        MarkError::Owner { .. } => StatusCode::BAD_GATEWAY,
    };
    error(status, &e.to_string())
}

/// `for=DURATION` of `/v1/pause-alerts`; none resumes alerts.
fn pause_for(query: &str) -> Result<Option<Duration>, String> {
    let Some(value) = query.split('&').find_map(|pair| pair.strip_prefix("for=")) else {
        return Ok(None);
    };
    humantime::parse_duration(value)
        .map(Some)
        .map_err(|e| format!("for={value}: {e}: expected a duration like \"30m\" or \"1h\""))
}

/// A chunked body fed by a channel.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|line| line.map(|bytes| Ok(Frame::data(bytes))))
    }
}

fn stream(engine: &Engine) -> Response<Body> {
    use crate::relay::{Relay, Update};
    use http_body_util::BodyExt;
    let (tx, rx) = mpsc::channel::<Bytes>(STREAM_BACKLOG);
    let mut relay = Relay::new(engine.status.clone(), engine.events.subscribe());
    let mut config = engine.config.clone();
    tokio::spawn(async move {
        let line = |key: &str, value: &dyn erased::Json| -> Option<Bytes> {
            let mut text = format!("{{\"{key}\":{}}}", value.json()?);
            text.push('\n');
            Some(Bytes::from(text))
        };
        // The config in force and the current status first, so a client has
        // something at once (a client that cannot read the config line, one
        // from before it was sent, skips it).
        let in_force = config.borrow_and_update().as_deref().map(ConfigText::of);
        if let Some(bytes) = in_force.and_then(|c| line("config", &c))
            && tx.try_send(bytes).is_err()
        {
            return;
        }
        let first = relay.current_status();
        let mut pending = line("status", &*first);
        // An engine that publishes no config (a test's) still streams the rest.
        let mut config_open = true;
        loop {
            if let Some(bytes) = pending.take() {
                // Full (a client not reading) or closed: drop the client.
                if tx.try_send(bytes).is_err() {
                    return;
                }
            }
            tokio::select! {
                // In the engine's order, a tick's events before its status
                // (issue 13: an unbiased select sent the status first now and
                // then, and an attached `watch` printed those events late).
                update = relay.next() => match update {
                    // One line per tick, however many it raised: the backlog
                    // counts lines, and a large tick is not a slow client.
                    Some(Update::Events(raised)) => pending = line("events", &&*raised),
                    Some(Update::Status(current)) => pending = line("status", &*current),
                    // Events lost: a client must not take the rest for all
                    // of them. Dropped, as a client that stops reading is; it
                    // knows, and subscribes again.
                    Some(Update::Lagged(missed)) => {
                        tracing::warn!(
                            "local API: a stream fell {missed} ticks' events behind: dropped"
                        );
                        return;
                    }
                    None => return,
                },
                changed = config.changed(), if config_open => {
                    if changed.is_err() {
                        config_open = false;
                        continue;
                    }
                    let current = config.borrow_and_update().as_deref().map(ConfigText::of);
                    pending = current.and_then(|c| line("config", &c));
                }
                () = tx.closed() => return,
            }
        }
    });
    let mut response = Response::new(ChannelBody(rx).boxed());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/x-ndjson"));
    response
}

/// Serialising either a status or an event through one closure.
mod erased {
    pub(super) trait Json {
        fn json(&self) -> Option<String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Option<String> {
            serde_json::to_string(self).ok()
        }
    }
}

/// Why the API could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket: no engine runs for this data directory.
    #[error("no engine running (no socket at {})", path.display())]
    NoEngine { path: PathBuf },
    #[error("local API at {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("local API at {}: {source}", path.display())]
    Http { path: PathBuf, source: hyper::Error },
    #[error("local API at {}: {status}: {body}", path.display())]
    Status { path: PathBuf, status: StatusCode, body: String },
    /// The engine answered with JSON this version cannot read.
    #[error("local API at {}: unreadable answer: {source}", path.display())]
    Body { path: PathBuf, source: serde_json::Error },
}

impl ClientError {
    /// The engine's own words for a refusal (the `error` of its JSON body), or
    /// the whole error.
    pub fn message(&self) -> String {
        if let ClientError::Status { body, .. } = self
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(body)
            && let Some(message) = value["error"].as_str()
        {
            return message.to_owned();
        }
        self.to_string()
    }
}

fn target_query(target: &str) -> String {
    form_urlencoded::Serializer::new(String::new()).append_pair("target", target).finish()
}

/// Asks the engine at `socket` to mark a baseline on `target` now.
pub async fn mark_baseline(socket: &Path, target: &str) -> Result<Vec<Mark>, ClientError> {
    let body =
        request(socket, Method::POST, &format!("/v1/baseline?{}", target_query(target))).await?;
    serde_json::from_slice(&body)
        .map_err(|source| ClientError::Body { path: socket.to_owned(), source })
}

/// The running engine's one-line diagnosis of the configured `target`, as
/// [`Status::diagnosis_of`] gives it (read from `/v1/status` as plain JSON, so
/// it needs nothing of the status but these fields).
pub async fn target_diagnosis(socket: &Path, target: &str) -> Result<Option<String>, ClientError> {
    let body = request(socket, Method::GET, "/v1/status").await?;
    let status: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|source| ClientError::Body { path: socket.to_owned(), source })?;
    Ok(status["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|row| row["target"].as_str() == Some(target))
        .find_map(|row| row["diagnosis"].as_str().map(str::to_owned)))
}

/// Asks the engine at `socket` what survived on `target` since its mark.
pub async fn since_mark(socket: &Path, target: &str) -> Result<Vec<SinceMark>, ClientError> {
    let body =
        request(socket, Method::GET, &format!("/v1/baseline?{}", target_query(target))).await?;
    serde_json::from_slice(&body)
        .map_err(|source| ClientError::Body { path: socket.to_owned(), source })
}

/// Connects to the engine at `socket` and sends `method path`: the response,
/// whatever its status.
async fn send(
    socket: &Path,
    method: Method,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
    use http_body_util::Empty;
    let at = || socket.to_owned();
    let stream = match tokio::net::UnixStream::connect(socket).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ClientError::NoEngine { path: at() });
        }
        Err(source) => return Err(ClientError::Io { path: at(), source }),
    };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|source| ClientError::Http { path: at(), source })?;
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "leakwatch")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ClientError::Io { path: at(), source: std::io::Error::other(e) })?;
    sender.send_request(request).await.map_err(|source| ClientError::Http { path: at(), source })
}

/// One request to the engine at `socket`: its body when it answers 2xx.
pub async fn request(socket: &Path, method: Method, path: &str) -> Result<Bytes, ClientError> {
    use http_body_util::BodyExt;
    let at = || socket.to_owned();
    let response = send(socket, method, path).await?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|source| ClientError::Http { path: at(), source })?
        .to_bytes();
    if !status.is_success() {
        return Err(ClientError::Status {
            path: at(),
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(body)
}

/// The config the engine has in force (`GET /v1/config`).
pub async fn config(socket: &Path) -> Result<ConfigText, ClientError> {
    let body = request(socket, Method::GET, "/v1/config").await?;
    serde_json::from_slice(&body)
        .map_err(|source| ClientError::Body { path: socket.to_owned(), source })
}

/// The engine's latest status (`GET /v1/status`), typed.
pub async fn status(socket: &Path) -> Result<Status, ClientError> {
    let body = request(socket, Method::GET, "/v1/status").await?;
    serde_json::from_slice(&body)
        .map_err(|source| ClientError::Body { path: socket.to_owned(), source })
}

/// Tells the engine at `socket` to carry out `command` (`POST /v1/rescan`,
/// `/v1/reload`, `/v1/pause-alerts`): how a face attached to another engine
/// drives it.
pub async fn send_command(socket: &Path, command: Command) -> Result<(), ClientError> {
    let owner = |error: ClientError| MarkError::Owner { message: error.message() };
    let path = match command {
        // Asked and answered: the reply goes back to whoever asked this face.
        Command::MarkBaseline { target, reply } => {
            let _ = reply.send(mark_baseline(socket, &target).await.map_err(owner));
            return Ok(());
        }
        Command::SinceMark { target, reply } => {
            let _ = reply.send(since_mark(socket, &target).await.map_err(owner));
            return Ok(());
        }
        Command::Rescan => "/v1/rescan".to_owned(),
        Command::Reload => "/v1/reload".to_owned(),
        Command::PauseAlerts(None) => "/v1/pause-alerts".to_owned(),
        Command::PauseAlerts(Some(duration)) => {
            format!("/v1/pause-alerts?for={}s", duration.as_secs().max(1))
        }
    };
    request(socket, Method::POST, &path).await.map(drop)
}

/// One line of `/v1/stream`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamItem {
    Status(Box<Status>),
    /// The events one tick raised, in order.
    Events(Vec<Event>),
    /// One event, as an engine from before issue 13 sent each.
    Event(Event),
    /// The config the engine has in force: first, and after a reload changed it.
    Config(ConfigText),
}

/// The longest line a stream may send: a status with many targets and orphan
/// trees is large, but not this large; beyond it the engine is not one we speak to.
const MAX_STREAM_LINE: usize = 32 * 1024 * 1024;

/// An open `/v1/stream`: statuses and events as the engine sends them.
#[derive(Debug)]
pub struct Subscription {
    socket: PathBuf,
    body: hyper::body::Incoming,
    buffer: Vec<u8>,
}

impl Subscription {
    /// The next status or event; `None` when the engine closed the stream (it
    /// stopped or died: the kernel closes its socket either way).
    pub async fn next(&mut self) -> Option<Result<StreamItem, ClientError>> {
        use http_body_util::BodyExt;
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return Some(
                    serde_json::from_slice(line)
                        .map_err(|source| ClientError::Body { path: self.socket.clone(), source }),
                );
            }
            if self.buffer.len() > MAX_STREAM_LINE {
                return Some(Err(ClientError::Io {
                    path: self.socket.clone(),
                    source: std::io::Error::other(format!(
                        "a stream line longer than {MAX_STREAM_LINE} bytes"
                    )),
                }));
            }
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Err(source) => {
                    return Some(Err(ClientError::Http { path: self.socket.clone(), source }));
                }
            }
        }
    }
}

/// Opens `GET /v1/stream` of the engine at `socket`. Its first item is the
/// engine's current status, with each target's recent history, so a face that
/// attaches has the whole picture at once.
pub async fn subscribe(socket: &Path) -> Result<Subscription, ClientError> {
    use http_body_util::BodyExt;
    let response = send(socket, Method::GET, "/v1/stream").await?;
    let status = response.status();
    if !status.is_success() {
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Err(ClientError::Status {
            path: socket.to_owned(),
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(Subscription { socket: socket.to_owned(), body: response.into_body(), buffer: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_for_reads_a_duration_and_names_a_bad_one() {
        assert_eq!(pause_for(""), Ok(None));
        assert_eq!(pause_for("for=30m"), Ok(Some(Duration::from_secs(1800))));
        let error = pause_for("x=1&for=soon").unwrap_err();
        assert!(error.contains("for=soon"), "{error}");
    }

    /// `n` events of one tick.
    fn hello(n: usize) -> Arc<[Event]> {
        (0..n)
            .map(|i| Event {
                at: 1,
                subject: crate::model::Subject::Leakwatch,
                pid: None,
                kind: crate::model::EventKind::ConfigReloaded,
                rule: None,
                severity: crate::model::Severity::Ok,
                value: None,
                message: format!("hello {i}"),
                notified: false,
            })
            .collect()
    }

    #[test]
    fn stream_reads_an_older_engines_event_lines() {
        let line = r#"{"event":{"at":1,"target":"orphans","pid":null,"kind":"action","rule":null,"severity":"warning","value":null,"message":"orphans: reaping 1 tree(s)"}}"#;
        let item: StreamItem = serde_json::from_str(line).unwrap();
        assert!(
            matches!(&item, StreamItem::Event(e) if e.subject == crate::model::Subject::Orphans && !e.notified),
            "{item:?}"
        );
    }

    fn engine() -> (Engine, watch::Sender<Arc<Status>>, mpsc::UnboundedReceiver<Command>) {
        let (status_tx, status) = watch::channel(Arc::new(Status { tick: 7, ..Status::default() }));
        let (events, _) = broadcast::channel(16);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (_, config) = watch::channel(None);
        (Engine { status, events, commands, config, store: None }, status_tx, command_rx)
    }

    /// `engine` served on a socket in a new directory: the directory (kept
    /// while the test runs), the socket, and the server's task.
    fn served(engine: Engine) -> (tempfile::TempDir, PathBuf, tokio::task::JoinHandle<()>) {
        let dir = tempfile::tempdir().unwrap();
        let socket = socket_path(dir.path());
        let listener = SameUserListener::bind(&socket).unwrap();
        let server = tokio::spawn(serve(listener, engine));
        (dir, socket, server)
    }

    /// The stream's next item, which must come within 30 s.
    async fn next_item(subscription: &mut Subscription) -> StreamItem {
        tokio::time::timeout(Duration::from_secs(30), subscription.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }

    /// A stream further behind than the engine's event channel holds skipped the
    /// events it lost and went on, so its client took what came for all of
    /// them. It ends instead, as for a client that stops reading.
    #[tokio::test]
    async fn a_stream_that_falls_behind_the_events_ends_rather_than_skip_some() {
        let (engine, _status_tx, _commands) = engine();
        let events = engine.events.clone();
        let (_dir, socket, server) = served(engine);
        let mut subscription = subscribe(&socket).await.unwrap();
        let first = subscription.next().await.unwrap().unwrap();
        assert!(matches!(first, StreamItem::Status(_)), "{first:?}");
        // More ticks than the channel holds (16 here), none read meanwhile:
        // this runtime has one thread, and it is here.
        for _ in 0..20 {
            events.send(hello(1)).unwrap();
        }
        let end = tokio::time::timeout(Duration::from_secs(30), subscription.next()).await.unwrap();
        assert!(end.is_none(), "the stream went on after losing events: {end:?}");
        server.abort();
    }

    /// Issue 13: the stream picked at random among the branches ready at once,
    /// so now and then it sent a tick's status before that tick's events, and
    /// an attached `watch` printed them with the next tick. The events line
    /// comes first, every time (over a hundred rounds, half of them went wrong
    /// before).
    #[tokio::test]
    async fn a_ticks_events_reach_the_stream_before_its_status() {
        let (engine, status_tx, _commands) = engine();
        let events = engine.events.clone();
        let (_dir, socket, server) = served(engine);
        let mut subscription = subscribe(&socket).await.unwrap();
        assert!(matches!(next_item(&mut subscription).await, StreamItem::Status(s) if s.tick == 7));
        for tick in 8..208 {
            let mut event = hello(1)[0].clone();
            event.message = format!("tick {tick}");
            // As the engine sends them, with nothing awaited between: on this
            // one thread the stream wakes to find both ready, as it does when
            // it is scheduled late on a loaded machine.
            events.send(Arc::from([event])).unwrap();
            status_tx.send(Arc::new(Status { tick, ..Status::default() })).unwrap();
            match next_item(&mut subscription).await {
                StreamItem::Events(e) if e.len() == 1 && e[0].message == format!("tick {tick}") => {
                }
                other => panic!("tick {tick}: {other:?} came before the tick's events"),
            }
            let status = next_item(&mut subscription).await;
            assert!(matches!(&status, StreamItem::Status(s) if s.tick == tick), "{status:?}");
        }
        server.abort();
    }

    /// Issue 13: a face attached to an engine acts on the config that engine has
    /// in force, which is not the file's while the file is broken; the API
    /// serves it, at `/v1/config` and at the head of the stream (and again when
    /// a reload puts another in force), as text the face parses to the same config.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn api_serves_the_config_in_force_and_streams_its_changes() {
        let dir = tempfile::tempdir().unwrap();
        let socket = socket_path(dir.path());
        let listener = SameUserListener::bind(&socket).unwrap();
        let path = dir.path().join("config.toml");
        let good = "[[watch]]\nname = \"web\"\npidfile = \"web.pid\"\n";
        let parsed = Config::parse(good, &path).unwrap();
        let (mut engine, _status_tx, _commands) = engine();
        let (config_tx, config) = watch::channel(Some(Arc::new(parsed)));
        engine.config = config;
        let server = tokio::spawn(serve(listener, engine));

        let served = super::config(&socket).await.unwrap();
        assert_eq!(served, ConfigText { path: Some(path.clone()), text: Some(good.to_owned()) });
        let again = served.parse().unwrap();
        assert_eq!(again.watch[0].name, "web");
        // Relative paths resolve where the engine resolved them, not here.
        assert!(
            matches!(&again.watch[0].selector, crate::config::Selector::Pidfile(p) if *p == dir.path().join("web.pid")),
            "{:?}",
            again.watch[0].selector
        );

        let mut subscription = subscribe(&socket).await.unwrap();
        assert!(matches!(next_item(&mut subscription).await, StreamItem::Config(c) if c == served));
        assert!(matches!(next_item(&mut subscription).await, StreamItem::Status(s) if s.tick == 7));
        let reloaded = good.replace("web", "api");
        config_tx.send_replace(Some(Arc::new(Config::parse(&reloaded, &path).unwrap())));
        assert!(matches!(
            next_item(&mut subscription).await,
            StreamItem::Config(c) if c.text.as_deref() == Some(reloaded.as_str())
        ));
        // Automatic mode: no file, no text; the face parses the defaults.
        config_tx.send_replace(Some(Arc::new(Config::default())));
        let StreamItem::Config(automatic) = next_item(&mut subscription).await else { panic!() };
        assert_eq!(automatic, ConfigText { path: None, text: None });
        assert!(automatic.parse().unwrap().watch.is_empty());
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn api_serves_status_and_commands_on_a_private_socket() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let socket = socket_path(dir.path());
        std::fs::write(&socket, "stale").unwrap();
        let listener = SameUserListener::bind(&socket).unwrap();
        assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);
        let (engine, _status_tx, mut commands) = engine();
        let server = tokio::spawn(serve(listener, engine));
        let body = request(&socket, Method::GET, "/v1/status").await.unwrap();
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status["tick"], 7);
        request(&socket, Method::POST, "/v1/rescan").await.unwrap();
        assert!(matches!(commands.recv().await, Some(Command::Rescan)));
        request(&socket, Method::POST, "/v1/pause-alerts?for=1h").await.unwrap();
        assert!(matches!(
            commands.recv().await,
            Some(Command::PauseAlerts(Some(d))) if d == Duration::from_secs(3600)
        ));
        let no_store = request(&socket, Method::GET, "/v1/history?target=web").await;
        assert!(matches!(no_store, Err(ClientError::Status { status: StatusCode::NOT_FOUND, .. })));
        let bad = request(&socket, Method::POST, "/v1/pause-alerts?for=soon").await;
        assert!(matches!(bad, Err(ClientError::Status { status: StatusCode::BAD_REQUEST, .. })));
        server.abort();
        let _ = server.await;
        std::fs::remove_file(&socket).unwrap();
        let gone = request(&socket, Method::GET, "/v1/status").await;
        assert!(matches!(gone, Err(ClientError::NoEngine { .. })), "{gone:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn api_stream_sends_statuses_and_events_as_they_happen() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let (engine, status_tx, _commands) = engine();
        let events = engine.events.clone();
        let (_dir, socket, server) = served(engine);
        let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        stream.write_all(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut lines = BufReader::new(stream).lines();
        assert_eq!(next_json(&mut lines).await["status"]["tick"], 7);
        status_tx.send(Arc::new(Status { tick: 8, ..Status::default() })).unwrap();
        assert_eq!(next_json(&mut lines).await["status"]["tick"], 8);
        events.send(hello(60)).unwrap();
        let raised = next_json(&mut lines).await;
        // Issue 13: a tick's 60 events are one line, not 60 for a 64-line backlog.
        assert_eq!(raised["events"].as_array().map(Vec::len), Some(60), "{raised}");
        assert_eq!(raised["events"][59]["message"], "hello 59");
        assert_eq!(raised["events"][0]["subject"], serde_json::json!({"type": "leakwatch"}));
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_subscription_reads_typed_statuses_and_events_and_sends_commands() {
        let (engine, status_tx, mut commands) = engine();
        let events = engine.events.clone();
        let (_dir, socket, server) = served(engine);
        assert_eq!(status(&socket).await.unwrap().tick, 7);
        let mut subscription = subscribe(&socket).await.unwrap();
        assert!(matches!(next_item(&mut subscription).await, StreamItem::Status(s) if s.tick == 7));
        status_tx.send(Arc::new(Status { tick: 8, ..Status::default() })).unwrap();
        assert!(matches!(next_item(&mut subscription).await, StreamItem::Status(s) if s.tick == 8));
        events.send(hello(2)).unwrap();
        assert!(matches!(
            next_item(&mut subscription).await,
            StreamItem::Events(e) if e.len() == 2 && e[1].message == "hello 1"
        ));
        send_command(&socket, Command::PauseAlerts(Some(Duration::from_secs(90)))).await.unwrap();
        assert!(matches!(
            commands.recv().await,
            Some(Command::PauseAlerts(Some(d))) if d == Duration::from_secs(90)
        ));
        send_command(&socket, Command::Reload).await.unwrap();
        assert!(matches!(commands.recv().await, Some(Command::Reload)));
        // The engine stopping ends the subscription: the face's cue to take over.
        server.abort();
        let _ = server.await;
        drop(status_tx);
        let end = tokio::time::timeout(Duration::from_secs(30), subscription.next()).await.unwrap();
        assert!(!matches!(end, Some(Ok(_))), "{end:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn api_baseline_route_waits_for_the_engines_answer_and_maps_its_errors() {
        use crate::diagnose::{Mark, MarkError};
        use leakwatch_probe::{ProcessId, StartTime};
        let (engine, _status_tx, mut commands) = engine();
        let (_dir, socket, server) = served(engine);
        // A stand-in engine: marks `web`, knows nothing else.
        let answering = tokio::spawn(async move {
            while let Some(command) = commands.recv().await {
                match command {
                    Command::MarkBaseline { target, reply } if target == "web" => {
                        let _ = reply.send(Ok(vec![Mark {
                            instance: target.clone(),
                            target,
                            process: ProcessId { pid: 42, start_time: StartTime(7) },
                            at: 1_000,
                            descriptors: 12,
                        }]));
                    }
                    Command::MarkBaseline { target, reply } => {
                        let _ = reply.send(Err(MarkError::UnknownTarget {
                            target,
                            watched: vec!["web".into()],
                        }));
                    }
                    Command::SinceMark { target, reply } => {
                        let _ = reply.send(Err(MarkError::NoMark { target }));
                    }
                    _ => {}
                }
            }
        });
        let marks = mark_baseline(&socket, "web").await.unwrap();
        assert_eq!((marks[0].process.pid, marks[0].descriptors), (42, 12));
        let unknown = mark_baseline(&socket, "a b&c").await.unwrap_err();
        assert!(
            matches!(&unknown, ClientError::Status { status: StatusCode::NOT_FOUND, .. }),
            "{unknown:?}"
        );
        assert!(unknown.message().starts_with("no target `a b&c` is watched"), "{unknown}");
        let none = since_mark(&socket, "web").await.unwrap_err();
        assert!(none.message().contains("--mark"), "{none}");
        let bare = request(&socket, Method::POST, "/v1/baseline").await.unwrap_err();
        assert!(matches!(bare, ClientError::Status { status: StatusCode::BAD_REQUEST, .. }));
        server.abort();
        answering.abort();
    }

    /// The next JSON line of a chunked stream (chunk sizes are skipped).
    async fn next_json(
        lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::net::UnixStream>>,
    ) -> serde_json::Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if line.starts_with('{') {
                return serde_json::from_str(&line).unwrap();
            }
        }
    }
}
