//! Machine ceilings: what this disk, this filesystem and this loopback
//! interface can do *without* Weir in the way, measured in the same run as
//! every Weir benchmark so the report can say "Weir reached N % of what the
//! machine can do" instead of quoting absolute numbers that mean nothing
//! across machines (or across two runs on the same noisy VM).
//!
//! Four ceilings, each defined exactly as the benchmark report uses it:
//!
//! * **D_raw** – sequential `O_DIRECT` writes of 1 MiB page-aligned buffers
//!   into a new preallocated file, no fsync until the end. [`D_RAW_THREADS`]
//!   threads claim consecutive 1 MiB chunks from a shared counter, so the
//!   file is written front to back with up to that many writes in flight
//!   (the depth Weir's io_uring append path keeps). MB/s = bytes / time
//!   *including* the final `fdatasync`.
//! * **D_sync** – [`D_SYNC_THREADS`] threads, each in a loop writes 256 KiB
//!   (`O_DIRECT`, sequential in its own preallocated file) then
//!   `fdatasync`s. MB/s of durable data; this is the ceiling for `acks=all`
//!   with group commit.
//! * **F_p50 / F_p99** – one thread, loop: one 64 KiB `O_DIRECT` write
//!   (sequential, appending into a preallocated file) + `fdatasync`;
//!   histogram of each write+fdatasync pair in microseconds. This is the
//!   floor under any `acks=all` produce latency.
//! * **C_lo** – one sender thread and one receiver thread over 127.0.0.1
//!   with 1 MiB writes/reads, pinned to two different CPUs when the process
//!   may use two (broker and client each get a core, as in the benchmarks).
//!
//! Units: **1 MB = 10^6 bytes** (so MB/s compares directly with what disk
//! vendors and `fio` print); buffer sizes are binary (KiB/MiB).
//!
//! Files are preallocated with `fallocate` because Weir preallocates its
//! segments; a ceiling measured on a growing file would include `i_size`
//! journal commits Weir never pays. Every measurement works in its own
//! hidden scratch directory under `dir` that is removed on return, on error
//! and on panic (drop guard).
//!
//! Pure `std` + `libc` (+ `hdrhistogram`, `serde`): this file compiles both
//! as a standalone crate root and as `crate::bench::ceilings`, so it must
//! not use `crate::` paths, and it deliberately avoids glommio so the
//! ceilings are not limited by the runtime being benchmarked.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// 1 MB as used in every MB/s figure of this module (decimal, like `fio`).
pub const BYTES_PER_MB: f64 = 1_000_000.0;
/// D_raw write size.
pub const D_RAW_WRITE_SIZE: usize = 1 << 20;
/// D_raw writer threads (= writes in flight). Four keeps a virtio or NVMe
/// queue busy the way Weir's io_uring append path does; queue depth 1
/// under-reports what the device can absorb on most virtual disks.
pub const D_RAW_THREADS: usize = 4;
/// D_sync concurrent writer+fdatasync threads.
pub const D_SYNC_THREADS: usize = 16;
/// D_sync write size per fdatasync.
pub const D_SYNC_WRITE_SIZE: usize = 256 << 10;
/// F_p50/F_p99 write size per fdatasync.
pub const FSYNC_WRITE_SIZE: usize = 64 << 10;
/// C_lo write/read size.
pub const TCP_CHUNK: usize = 1 << 20;

/// Buffer alignment for every `O_DIRECT` write: a page satisfies every
/// logical block size Linux supports for O_DIRECT on 4 KiB-page machines.
const BUF_ALIGN: usize = 4096;
/// How often long measurements call the progress callback.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Leave at least half of the free space alone: a ceiling run must never
/// be the thing that fills an operator's data disk.
const FREE_SPACE_SHARE: u64 = 2;

