//! The partition log on disk, Kafka's layout: `<data>/<topic>-<partition>/<20-digit base
//! offset>.log|.index|.timeindex`, batches stored exactly as producers sent them (only the base
//! offset and partition leader epoch patched). Written with O_DIRECT through aligned buffers
//! ([`appender`]), never through the page cache; recent batches are served from memory, cold
//! reads use DMA reads with read-ahead ([`log`]). Byte layouts and the recovery procedure are in
//! `docs/storage-format.md`.
//!
//! Owned by one shard: nothing here is `Send`.

pub mod appender;
pub mod cleaner;
pub mod index;
pub mod log;
pub mod readahead;
pub mod segment;
pub mod txn_index;

#[cfg(test)]
mod cleaner_tests;
#[cfg(test)]
mod cleaner_txn_tests;
#[cfg(test)]
mod tests;

/// Makes glommio learn correctly whether the data directory's device supports polled I/O.
///
/// glommio decides once per block device, at the first `DmaFile` opened on it, by reading the
/// first block of that file; on an empty file that read succeeds without touching the device,
/// so the device is wrongly marked pollable and every later read fails with EOPNOTSUPP on
/// devices without polled I/O (virtio, most SATA). Opening a non-empty file first gets the
/// probe right. Call on every shard before any other file is opened.
pub async fn probe_direct_io(dir: &std::path::Path, shard: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".io-probe-{shard}"));
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&[0x5a; 4096])?;
        // On disk, not delayed-allocated in the page cache: a direct read of it must reach the
        // device, or the probe learns nothing.
        file.sync_all()?;
    }
    let opened = glommio::io::DmaFile::open(&path).await;
    let _ = std::fs::remove_file(&path);
    opened
        .map_err(std::io::Error::from)?
        .close()
        .await
        .map_err(std::io::Error::from)
}
