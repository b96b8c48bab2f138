//! A minimal HTTP server, so that restart and health-check code has a real local
//! server to probe: every request, whatever its path (`GET /health` included), gets
//! `HTTP/1.1 200 OK` with the body `ok`, and the connection is closed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

/// Binds 127.0.0.1:`port` (0 for any free port).
pub(crate) fn bind(port: u16) -> Result<TcpListener, String> {
    TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("listen on 127.0.0.1:{port}: {e}"))
}

/// Serves `listener` on a background thread for the life of the process; returns the
/// port it listens on.
pub(crate) fn serve(listener: TcpListener) -> Result<u16, String> {
    let port = listener.local_addr().map_err(|e| format!("listener address: {e}"))?.port();
    thread::Builder::new()
        .name("http".to_owned())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                // One thread per connection: a client that never sends its request
                // must not stall the health checks behind it.
                let _ =
                    thread::Builder::new().name("http-conn".to_owned()).spawn(move || answer(conn));
            }
        })
        .map_err(|e| format!("spawn http thread: {e}"))?;
    Ok(port)
}

fn answer(mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    // Read up to the end of the request head (we never look at a body).
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if head.is_empty() {
        return;
    }
    let _ = conn.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    );
    let _ = conn.flush();
}