/// The machine's ceilings, in the units the benchmark report prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ceilings {
    /// Sequential O_DIRECT write throughput, MB/s (10^6 bytes/s).
    pub d_raw_mb_s: f64,
    /// Durable throughput of 16 concurrent 256 KiB write+fdatasync loops, MB/s.
    pub d_sync_mb_s: f64,
    /// Median 64 KiB write+fdatasync latency, µs.
    pub f_p50_us: f64,
    /// 99th percentile 64 KiB write+fdatasync latency, µs.
    pub f_p99_us: f64,
    /// Loopback TCP throughput with 1 MiB writes/reads, MB/s.
    pub c_lo_mb_s: f64,
    /// Smallest size/offset/buffer alignment an O_DIRECT write accepts in `dir`.
    pub o_direct_alignment: usize,
    /// How each number was obtained (threads, bytes, time, caveats).
    pub notes: Vec<String>,
}

/// What to measure where, and for how long.
#[derive(Debug, Clone)]
pub struct CeilingOptions {
    /// Directory on the filesystem to measure (the broker's data dir).
    pub dir: PathBuf,
    /// Wall-clock budget per measurement (default 3 s).
    pub duration: Duration,
    /// Byte cap per disk measurement (default 2 GiB); also bounded by half
    /// the free space. Loopback TCP writes no disk and is bounded by time only.
    pub max_bytes: u64,
}

impl Default for CeilingOptions {
    fn default() -> Self {
        CeilingOptions {
            dir: PathBuf::from("."),
            duration: Duration::from_secs(3),
            max_bytes: 2 << 30,
        }
    }
}

impl CeilingOptions {
    /// Defaults (3 s, 2 GiB) for `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CeilingOptions {
            dir: dir.into(),
            ..CeilingOptions::default()
        }
    }
}

/// Result of one throughput measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Throughput {
    /// Bytes / elapsed seconds / 10^6.
    pub mb_s: f64,
    /// Bytes counted (written+durable for disk, received for TCP).
    pub bytes: u64,
    /// Seconds the bytes took.
    pub seconds: f64,
    /// One human-readable line describing the method and raw numbers.
    pub note: String,
}

/// Result of the write+fdatasync latency measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FsyncLatency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Number of write+fdatasync pairs recorded.
    pub samples: u64,
    /// One human-readable line describing the method and raw numbers.
    pub note: String,
}

/// Measure all ceilings in `opts.dir`, one after another (never
/// concurrently: they would steal bandwidth from each other).
pub fn measure(opts: &CeilingOptions, progress: &mut dyn FnMut(&str)) -> io::Result<Ceilings> {
    let mut notes = vec![format!(
        "1 MB = 10^6 bytes; {:.1} s and at most {} MiB per disk measurement",
        opts.duration.as_secs_f64(),
        opts.max_bytes >> 20
    )];
    let fs = fs_type_name(&opts.dir, true)?;
    notes.push(format!("{} is on {}", opts.dir.display(), fs));

    let alignment = o_direct_alignment(&opts.dir)?;
    progress(&format!(
        "O_DIRECT alignment in {}: {alignment} bytes",
        opts.dir.display()
    ));
    notes.push(format!(
        "O_DIRECT alignment (size, offset and buffer): {alignment} bytes"
    ));

    let d_raw = measure_d_raw(opts, progress)?;
    notes.push(d_raw.note.clone());
    let d_sync = measure_d_sync(opts, progress)?;
    notes.push(d_sync.note.clone());
    let f = measure_fsync_latency(opts, progress)?;
    notes.push(f.note.clone());
    let c_lo = measure_loopback_tcp(opts, progress)?;
    notes.push(c_lo.note.clone());

    Ok(Ceilings {
        d_raw_mb_s: d_raw.mb_s,
        d_sync_mb_s: d_sync.mb_s,
        f_p50_us: f.p50_us,
        f_p99_us: f.p99_us,
        c_lo_mb_s: c_lo.mb_s,
        o_direct_alignment: alignment,
        notes,
    })
}

