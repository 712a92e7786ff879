//! The HTTP admin endpoint on shard 0: `/metrics` (Prometheus text, every shard's series
//! collected over the mesh at scrape time), `/health` and `/ready`. Plain HTTP/1.1, one request
//! per connection, request heads over 8 KiB refused.

use std::rc::Rc;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::shard::metrics;
use crate::shard::Shard;

const MAX_REQUEST_HEAD_BYTES: usize = 8 << 10;

pub fn start(shard: Rc<Shard>, address: &str) -> std::io::Result<()> {
    let address: std::net::SocketAddr = address
        .parse()
        .map_err(|_| std::io::Error::other(format!("'{address}' is not host:port")))?;
    let listener = crate::server::listen(address)?;
    tracing::info!("admin endpoint on http://{address}/metrics");
    glommio::spawn_local(async move {
        loop {
            let stopped = shard.stop_event.listen();
            if shard.stopping.get() {
                return;
            }
            let accept = listener.accept();
            futures::pin_mut!(accept);
            let stream = match futures::future::select(accept, stopped).await {
                futures::future::Either::Left((Ok(stream), _)) => stream,
                futures::future::Either::Left((Err(_), _)) => continue,
                futures::future::Either::Right(_) => return,
            };
            glommio::spawn_local(serve(shard.clone(), stream)).detach();
        }
    })
    .detach();
    Ok(())
}

async fn serve(shard: Rc<Shard>, mut stream: TcpStream) {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
        if head.len() > MAX_REQUEST_HEAD_BYTES {
            let _ = respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n",
            )
            .await;
            return;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, body) = match path.as_str() {
        "/metrics" => {
            let snapshots: Vec<metrics::MetricsSnapshot> = shard
                .broadcast(|s| async move { s.metrics_snapshot() })
                .await
                .into_iter()
                .flatten()
                .collect();
            ("200 OK", metrics::render(&snapshots))
        }
        "/health" => ("200 OK", "ok\n".to_string()),
        "/ready" if !shard.stopping.get() => ("200 OK", "ready\n".to_string()),
        "/ready" => ("503 Service Unavailable", "stopping\n".to_string()),
        _ => (
            "404 Not Found",
            "try /metrics, /health or /ready\n".to_string(),
        ),
    };
    let content_type = if path == "/metrics" {
        "text/plain; version=0.0.4"
    } else {
        "text/plain"
    };
    let _ = respond(&mut stream, status, content_type, &body).await;
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    stream.close().await
}
