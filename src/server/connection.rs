//! One client connection: frames in, handlers, responses out in request order.
//!
//! Lives on the shard that accepted the socket. Two tasks share the socket: the reader decodes
//! frames and runs each handler's first phase in arrival order (this is what keeps a
//! connection's produce requests in order), then queues the reply; the writer sends replies in
//! queue order, awaiting the ones that finish later (acks=all produce, long-poll fetch). The
//! queue is bounded by `weir.connection.max.inflight.requests`, so a client that pipelines faster
//! than it reads is throttled by TCP, not by memory.
//!
//! Limits: a frame larger than `socket.request.max.bytes`, a negative size, garbage where a
//! header should be, an unknown API key or an unsupported version closes the connection (as
//! Kafka does) before anything proportional to the claimed size is allocated. Nothing a client
//! sends can panic the shard; other connections are unaffected.

use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use futures::FutureExt;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;

use crate::handlers::{self, HandlerError, Reply, Request};
use crate::protocol::frame;
use crate::protocol::DecodeError;
use crate::shard::metrics::ShardMetrics;
use crate::shard::Shard;

/// Frames up to this size are read through the shared read buffer; larger ones straight into
/// their own allocation.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// Why a connection ended early.
#[derive(Debug)]
pub enum ConnectionEnd {
    Closed,
    Io(std::io::Error),
    FrameTooLarge(i64),
    Malformed(String),
}

/// Serves one accepted connection until the peer closes it or breaks a rule.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    // Kafka's client host as groups report it: "/" + the peer's address.
    let client_host: Rc<str> = stream
        .peer_addr()
        .map(|a| format!("/{}", a.ip()))
        .unwrap_or_default()
        .into();
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.split();
    let (queue, replies) = local_channel::new_bounded(shard.broker.max_inflight_requests());
    let writer_task = glommio::spawn_local(write_replies(writer, replies)).detach();
    let outcome = read_requests(&shard, reader, queue, client_host).await;
    match &outcome {
        ConnectionEnd::Closed => {}
        ConnectionEnd::Io(error) => tracing::debug!("connection {peer}: {error}"),
        other => {
            ShardMetrics::add(&shard.metrics.frames_rejected, 1);
            tracing::warn!("closing connection {peer}: {other:?}");
        }
    }
    // The writer drains what is queued, then ends when the queue closes.
    let _ = writer_task.await;
}

async fn read_requests(
    shard: &Rc<Shard>,
    mut reader: ReadHalf<TcpStream>,
    queue: LocalSender<Reply>,
    client_host: Rc<str>,
) -> ConnectionEnd {
    let max_frame = shard.broker.socket_request_max_bytes();
    let mut buffer = BytesMut::with_capacity(READ_BUFFER_BYTES);
    loop {
        let frame = match next_frame(&mut reader, &mut buffer, max_frame).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return ConnectionEnd::Closed,
            Err(end) => return end,
        };
        let started = Instant::now();
        let mut body = frame;
        let header = match frame::decode_request_header(&mut body) {
            Ok(header) => header,
            Err(DecodeError::UnknownApiKey {
                api_key,
                api_version,
                ..
            }) => {
                return ConnectionEnd::Malformed(format!(
                    "unknown API key {api_key} (version {api_version})"
                ));
            }
            Err(error) => return ConnectionEnd::Malformed(format!("request header: {error:?}")),
        };
        let mut request = Request::new(shard.clone(), header, body);
        request.client_host = client_host.clone();
        let api_name = request.api_name();
        let reply = match handlers::dispatch(request).await {
            Ok(reply) => reply,
            Err(HandlerError::UnsupportedVersion { api, version }) => {
                shard
                    .metrics
                    .record_request(api_name, started.elapsed().as_micros() as u64, true);
                return ConnectionEnd::Malformed(format!(
                    "{api} version {version} is not supported"
                ));
            }
            Err(error) => {
                shard
                    .metrics
                    .record_request(api_name, started.elapsed().as_micros() as u64, true);
                return ConnectionEnd::Malformed(format!("{api_name}: {error:?}"));
            }
        };
        // A deferred reply (acks=all produce, long-poll fetch) is timed until it is ready, as
        // Kafka's request total time includes the time in purgatory.
        let reply = match reply {
            Reply::Later(future) => {
                let shard = shard.clone();
                Reply::Later(Box::pin(async move {
                    let frame = future.await;
                    shard.metrics.record_request(
                        api_name,
                        started.elapsed().as_micros() as u64,
                        false,
                    );
                    frame
                }))
            }
            reply => {
                shard
                    .metrics
                    .record_request(api_name, started.elapsed().as_micros() as u64, false);
                reply
            }
        };
        if !matches!(reply, Reply::NoResponse) && queue.send(reply).await.is_err() {
            return ConnectionEnd::Closed;
        }
    }
}