/// Probe the smallest of 512/1024/2048/4096 bytes that an `O_DIRECT`
/// `pwrite` accepts in `dir`, with length, file offset *and* buffer address
/// all aligned to exactly that value (not more), because Weir must satisfy
/// all three. Fails (rather than guessing) when the filesystem refuses
/// O_DIRECT altogether (tmpfs before Linux 6.6, some overlays). This is a
/// pure probe: it does not reject RAM filesystems that accept O_DIRECT;
/// the measurements do.
pub fn o_direct_alignment(dir: &Path) -> io::Result<usize> {
    let scratch = ScratchDir::create(dir, "align")?;
    let file = open_direct(&scratch.path.join("probe"))?;
    // Base aligned to 8 KiB, so base+a is aligned to a but not to 2a for a < 4096.
    let buf = AlignedBuf::new(8192, 8192);
    for a in [512usize, 1024, 2048, 4096] {
        match file.write_at(&buf.as_slice()[a..2 * a], a as u64) {
            Ok(n) if n == a => return Ok(a),
            // A short write means the size was not honoured as one unit: try larger.
            Ok(_) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "no O_DIRECT write of 512..4096 aligned bytes accepted in {}",
            dir.display()
        ),
    ))
}

/// D_raw: sequential O_DIRECT 1 MiB writes, [`D_RAW_THREADS`] in flight, one
/// fdatasync at the end; MB/s includes that fdatasync.
pub fn measure_d_raw(
    opts: &CeilingOptions,
    progress: &mut dyn FnMut(&str),
) -> io::Result<Throughput> {
    let chunk = D_RAW_WRITE_SIZE as u64;
    let (budget, budget_note) = disk_budget(opts, chunk)?;
    let scratch = ScratchDir::create(&opts.dir, "draw")?;
    let file = open_direct(&scratch.path.join("d_raw.dat"))?;
    let prealloc_note = preallocate(&file, budget)?;
    let buf = AlignedBuf::new(D_RAW_WRITE_SIZE, BUF_ALIGN);
    let chunks = budget / chunk;

    let next = AtomicU64::new(0);
    let written = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let deadline = start + opts.duration;
    let results = thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<()>();
        let handles: Vec<_> = (0..D_RAW_THREADS)
            .map(|_| {
                let (file, buf, next, written, stop) = (&file, &buf, &next, &written, &stop);
                let tx = tx.clone();
                s.spawn(move || {
                    let _done = tx; // dropped on exit: wakes the progress loop
                    loop {
                        if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                            return Ok(());
                        }
                        let idx = next.fetch_add(1, Ordering::Relaxed);
                        if idx >= chunks {
                            return Ok(());
                        }
                        if let Err(e) = file.write_all_at(buf.as_slice(), idx * chunk) {
                            stop.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        written.fetch_add(chunk, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        drop(tx);
        watch(&rx, start, &written, "D_raw", "written", progress);
        join_all(handles)
    });
    results?;
    file.sync_data()?;
    let seconds = start.elapsed().as_secs_f64();
    let bytes = written.load(Ordering::Relaxed);
    let mb_s = bytes as f64 / BYTES_PER_MB / seconds;
    progress(&format!(
        "D_raw: {:.2} GB in {seconds:.2} s incl. final fdatasync → {mb_s:.0} MB/s",
        bytes as f64 / 1e9
    ));
    Ok(Throughput {
        mb_s,
        bytes,
        seconds,
        note: format!(
            "D_raw: {D_RAW_THREADS} threads claiming sequential 1 MiB O_DIRECT chunks of one file \
             ({D_RAW_THREADS} writes in flight), {bytes} bytes in {seconds:.3} s incl. final \
             fdatasync = {mb_s:.1} MB/s{prealloc_note}{budget_note}"
        ),
    })
}

/// D_sync: [`D_SYNC_THREADS`] threads, each looping 256 KiB O_DIRECT write +
/// fdatasync sequentially in its own file; MB/s of durable data.
pub fn measure_d_sync(
    opts: &CeilingOptions,
    progress: &mut dyn FnMut(&str),
) -> io::Result<Throughput> {
    let write = D_SYNC_WRITE_SIZE as u64;
    let (budget, budget_note) = disk_budget(opts, write * D_SYNC_THREADS as u64)?;
    let per_file = budget / D_SYNC_THREADS as u64;
    let scratch = ScratchDir::create(&opts.dir, "dsync")?;
    let mut files = Vec::with_capacity(D_SYNC_THREADS);
    let mut prealloc_note = String::new();
    for i in 0..D_SYNC_THREADS {
        let f = open_direct(&scratch.path.join(format!("d_sync.{i}.dat")))?;
        prealloc_note = preallocate(&f, per_file)?;
        files.push(f);
    }
    let buf = AlignedBuf::new(D_SYNC_WRITE_SIZE, BUF_ALIGN);

    let durable = AtomicU64::new(0);
    let syncs = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let deadline = start + opts.duration;
    let results = thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<()>();
        let handles: Vec<_> = files
            .iter()
            .map(|file| {
                let (buf, durable, syncs, stop) = (&buf, &durable, &syncs, &stop);
                let tx = tx.clone();
                s.spawn(move || {
                    let _done = tx;
                    let mut off = 0u64;
                    while !stop.load(Ordering::Relaxed)
                        && Instant::now() < deadline
                        && off + write <= per_file
                    {
                        let r = file
                            .write_all_at(buf.as_slice(), off)
                            .and_then(|()| file.sync_data());
                        if let Err(e) = r {
                            stop.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        off += write;
                        durable.fetch_add(write, Ordering::Relaxed);
                        syncs.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        drop(tx);
        watch(&rx, start, &durable, "D_sync", "durable", progress);
        join_all(handles)
    });
    results?;
    let seconds = start.elapsed().as_secs_f64();
    let bytes = durable.load(Ordering::Relaxed);
    let n_syncs = syncs.load(Ordering::Relaxed);
    let mb_s = bytes as f64 / BYTES_PER_MB / seconds;
    progress(&format!(
        "D_sync: {:.2} GB durable in {seconds:.2} s → {mb_s:.0} MB/s ({:.0} fdatasync/s)",
        bytes as f64 / 1e9,
        n_syncs as f64 / seconds
    ));
    Ok(Throughput {
        mb_s,
        bytes,
        seconds,
        note: format!(
            "D_sync: {D_SYNC_THREADS} threads x (256 KiB O_DIRECT write + fdatasync) in own files, \
             {n_syncs} fdatasyncs, {bytes} durable bytes in {seconds:.3} s = {mb_s:.1} MB/s, \
             {:.0} fdatasync/s{prealloc_note}{budget_note}",
            n_syncs as f64 / seconds
        ),
    })
}

/// F_p50/F_p99: one thread, 64 KiB O_DIRECT sequential write + fdatasync per
/// iteration; latency of each pair.
pub fn measure_fsync_latency(
    opts: &CeilingOptions,
    progress: &mut dyn FnMut(&str),
) -> io::Result<FsyncLatency> {
    let write = FSYNC_WRITE_SIZE as u64;
    let (budget, budget_note) = disk_budget(opts, write)?;
    let scratch = ScratchDir::create(&opts.dir, "fsync")?;
    let file = open_direct(&scratch.path.join("fsync.dat"))?;
    let prealloc_note = preallocate(&file, budget)?;
    let buf = AlignedBuf::new(FSYNC_WRITE_SIZE, BUF_ALIGN);
    // Nanosecond resolution, up to 60 s, 3 significant digits.
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| io::Error::other(format!("histogram: {e}")))?;

    let start = Instant::now();
    let deadline = start + opts.duration;
    let mut last_report = start;
    let mut off = 0u64;
    while Instant::now() < deadline && off + write <= budget {
        let t = Instant::now();
        file.write_all_at(buf.as_slice(), off)?;
        file.sync_data()?;
        let ns = t.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        hist.saturating_record(ns.max(1));
        off += write;
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            progress(&format!(
                "F: {} write+fdatasync pairs, p50 so far {:.0} µs…",
                hist.len(),
                hist.value_at_quantile(0.5) as f64 / 1e3
            ));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    if hist.is_empty() {
        return Err(io::Error::other(
            "F: no write+fdatasync completed (duration or max_bytes too small)",
        ));
    }
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    let (p50_us, p99_us, p999_us, max_us) = (us(0.5), us(0.99), us(0.999), hist.max() as f64 / 1e3);
    let samples = hist.len();
    progress(&format!(
        "F: {samples} pairs in {seconds:.2} s → p50 {p50_us:.0} µs, p99 {p99_us:.0} µs"
    ));
    Ok(FsyncLatency {
        p50_us,
        p99_us,
        p999_us,
        max_us,
        samples,
        note: format!(
            "F: 1 thread, 64 KiB O_DIRECT sequential write + fdatasync, {samples} samples in \
             {seconds:.3} s: p50 {p50_us:.1} µs, p99 {p99_us:.1} µs, p99.9 {p999_us:.1} µs, \
             max {max_us:.1} µs{prealloc_note}{budget_note}"
        ),
    })
}

/// C_lo: one sender and one receiver thread over 127.0.0.1 with 1 MiB
/// writes/reads; MB/s as seen by the receiver (first accept to EOF).
pub fn measure_loopback_tcp(
    opts: &CeilingOptions,
    progress: &mut dyn FnMut(&str),
) -> io::Result<Throughput> {
    // Connect and accept up front so neither thread can block forever
    // waiting for a peer that failed to start.
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let mut tx_sock = TcpStream::connect(listener.local_addr()?)?;
    let (mut rx_sock, _) = listener.accept()?;
    drop(listener);
    // Safety net only: a healthy run never waits this long for data.
    rx_sock.set_read_timeout(Some(opts.duration + Duration::from_secs(30)))?;

    let cpus = allowed_cpus();
    let pin = if cpus.len() >= 2 {
        Some((cpus[0], cpus[1]))
    } else {
        None
    };
    let received = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let deadline = start + opts.duration;
    let (send_res, recv_res, pinned) = thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<()>();
        let done_tx = tx.clone();
        let stop_ref = &stop;
        let sender = s.spawn(move || {
            let _done = done_tx;
            let pinned = pin.is_none_or(|(c, _)| pin_current_thread(c));
            let buf = vec![0x5au8; TCP_CHUNK];
            let mut r = Ok(());
            while !stop_ref.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Err(e) = tx_sock.write_all(&buf) {
                    r = Err(e);
                    break;
                }
            }
            // EOF tells the receiver the run is over.
            let _ = tx_sock.shutdown(Shutdown::Write);
            (r, pinned)
        });
        let received_ref = &received;
        let receiver = s.spawn(move || {
            let _done = tx;
            let pinned = pin.is_none_or(|(_, c)| pin_current_thread(c));
            let mut buf = vec![0u8; TCP_CHUNK];
            loop {
                match rx_sock.read(&mut buf) {
                    Ok(0) => return (Ok(start.elapsed()), pinned),
                    Ok(n) => {
                        received_ref.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        stop_ref.store(true, Ordering::Relaxed);
                        return (Err(e), pinned);
                    }
                }
            }
        });
        watch(&rx, start, &received, "C_lo", "received", progress);
        let (send_res, send_pinned) = sender.join().expect("C_lo sender panicked");
        let (recv_res, recv_pinned) = receiver.join().expect("C_lo receiver panicked");
        (send_res, recv_res, send_pinned && recv_pinned)
    });
    send_res?;
    let seconds = recv_res?.as_secs_f64();
    let bytes = received.load(Ordering::Relaxed);
    let mb_s = bytes as f64 / BYTES_PER_MB / seconds;
    progress(&format!(
        "C_lo: {:.2} GB in {seconds:.2} s → {mb_s:.0} MB/s",
        bytes as f64 / 1e9
    ));
    let placement = match (pin, pinned) {
        (Some((a, b)), true) => format!("sender pinned to CPU {a}, receiver to CPU {b}"),
        (Some(_), false) => "pinning refused, threads placed by the scheduler".to_string(),
        (None, _) => "only one CPU allowed, both threads share it".to_string(),
    };
    Ok(Throughput {
        mb_s,
        bytes,
        seconds,
        note: format!(
            "C_lo: 1 sender + 1 receiver thread over 127.0.0.1, 1 MiB writes/reads, {placement}, \
             {bytes} bytes in {seconds:.3} s = {mb_s:.1} MB/s"
        ),
    })
}

/// A heap buffer whose usable slice starts on an `align` boundary, as
/// O_DIRECT requires. Over-allocating a `Vec` avoids any `unsafe` and keeps
/// the buffer `Send + Sync` so writer threads can share it read-only.
struct AlignedBuf {
    storage: Vec<u8>,
    offset: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize, align: usize) -> Self {
        let mut storage = vec![0u8; len + align];
        let offset = storage.as_ptr().align_offset(align);
        // Incompressible, non-zero contents: some virtual disks and
        // filesystems short-cut zero pages, which would flatter the ceiling.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for b in storage[offset..offset + len].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        AlignedBuf {
            storage,
            offset,
            len,
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.storage[self.offset..self.offset + self.len]
    }
}

/// A private directory for one measurement's files, removed on drop so
/// that errors and panics never leave gigabytes behind in a data dir.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn create(parent: &Path, tag: &str) -> io::Result<Self> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            ".weir-ceilings-{}-{}-{tag}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = parent.join(name);
        fs::create_dir(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Create `path` for O_DIRECT writing; turn the EINVAL that filesystems
/// without O_DIRECT (tmpfs, some overlays) return into a message that says so.
fn open_direct(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::EINVAL) {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "O_DIRECT is not supported for {} (tmpfs or overlay?): {e}",
                        path.display()
                    ),
                )
            } else {
                io::Error::new(e.kind(), format!("opening {}: {e}", path.display()))
            }
        })
}

