//! Starting and stopping a broker: the data directory lock and `meta.properties`, the shards
//! (one pinned glommio executor per core, joined by a channel mesh), metadata replay and
//! partition recovery before any listener opens, and the clean shutdown on SIGINT/SIGTERM that
//! lets the next start skip recovery.
//!
//! Startup order: lock → check the port is free → executors → mesh → controller replays the
//! metadata log on shard 0 → every shard opens (and recovers) its partitions → every shard binds
//! the Kafka port → admin endpoint. Shutdown: stop listeners → close partitions (flush, seal
//! indexes, producer snapshots) → close the metadata log → write the clean-shutdown marker.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

use crate::config::BrokerConfig;
use crate::metadata::controller::{Controller, METADATA_DIR};
use crate::metadata::MetadataImage;
use crate::shard::{Job, Shard};

/// Marker written after a clean shutdown (Kafka's `.kafka_cleanshutdown`).
pub const CLEAN_SHUTDOWN_FILE: &str = ".weir_clean_shutdown";
const LOCK_FILE: &str = ".lock";
const MESH_CAPACITY: usize = 1024;
/// glommio needs this much locked memory for its io_uring rings when not root.
const MEMLOCK_MIN_BYTES: u64 = 512 << 10;

static SHUTDOWN: AtomicBool = AtomicBool::new(false);

/// Asks a running broker (in this process) to shut down cleanly.
pub fn request_shutdown() {
    SHUTDOWN.store(true, Ordering::SeqCst);
}

/// An exclusive `flock` on `<data>/.lock`, held for the broker's lifetime.
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, String> {
        use std::os::fd::AsRawFd;
        let path = data_dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(format!(
                "data directory {} is in use by another broker (pid {}); stop it or choose another --data-dir",
                data_dir.display(),
                holder.trim()
            ));
        }
        file.set_len(0).map_err(|e| e.to_string())?;
        let _ = writeln!(file, "{}", std::process::id());
        Ok(DataDirLock { _file: file })
    }
}

/// Reads `meta.properties` (Kafka's format), creating it with a new cluster id on first start.
/// Refuses a directory that belongs to another node id.
pub fn load_or_create_meta_properties(data_dir: &Path, node_id: i32) -> Result<String, String> {
    let path = data_dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let value = |key: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_string())
        };
        let cluster_id =
            value("cluster.id").ok_or_else(|| format!("{} has no cluster.id", path.display()))?;
        if let Some(stored) = value("node.id") {
            if stored != node_id.to_string() {
                return Err(format!(
                    "{} belongs to node.id {stored}, but this broker is configured as node.id {node_id}; fix node.id or use another data directory",
                    path.display()
                ));
            }
        }
        return Ok(cluster_id);
    }
    let cluster_id = crate::metadata::random_uuid().to_string();
    let directory_id = crate::metadata::random_uuid().to_string();
    let text = format!(
        "#\n#Written by Weir\ncluster.id={cluster_id}\ndirectory.id={directory_id}\nnode.id={node_id}\nversion=1\n"
    );
    crate::storage::segment::write_file_synced(&path, text.as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(cluster_id)
}

fn check_memlock() -> Result<(), String> {
    // SAFETY: plain libc calls with a stack value.
    unsafe {
        if libc::geteuid() == 0 {
            return Ok(());
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) != 0 {
            return Ok(());
        }
        if limit.rlim_cur >= MEMLOCK_MIN_BYTES {
            return Ok(());
        }
        if limit.rlim_max >= MEMLOCK_MIN_BYTES {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) == 0 {
                return Ok(());
            }
        }
        Err(format!(
            "RLIMIT_MEMLOCK is {} KiB; glommio needs at least 512 KiB. Run `ulimit -l unlimited` (or set LimitMEMLOCK=infinity in the systemd unit); see tuning/README.md",
            limit.rlim_cur / 1024
        ))
    }
}

/// How long to wait for a port a previous process held: an io_uring accept still pending when a
/// process dies keeps its listening socket alive until the kernel tears the ring down.
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Raises the soft open-files limit to the hard one (every segment keeps a file open, every
/// connection a socket) and warns when it is still small for `weir.max.partitions`.
fn raise_open_files_limit(broker: &BrokerConfig) {
    // SAFETY: plain libc calls with a stack value.
    let limit = unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        limit.rlim_cur
    };
    let wanted = (broker.max_partitions() * 4 + broker.max_connections()) as u64;
    if limit < wanted {
        tracing::warn!(
            "open-files limit is {limit}; weir.max.partitions={} and max.connections={} may need about {wanted} (raise `ulimit -n` / LimitNOFILE)",
            broker.max_partitions(),
            broker.max_connections()
        );
    }
}

