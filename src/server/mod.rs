//! Listeners: every shard binds the Kafka port itself (glommio sets SO_REUSEPORT) and the kernel
//! spreads new connections over the shards; each connection then lives on the shard that
//! accepted it. `max.connections` is split evenly between shards.

pub mod connection;

use std::rc::Rc;

use glommio::net::TcpListener;

use crate::shard::metrics::ShardMetrics;
use crate::shard::Shard;

/// A listening socket with SO_REUSEPORT (every shard binds the same port) and SO_REUSEADDR (so a
/// restart is not refused by the TIME_WAIT connections the previous process closed), as glommio
/// listener.
pub fn listen(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let domain = if address.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    // SAFETY: the descriptor is a bound, listening TCP socket we own and hand over.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// Binds this shard's listener; the accept loop runs until the shard stops.
pub fn start(shard: Rc<Shard>) -> std::io::Result<()> {
    let address = shard
        .broker
        .listen_addr()
        .map_err(|e| std::io::Error::other(e.0))?;
    let listener = listen(address)?;
    if shard.id == 0 {
        tracing::info!(
            "listening for Kafka clients on {address} with {} shard(s)",
            shard.count
        );
    }
    glommio::spawn_local(accept_loop(shard, listener)).detach();
    Ok(())
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    let limit = shard.broker.max_connections().div_ceil(shard.count);
    loop {
        let stopped = shard.stop_event.listen();
        if shard.stopping.get() {
            return;
        }
        let accepted = {
            use futures::future::{select, Either};
            let accept = listener.accept();
            futures::pin_mut!(accept);
            match select(accept, stopped).await {
                Either::Left((accepted, _)) => accepted,
                Either::Right(_) => return,
            }
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!("accept failed: {error}");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if shard.connections.get() >= limit {
            ShardMetrics::add(&shard.metrics.connections_rejected, 1);
            tracing::warn!(
                "refusing a connection: shard {} is at its share ({limit}) of max.connections",
                shard.id
            );
            drop(stream);
            continue;
        }
        ShardMetrics::add(&shard.metrics.connections_accepted, 1);
        shard.connections.set(shard.connections.get() + 1);
        let connection_shard = shard.clone();
        glommio::spawn_local(async move {
            connection::serve(connection_shard.clone(), stream).await;
            connection_shard
                .connections
                .set(connection_shard.connections.get() - 1);
        })
        .detach();
    }
}
