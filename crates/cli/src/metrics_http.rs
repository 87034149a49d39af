//! A minimal HTTP endpoint for `watch --metrics-addr`: `GET /metrics` (the client's Prometheus
//! metrics and the watch's own), `/healthz` (200 while the process serves), `/readyz` (200 once
//! the watch is ready, else 503), and 404 for any other path.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Parses `PORT` (bound on 127.0.0.1) or `HOST:PORT`.
pub(crate) fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| format!("{text:?} is neither PORT nor HOST:PORT"))
}

/// What the endpoint answers with.
pub(crate) struct Endpoints {
    /// The body of `/metrics`.
    pub(crate) metrics: Box<dyn Fn() -> String + Send + Sync>,
    /// Whether `/readyz` says ready.
    pub(crate) ready: Box<dyn Fn() -> bool + Send + Sync>,
}

/// The process's own series (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_open_fds` and the rest of Prometheus' standard set), where the platform has them
/// (Linux); empty elsewhere.
pub(crate) struct ProcessMetrics(prometheus::Registry);

impl ProcessMetrics {
    pub(crate) fn new() -> Self {
        let registry = prometheus::Registry::new();
        #[cfg(target_os = "linux")]
        {
            let collector = prometheus::process_collector::ProcessCollector::for_self();
            // A fresh registry: nothing to collide with.
            let _ = registry.register(Box::new(collector));
        }
        Self(registry)
    }

    /// The series in Prometheus' text format.
    pub(crate) fn text(&self) -> String {
        let mut text = String::new();
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.0.gather(), &mut text);
        text
    }
}

/// Binds `addr` and serves `endpoints` until the process ends; returns the bound address.
pub(crate) async fn serve(addr: SocketAddr, endpoints: Endpoints) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let endpoints = Arc::new(endpoints);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { continue };
            let endpoints = Arc::clone(&endpoints);
            tokio::spawn(async move {
                let head = read_head(&mut socket).await;
                let (status, body) = answer(&endpoints, request_path(&head));
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
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

/// The request head: read until its blank line (a client may send it in pieces; closing with
/// part of it unread would reset the connection under the answer), at most 8 KiB and 5 s.
async fn read_head(socket: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    let read = async {
        while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buffer[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
    head
}

/// The path of a request head (`GET /metrics HTTP/1.1` -> `/metrics`), without a query.
fn request_path(head: &[u8]) -> &str {
    let line = head.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
    let target = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
    let path = std::str::from_utf8(target).unwrap_or_default();
    path.split('?').next().unwrap_or_default()
}

fn answer(endpoints: &Endpoints, path: &str) -> (&'static str, String) {
    match path {
        "/metrics" => ("200 OK", (endpoints.metrics)()),
        "/healthz" => ("200 OK", "ok\n".to_owned()),
        "/readyz" if (endpoints.ready)() => ("200 OK", "ready\n".to_owned()),
        "/readyz" => ("503 Service Unavailable", "not ready\n".to_owned()),
        _ => ("404 Not Found", "not found: try /metrics, /healthz or /readyz\n".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn the_process_series_are_there() {
        let text = ProcessMetrics::new().text();
        for series in
            ["process_cpu_seconds_total ", "process_resident_memory_bytes ", "process_open_fds "]
        {
            assert!(text.lines().any(|l| l.starts_with(series)), "{series} in {text}");
        }
    }

    #[test]
    fn paths_are_routed() {
        let endpoints =
            Endpoints { metrics: Box::new(|| "m 1\n".to_owned()), ready: Box::new(|| false) };
        assert_eq!(request_path(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"), "/metrics");
        assert_eq!(answer(&endpoints, "/metrics"), ("200 OK", "m 1\n".to_owned()));
        assert_eq!(answer(&endpoints, "/readyz").0, "503 Service Unavailable");
        assert_eq!(answer(&endpoints, "/healthz").0, "200 OK");
        assert_eq!(answer(&endpoints, "/").0, "404 Not Found");
        assert_eq!(request_path(b""), "");
    }
}