/// Preallocate `len` bytes like a Weir segment. Returns a note suffix when
/// the filesystem cannot preallocate and a sparse file is used instead.
fn preallocate(file: &File, len: u64) -> io::Result<String> {
    let off_len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large"))?;
    // SAFETY: plain syscall on a valid, owned descriptor.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, off_len) };
    if r == 0 {
        return Ok(String::new());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        file.set_len(len)?;
        Ok("; fallocate unsupported, sparse file used".to_string())
    } else {
        Err(e)
    }
}

/// Bytes one disk measurement may write: `opts.max_bytes`, but never more
/// than half the free space, rounded down to `unit`. Also returns a note
/// suffix when free space was the limit. Refuses RAM filesystems.
fn disk_budget(opts: &CeilingOptions, unit: u64) -> io::Result<(u64, String)> {
    fs_type_name(&opts.dir, true)?;
    let free = free_bytes(&opts.dir)?;
    let usable = free / FREE_SPACE_SHARE;
    let budget = opts.max_bytes.min(usable) / unit * unit;
    if budget < unit {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "{}: need at least {unit} bytes (max_bytes {}, half of free {free})",
                opts.dir.display(),
                opts.max_bytes
            ),
        ));
    }
    let note = if usable < opts.max_bytes {
        format!("; capped at {budget} bytes by free space")
    } else {
        String::new()
    };
    Ok((budget, note))
}

