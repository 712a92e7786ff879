//! Test helpers shared by unit tests: data directories on a real filesystem (O_DIRECT fails on
//! tmpfs, which /tmp often is), under `target/test-data` unless `WEIR_TEST_DIR` says otherwise.

use std::path::PathBuf;

pub fn test_root() -> PathBuf {
    std::env::var_os("WEIR_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join("test-data")
        })
}

/// A fresh directory removed when the guard drops.
pub fn data_dir() -> tempfile::TempDir {
    let root = test_root();
    std::fs::create_dir_all(&root).expect("creating the test data root");
    tempfile::Builder::new()
        .prefix("weir-")
        .tempdir_in(root)
        .expect("creating a test data directory")
}

/// Runs a future on a glommio executor on the current thread (storage and partition tests),
/// after the direct I/O probe the broker also runs before opening any file.
pub fn run_local<F: std::future::Future>(future: F) -> F::Output {
    glommio::LocalExecutorBuilder::default()
        .make()
        .expect("a glommio executor")
        .run(async move {
            static PROBES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let probe_dir = test_root();
            let unique = std::process::id() as usize * 1000
                + PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            crate::storage::probe_direct_io(&probe_dir, unique)
                .await
                .expect("direct I/O probe");
            future.await
        })
}