fn check_port_free(address: std::net::SocketAddr) -> Result<(), String> {
    // Without SO_REUSEPORT this bind fails if anything listens there, including another broker
    // (whose sockets do set SO_REUSEPORT and would otherwise silently share the port with us).
    let deadline = std::time::Instant::now() + PORT_RELEASE_WAIT;
    loop {
        match std::net::TcpListener::bind(address) {
            Ok(_) => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => {
                return Err(format!(
                    "cannot listen on {address}: {error}; is another broker running there? use --listen to pick another address"
                ))
            }
        }
    }
}

fn shard_count(broker: &BrokerConfig) -> usize {
    match broker.smp() {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    }
}

/// Runs a broker until SIGINT/SIGTERM (or [`request_shutdown`]); returns after a clean shutdown.
pub fn run(broker: BrokerConfig) -> Result<(), String> {
    let broker = Arc::new(broker);
    let data_dir = broker.data_dir();
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
    let _lock = DataDirLock::acquire(&data_dir)?;
    check_memlock()?;
    raise_open_files_limit(&broker);
    let cluster_id = load_or_create_meta_properties(&data_dir, broker.node_id())?;
    let address = broker.listen_addr().map_err(|e| e.0)?;
    check_port_free(address)?;
    if let Some(admin) = broker.admin_listen() {
        let admin_address = admin
            .parse()
            .map_err(|_| format!("weir.admin.listen '{admin}' is not host:port"))?;
        check_port_free(admin_address)?;
    }
    let marker = data_dir.join(CLEAN_SHUTDOWN_FILE);
    let clean = marker.exists();
    if clean {
        std::fs::remove_file(&marker).map_err(|e| format!("removing {}: {e}", marker.display()))?;
        crate::storage::segment::sync_dir(&data_dir).map_err(|e| e.to_string())?;
    } else if data_dir.join(METADATA_DIR).exists() {
        tracing::warn!("the last shutdown was not clean: recovering logs (every batch of active segments is checked)");
    }
    let shards = shard_count(&broker);
    crate::storage::readahead::keep_fetch_buffers_resident();
    install_signal_handler();
    let online = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let placement = if shards <= online {
        PoolPlacement::MaxSpread(shards, None)
    } else {
        tracing::warn!("{shards} shards on {online} cores: shards are not pinned");
        PoolPlacement::Unbound(shards)
    };
    let mesh: MeshBuilder<Job, _> = MeshBuilder::full(shards, MESH_CAPACITY);
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("weir-shard")
        .io_memory(crate::storage::readahead::io_memory_bytes(
            broker.readahead_bytes(),
            broker.write_buffer_bytes(),
        ))
        .on_all_shards({
            let broker = broker.clone();
            move || shard_main(mesh, broker, clean, cluster_id, shards)
        })
        .map_err(|e| format!("cannot start shards: {e}"))?;
    let mut first_error = None;
    for result in handles.join_all() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
            }
            Err(error) => {
                first_error.get_or_insert(format!("shard failed: {error}"));
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn install_signal_handler() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    // Threads spawned after this inherit the mask, so only the waiting thread sees the signals.
    if set.thread_block().is_err() {
        return;
    }
    std::thread::Builder::new()
        .name("weir-signals".into())
        .spawn(move || {
            let mut received = 0;
            while let Ok(signal) = set.wait() {
                received += 1;
                if received > 1 {
                    eprintln!("second {signal}: exiting without a clean shutdown");
                    std::process::exit(130);
                }
                tracing::info!("{signal}: shutting down cleanly");
                request_shutdown();
            }
        })
        .expect("spawning the signal thread");
}

async fn shard_main(
    mesh: MeshBuilder<Job, glommio::channels::channel_mesh::Full>,
    broker: Arc<BrokerConfig>,
    clean: bool,
    cluster_id: String,
    count: usize,
) -> Result<(), String> {
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|e| format!("joining the shard mesh: {e}"))?;
    let id = senders.peer_id();
    crate::storage::probe_direct_io(&broker.data_dir(), id)
        .await
        .map_err(|e| {
            format!(
                "cannot use O_DIRECT in {}: {e} (a real filesystem is needed, not tmpfs)",
                broker.data_dir().display()
            )
        })?;
    let shard = Shard::new(id, count, broker.clone(), senders, clean);
    for (_, receiver) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(job) = receiver.recv().await {
                job(shard.clone());
            }
        })
        .detach();
    }
    glommio::spawn_local(shard.flusher.clone().run()).detach();
    glommio::spawn_local(shard.clone().retention_loop()).detach();
    glommio::spawn_local(crate::shard::group_coordinator::run(shard.clone())).detach();
    glommio::spawn_local(crate::shard::txn_coordinator::run(shard.clone())).detach();
    if broker.cleaner_enable() {
        let queue = glommio::executor().create_task_queue(
            glommio::Shares::Static(broker.cleaner_shares()),
            glommio::Latency::NotImportant,
            "cleaner",
        );
        glommio::spawn_local_into(shard.clone().cleaner_loop(), queue)
            .map_err(|e| format!("starting the log cleaner: {e}"))?
            .detach();
    }
    if id != 0 {
        shard.wait_for_exit().await;
        return Ok(());
    }
    let outcome = run_controller_shard(&shard, &broker, clean, cluster_id).await;
    if let Err(error) = &outcome {
        tracing::error!("{error}");
    }
    shutdown(&shard, outcome.is_ok()).await;
    outcome
}