fn c_path(path: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn free_bytes(dir: &Path) -> io::Result<u64> {
    let p = c_path(dir)?;
    // SAFETY: statvfs writes into the zeroed struct we own; p is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(p.as_ptr(), &mut st) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("statvfs {}: {e}", dir.display()),
        ));
    }
    // `as`: fsblkcnt_t/c_ulong are u64 on 64-bit targets but not everywhere.
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

const TMPFS_MAGIC: u32 = 0x0102_1994;
const RAMFS_MAGIC: u32 = 0x8584_58F6;

/// Filesystem name for the notes, from statfs(2) magic numbers.
fn fs_type_name(dir: &Path, check_disk: bool) -> io::Result<String> {
    let p = c_path(dir)?;
    // SAFETY: statfs writes into the zeroed struct we own; p is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(p.as_ptr(), &mut st) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("statfs {}: {e}", dir.display()),
        ));
    }
    let magic = st.f_type as u32;
    if check_disk && (magic == TMPFS_MAGIC || magic == RAMFS_MAGIC) {
        // Linux >= 6.6 accepts O_DIRECT on tmpfs, so the open would not
        // catch this: refuse explicitly, a RAM "disk ceiling" is a lie.
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "{} is on a RAM filesystem: no disk ceiling to measure (and nothing Weir \
                 writes there is durable); point the measurement at the data disk",
                dir.display()
            ),
        ));
    }
    Ok(match magic {
        0xEF53 => "ext2/3/4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0xF2F5_2010 => "f2fs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        TMPFS_MAGIC => "tmpfs".into(),
        RAMFS_MAGIC => "ramfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x6969 => "nfs".into(),
        _ => format!("filesystem magic {magic:#x}"),
    })
}

