//! A minimal HTTP endpoint serving the client's Prometheus metrics (any path, any method).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Parses `PORT` (bound on 127.0.0.1) or `HOST:PORT`.
pub(crate) fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| format!("{text:?} is neither PORT nor HOST:PORT"))
}

/// Binds `addr` and serves `metrics()` to every request until the task is dropped.
pub(crate) async fn serve(
    addr: SocketAddr,
    metrics: impl Fn() -> String + Send + Sync + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let metrics = std::sync::Arc::new(metrics);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { continue };
            let metrics = std::sync::Arc::clone(&metrics);
            tokio::spawn(async move {
                // Read (and ignore) the request head; one read is enough for a GET.
                let mut buffer = [0u8; 2048];
                let _ = socket.read(&mut buffer).await;
                let body = metrics();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok(bound)
}
