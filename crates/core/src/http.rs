//! The one HTTP/1.1 server behind Leakwatch's endpoints: `/metrics` on TCP today,
//! the engine's local API on a Unix socket (issue 14) with the same code. It is
//! hyper, a well-kept implementation, rather than a hand-written responder
//! (which answered HEAD and `/metrics?x` with 404), wrapped in the accept loop
//! a watchdog needs: it never spins when descriptors run out (EMFILE), caps how
//! many connections it holds, and drops clients that send their request too
//! slowly (slowloris) or hold a connection idle.

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

/// Every response body: whole ones and, for streams, chunks as they come.
pub type Body = BoxBody<Bytes, Infallible>;

/// A response's future, as a handler returns it.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// A request handler: the routes of one endpoint.
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> ResponseFuture + Send + Sync>;

/// A whole body from `text`.
pub fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into()).boxed()
}

/// A plain-text response with `status`.
pub fn text(status: hyper::StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// What one server tolerates from its clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; beyond it the loop stops accepting (the
    /// kernel's backlog holds the rest) until one closes.
    pub max_connections: usize,
    /// How long a client may take to send a request's head, counted from when
    /// the connection is ready for it: it bounds slowloris clients and idle
    /// keep-alive connections alike.
    pub header_timeout: Duration,
    /// The longest a connection may live at all (`None` for streams that are
    /// meant to stay open, as the local API's event stream).
    pub connection_timeout: Option<Duration>,
    /// Whether a connection may carry more than one request. Off for
    /// `/metrics`: a scrape every few seconds gains nothing from a kept
    /// connection, and simple clients can read the response to its end.
    pub keep_alive: bool,
}

impl Limits {
    /// For `/metrics`: a scrape is one small request; nothing needs to stay.
    pub const METRICS: Limits = Limits {
        max_connections: 64,
        header_timeout: Duration::from_secs(10),
        connection_timeout: Some(Duration::from_secs(60)),
        keep_alive: false,
    };
}

/// A listening socket the server accepts connections from (TCP or Unix).
pub trait Listener: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&mut self) -> io::Result<Self::Io> {
        tokio::net::TcpListener::accept(self).await.map(|(stream, _)| stream)
    }
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&mut self) -> io::Result<Self::Io> {
        tokio::net::UnixListener::accept(self).await.map(|(stream, _)| stream)
    }
}

/// The longest the accept loop waits after a failure before trying again.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How long to wait after `error` from `accept`, given the wait after the
/// previous failure in a row (`Duration::ZERO` if the last accept succeeded).
/// A connection that failed on its own (reset or aborted before it was
/// accepted) costs nothing and is retried at once; anything else, above all
/// running out of descriptors (EMFILE, ENFILE) or memory, would fail again at
/// once, so the loop waits, twice as long each time up to [`MAX_BACKOFF`],
/// instead of spinning a core while the listener stays readable.
pub fn accept_backoff(error: &io::Error, previous: Duration) -> Duration {
    use io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    if matches!(error.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
        return Duration::ZERO;
    }
    (previous * 2).clamp(Duration::from_millis(10), MAX_BACKOFF)
}

/// Serves `handler` on `listener` within `limits` until the task is dropped.
pub async fn serve<L: Listener>(mut listener: L, limits: Limits, handler: Handler) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = Duration::ZERO;
    loop {
        // A slot first: at the cap, connections wait in the backlog, not here.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let io = match listener.accept().await {
            Ok(io) => {
                backoff = Duration::ZERO;
                io
            }
            Err(error) => {
                let wait = accept_backoff(&error, backoff);
                if !wait.is_zero() && backoff.is_zero() {
                    tracing::warn!("cannot accept a connection ({error}): retrying with backoff");
                }
                backoff = wait;
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request| {
                let response = handler(request);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(limits.keep_alive)
                .serve_connection(TokioIo::new(io), service);
            // Errors here are the client's (a garbage request is answered 400
            // by hyper, a timeout or a reset just closes): nothing to report.
            match limits.connection_timeout {
                Some(timeout) => {
                    let _ = tokio::time::timeout(timeout, connection).await;
                }
                None => {
                    let _ = connection.await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn accept_backoff_waits_on_emfile_and_not_on_a_reset_connection() {
        let emfile = io::Error::from_raw_os_error(libc_emfile());
        let first = accept_backoff(&emfile, Duration::ZERO);
        assert!(first >= Duration::from_millis(10), "{first:?}");
        let second = accept_backoff(&emfile, first);
        assert!(second > first);
        let mut wait = second;
        for _ in 0..20 {
            wait = accept_backoff(&emfile, wait);
        }
        assert_eq!(wait, MAX_BACKOFF);
        let reset = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(accept_backoff(&reset, wait), Duration::ZERO);
    }

    fn libc_emfile() -> i32 {
        nix::errno::Errno::EMFILE as i32
    }

    fn hello() -> Handler {
        Arc::new(|_request| Box::pin(async { text(hyper::StatusCode::OK, "hello\n") }))
    }

    fn get(address: std::net::SocketAddr) -> String {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connection_cap_holds_new_clients_until_idle_ones_time_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let limits = Limits {
            max_connections: 3,
            header_timeout: Duration::from_millis(500),
            connection_timeout: None,
            keep_alive: true,
        };
        let server = tokio::spawn(serve(listener, limits, hello()));
        let idle: Vec<std::net::TcpStream> =
            (0..3).map(|_| std::net::TcpStream::connect(address).unwrap()).collect();
        // The fourth client waits for a slot; the idle ones are dropped by the
        // header timeout, so it is served rather than refused or stalled forever.
        let response = tokio::task::spawn_blocking(move || get(address)).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        for mut stream in idle {
            stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
            assert!(!String::from_utf8_lossy(&rest).contains("hello"));
        }
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slowloris_client_is_dropped_after_the_header_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let limits = Limits {
            max_connections: 8,
            header_timeout: Duration::from_millis(600),
            connection_timeout: None,
            keep_alive: true,
        };
        let server = tokio::spawn(serve(listener, limits, hello()));
        let closed = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            stream.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            // One header byte every 200 ms, for up to a minute: the server must
            // hang up long before the head could ever be complete.
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(60) {
                if stream.write_all(b"X").is_err() {
                    return true;
                }
                let mut buf = [0u8; 256];
                match stream.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(_) => return !String::from_utf8_lossy(&buf).contains("hello"),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                    Err(_) => return true,
                }
            }
            false
        })
        .await
        .unwrap();
        assert!(closed, "a client dribbling its header was kept for a minute");
        server.abort();
    }
}