/// CPUs the process (its main thread) may run on; the caller's own thread
/// may be pinned to one core by a thread-per-core runtime, so ask about
/// the process, not the calling thread.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(
            libc::getpid(),
            std::mem::size_of::<libc::cpu_set_t>(),
            &mut set,
        ) != 0
        {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

fn pin_current_thread(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; pid 0 = the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Wait for all worker threads (they hold the senders of `rx`) while
/// reporting `counter` once per [`PROGRESS_EVERY`]. Returns as soon as the
/// last worker exits, so the caller's clock is not padded by polling.
fn watch(
    rx: &mpsc::Receiver<()>,
    start: Instant,
    counter: &AtomicU64,
    label: &str,
    verb: &str,
    progress: &mut dyn FnMut(&str),
) {
    let mut next_report = start + PROGRESS_EVERY;
    loop {
        let wait = next_report.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let bytes = counter.load(Ordering::Relaxed) as f64;
                let secs = start.elapsed().as_secs_f64();
                progress(&format!(
                    "{label}: {:.2} GB {verb}, {:.0} MB/s so far…",
                    bytes / 1e9,
                    bytes / BYTES_PER_MB / secs
                ));
                next_report += PROGRESS_EVERY;
            }
        }
    }
}

/// Join writer threads and return the first error any of them hit.
fn join_all(handles: Vec<thread::ScopedJoinHandle<'_, io::Result<()>>>) -> io::Result<()> {
    let mut first = Ok(());
    for h in handles {
        let r = h.join().expect("ceilings writer thread panicked");
        if first.is_ok() {
            first = r;
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temp dir on a filesystem that supports O_DIRECT: the system temp
    /// dir unless it is tmpfs/overlay, else the current working directory.
    fn test_dir() -> tempfile::TempDir {
        let sys = std::env::temp_dir();
        let base = match fs_type_name(&sys, false) {
            Ok(name) if !["tmpfs", "ramfs", "overlayfs"].contains(&name.as_str()) => sys,
            _ => std::env::current_dir().unwrap(),
        };
        tempfile::Builder::new()
            .prefix("weir-ceilings-test-")
            .tempdir_in(base)
            .unwrap()
    }

    fn quick(dir: &Path) -> CeilingOptions {
        CeilingOptions {
            dir: dir.to_path_buf(),
            duration: Duration::from_millis(200),
            max_bytes: 256 << 20,
        }
    }

    fn assert_empty(dir: &Path) {
        let left: Vec<_> = fs::read_dir(dir).unwrap().collect();
        assert!(left.is_empty(), "scratch files left behind: {left:?}");
    }

    #[test]
    fn alignment_is_power_of_two_at_least_512() {
        let d = test_dir();
        let a = o_direct_alignment(d.path()).unwrap();
        assert!(a.is_power_of_two() && (512..=4096).contains(&a), "{a}");
        assert_empty(d.path());
    }

    #[test]
    fn d_raw_is_plausible() {
        let d = test_dir();
        let mut lines = Vec::new();
        let t = measure_d_raw(&quick(d.path()), &mut |l| lines.push(l.to_string())).unwrap();
        assert!(t.mb_s > 0.0 && t.mb_s.is_finite(), "{t:?}");
        assert!(
            t.bytes > 0 && t.bytes % D_RAW_WRITE_SIZE as u64 == 0,
            "{t:?}"
        );
        assert!(lines.iter().any(|l| l.starts_with("D_raw:")), "{lines:?}");
        assert_empty(d.path());
    }

    #[test]
    fn d_sync_is_plausible() {
        let d = test_dir();
        let t = measure_d_sync(&quick(d.path()), &mut |_| {}).unwrap();
        assert!(t.mb_s > 0.0 && t.mb_s.is_finite(), "{t:?}");
        assert!(t.bytes % D_SYNC_WRITE_SIZE as u64 == 0, "{t:?}");
        assert_empty(d.path());
    }

    #[test]
    fn fsync_latency_is_plausible() {
        let d = test_dir();
        let f = measure_fsync_latency(&quick(d.path()), &mut |_| {}).unwrap();
        assert!(f.samples > 0, "{f:?}");
        assert!(
            f.p50_us > 0.0 && f.p99_us >= f.p50_us && f.max_us >= f.p99_us,
            "{f:?}"
        );
        assert_empty(d.path());
    }

    #[test]
    fn loopback_tcp_is_plausible() {
        let d = test_dir();
        let t = measure_loopback_tcp(&quick(d.path()), &mut |_| {}).unwrap();
        assert!(t.mb_s > 0.0 && t.mb_s.is_finite() && t.bytes > 0, "{t:?}");
    }

    #[test]
    fn measure_all_reports_and_cleans_up() {
        let d = test_dir();
        let mut opts = quick(d.path());
        opts.duration = Duration::from_millis(100);
        let c = measure(&opts, &mut |_| {}).unwrap();
        assert!(
            c.d_raw_mb_s > 0.0 && c.d_sync_mb_s > 0.0 && c.c_lo_mb_s > 0.0,
            "{c:?}"
        );
        assert!(c.f_p50_us > 0.0 && c.f_p99_us >= c.f_p50_us, "{c:?}");
        assert!(c.o_direct_alignment.is_power_of_two() && c.o_direct_alignment >= 512);
        assert!(
            c.notes.iter().any(|n| n.starts_with("D_sync:")),
            "{:?}",
            c.notes
        );
        assert_empty(d.path());
    }

    #[test]
    fn max_bytes_bounds_a_long_run() {
        let d = test_dir();
        let opts = CeilingOptions {
            dir: d.path().to_path_buf(),
            duration: Duration::from_secs(60),
            max_bytes: 8 << 20,
        };
        let t0 = Instant::now();
        let t = measure_d_raw(&opts, &mut |_| {}).unwrap();
        assert_eq!(t.bytes, 8 << 20);
        assert!(t0.elapsed() < Duration::from_secs(30));
        let f = measure_fsync_latency(&opts, &mut |_| {}).unwrap();
        assert_eq!(f.samples, (8 << 20) / FSYNC_WRITE_SIZE as u64);
        assert_empty(d.path());
    }

    #[test]
    fn missing_dir_is_an_error() {
        let d = test_dir();
        let opts = quick(&d.path().join("does-not-exist"));
        assert!(measure(&opts, &mut |_| {}).is_err());
        assert_empty(d.path());
    }

    #[test]
    fn ram_filesystems_are_refused() {
        // Only meaningful where /dev/shm is a writable tmpfs.
        let shm = Path::new("/dev/shm");
        if !fs_type_name(shm, false).is_ok_and(|n| n == "tmpfs") {
            return;
        }
        let Ok(d) = tempfile::tempdir_in(shm) else {
            return;
        };
        // Before Linux 6.6 the O_DIRECT open itself fails; since then it is
        // accepted, so the measurements must refuse RAM filesystems themselves.
        if let Err(e) = o_direct_alignment(d.path()) {
            assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
        }
        let e = measure_d_raw(&quick(d.path()), &mut |_| {}).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
        assert!(measure(&quick(d.path()), &mut |_| {}).is_err());
        assert_empty(d.path());
    }

    #[test]
    fn serializes() {
        fn is_serialize<T: serde::Serialize>() {}
        is_serialize::<Ceilings>();
        is_serialize::<Throughput>();
        is_serialize::<FsyncLatency>();
    }
}
