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

/// Runs a future on a glommio executor on the current thread (storage and partition tests).
pub fn run_local<F: std::future::Future>(future: F) -> F::Output {
    glommio::LocalExecutorBuilder::default()
        .make()
        .expect("a glommio executor")
        .run(future)
}