async fn run_controller_shard(
    shard: &Rc<Shard>,
    broker: &Arc<BrokerConfig>,
    clean: bool,
    cluster_id: String,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let data_dir = broker.data_dir();
    let controller = Controller::open(&data_dir, broker.clone(), cluster_id, clean)
        .await
        .map_err(|e| {
            format!(
                "cannot open the metadata log in {}: {e}",
                data_dir.join(METADATA_DIR).display()
            )
        })?;
    let controller = Rc::new(controller);
    let image = controller.image();
    let _ = shard.controller.set(controller);
    shard.publish_metadata(image.clone()).await;
    remove_stray_directories(&data_dir, &image);
    let partitions: usize = image.topics.values().map(|t| t.partitions.len()).sum();
    tracing::info!(
        "opened {} topic(s), {partitions} partition(s) in {:.2}s",
        image.topics.len(),
        started.elapsed().as_secs_f64()
    );
    for (shard_id, result) in shard
        .broadcast(|s| async move { crate::server::start(s).map_err(|e| e.to_string()) })
        .await
        .into_iter()
        .enumerate()
    {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(format!("shard {shard_id} cannot listen: {error}")),
            Err(_) => return Err(format!("shard {shard_id} stopped during startup")),
        }
    }
    if let Some(admin) = broker.admin_listen() {
        crate::admin::start(shard.clone(), admin)
            .map_err(|e| format!("admin endpoint {admin}: {e}"))?;
    }
    tracing::info!(
        "Weir is ready: node {} of cluster {}, data in {}",
        image.node_id,
        image.cluster_id,
        data_dir.display()
    );
    while !SHUTDOWN.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn shutdown(shard: &Rc<Shard>, write_marker: bool) {
    shard.broadcast(|s| async move { s.stop_serving() }).await;
    shard
        .broadcast(|s| async move { s.close_partitions().await })
        .await;
    let mut clean = write_marker;
    if let Some(controller) = shard.controller.get() {
        if let Err(error) = controller.close().await {
            tracing::error!("closing the metadata log: {error}");
            clean = false;
        }
    }
    if clean {
        let data_dir = shard.broker.data_dir();
        let marker: PathBuf = data_dir.join(CLEAN_SHUTDOWN_FILE);
        let result = crate::storage::segment::blocking(move || {
            crate::storage::segment::write_file_synced(&marker, b"clean\n")
        })
        .await;
        match result {
            Ok(()) => tracing::info!("clean shutdown complete"),
            Err(error) => tracing::error!("writing the clean-shutdown marker: {error}"),
        }
    }
    for target in 1..shard.count {
        let _ = shard
            .submit_to(target, |s| async move { s.request_exit() })
            .await;
    }
}

/// Deletes partition directories that no topic in the metadata owns (a crash between a topic's
/// deletion record and its directory's removal), and leftovers of deletions (`*-delete`).
fn remove_stray_directories(data_dir: &Path, image: &MetadataImage) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if !kind.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        if name == METADATA_DIR {
            continue;
        }
        let stray = if name.ends_with("-delete") {
            true
        } else if let Some((topic, partition)) = name.rsplit_once('-') {
            match partition.parse::<usize>() {
                Ok(index) => image
                    .topic(topic)
                    .is_none_or(|t| index >= t.partitions.len()),
                Err(_) => false,
            }
        } else {
            false
        };
        if stray {
            tracing::warn!("removing stray partition directory {name} (not in the metadata)");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_properties_keeps_the_cluster_id_and_refuses_another_node() {
        let dir = crate::testing::data_dir();
        let first = load_or_create_meta_properties(dir.path(), 1).unwrap();
        assert_eq!(
            load_or_create_meta_properties(dir.path(), 1).unwrap(),
            first
        );
        let error = load_or_create_meta_properties(dir.path(), 2).unwrap_err();
        assert!(error.contains("node.id 1"), "{error}");
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused() {
        let dir = crate::testing::data_dir();
        let _held = DataDirLock::acquire(dir.path()).unwrap();
        let error = DataDirLock::acquire(dir.path())
            .err()
            .expect("second lock refused");
        assert!(error.contains("in use"), "{error}");
    }
}