/// Reads one frame (without its 4-byte size). `Ok(None)` at a clean end of stream.
async fn next_frame(
    reader: &mut ReadHalf<TcpStream>,
    buffer: &mut BytesMut,
    max_frame: usize,
) -> Result<Option<Bytes>, ConnectionEnd> {
    loop {
        if buffer.len() >= 4 {
            let size = i32::from_be_bytes(buffer[..4].try_into().expect("4 bytes")) as i64;
            if size < 0 || size as usize > max_frame {
                return Err(ConnectionEnd::FrameTooLarge(size));
            }
            let size = size as usize;
            if buffer.len() >= 4 + size {
                let mut frame = buffer.split_to(4 + size);
                let _ = frame.split_to(4);
                // Own allocation per frame: record batches from it may stay cached, and must not
                // pin the shared read buffer.
                return Ok(Some(Bytes::copy_from_slice(&frame)));
            }
            if size > READ_BUFFER_BYTES / 2 {
                return read_large_frame(reader, buffer, size).await.map(Some);
            }
        }
        if buffer.capacity() - buffer.len() < READ_BUFFER_BYTES / 4 {
            buffer.reserve(READ_BUFFER_BYTES);
        }
        let start = buffer.len();
        let room = buffer.capacity() - start;
        buffer.resize(start + room, 0);
        let read = reader.read(&mut buffer[start..]).await;
        match read {
            Ok(0) => {
                buffer.truncate(start);
                return if start == 0 {
                    Ok(None)
                } else {
                    Err(ConnectionEnd::Malformed(format!(
                        "connection closed inside a frame ({start} bytes)"
                    )))
                };
            }
            Ok(n) => buffer.truncate(start + n),
            Err(error) => {
                buffer.truncate(start);
                return Err(ConnectionEnd::Io(error));
            }
        }
    }
}

/// Reads a frame bigger than the read buffer straight into its own zeroed allocation (the size
/// was checked against the limit already).
async fn read_large_frame(
    reader: &mut ReadHalf<TcpStream>,
    buffer: &mut BytesMut,
    size: usize,
) -> Result<Bytes, ConnectionEnd> {
    let mut frame = vec![0u8; size];
    let already = buffer.len() - 4;
    frame[..already].copy_from_slice(&buffer[4..]);
    buffer.clear();
    reader
        .read_exact(&mut frame[already..])
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ConnectionEnd::Malformed(format!(
                    "connection closed inside a frame of {size} bytes"
                ))
            } else {
                ConnectionEnd::Io(e)
            }
        })?;
    Ok(Bytes::from(frame))
}

/// Writes replies in order; coalesces consecutive replies that are already complete into one
/// write, so a pipelining client costs one syscall per burst rather than per response.
async fn write_replies(mut writer: WriteHalf<TcpStream>, replies: LocalReceiver<Reply>) {
    let mut pending: Vec<Bytes> = Vec::new();
    let mut carried: Option<Reply> = None;
    loop {
        let reply = match carried.take() {
            Some(reply) => reply,
            None => match replies.recv().await {
                Some(reply) => reply,
                None => break,
            },
        };
        match reply {
            Reply::Now(chunks) => pending.extend(chunks),
            Reply::Later(future) => pending.extend(future.await),
            Reply::NoResponse => continue,
        }
        while let Some(Some(next)) = replies.recv().now_or_never() {
            match next {
                Reply::Now(chunks) => pending.extend(chunks),
                Reply::NoResponse => {}
                Reply::Later(mut future) => match (&mut future).now_or_never() {
                    Some(chunks) => pending.extend(chunks),
                    None => {
                        carried = Some(Reply::Later(future));
                        break;
                    }
                },
            }
        }
        if write_chunks(&mut writer, &mut pending).await.is_err() {
            return;
        }
    }
    let _ = writer.close().await;
}

async fn write_chunks(
    writer: &mut WriteHalf<TcpStream>,
    pending: &mut Vec<Bytes>,
) -> std::io::Result<()> {
    let total: usize = pending.iter().map(Bytes::len).sum();
    if pending.len() > 1 && total <= 256 << 10 {
        let mut joined = BytesMut::with_capacity(total);
        for chunk in pending.drain(..) {
            joined.extend_from_slice(&chunk);
        }
        writer.write_all(&joined).await?;
    } else {
        for chunk in pending.drain(..) {
            writer.write_all(&chunk).await?;
        }
    }
    writer.flush().await
}
