//! The committed codec in `src/protocol/generated/` is exactly what `weir-codegen`
//! produces from Kafka's schemas: runs the generator with `--check` and fails on any
//! differing, missing or extra file.
//!
//! Schemas are looked up in `WEIR_KAFKA_SCHEMAS` / `WEIR_KAFKA_RECORD_SCHEMAS`, else in
//! `../shared/kafka-{message,record}-schemas` beside the repository. Without them the test
//! prints a note and passes: the schemas are an input of the repository, not part of it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root, found from this file's path so the test also works when compiled
/// by another manifest (a scratch crate pointing at these sources).
fn repository_root() -> PathBuf {
    let source = Path::new(file!());
    let this_file = if source.is_absolute() {
        source.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(source)
    };
    this_file
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn schema_directory(variable: &str, default_name: &str, root: &Path) -> PathBuf {
    std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("..").join("shared").join(default_name))
}

#[test]
fn generated_code_matches_the_schemas() {
    let root = repository_root();
    let messages = schema_directory("WEIR_KAFKA_SCHEMAS", "kafka-message-schemas", &root);
    let records = schema_directory("WEIR_KAFKA_RECORD_SCHEMAS", "kafka-record-schemas", &root);
    if !messages.is_dir() || !records.is_dir() {
        println!(
            "note: Kafka schemas not found at {} and {}; skipping the generated-code check",
            messages.display(),
            records.display()
        );
        return;
    }
    let generated = root.join("src").join("protocol").join("generated");
    let output = Command::new(env!("CARGO_BIN_EXE_weir-codegen"))
        .arg("--messages")
        .arg(&messages)
        .arg("--records")
        .arg(&records)
        .arg("--out")
        .arg(&generated)
        .arg("--check")
        .output()
        .expect("weir-codegen runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "src/protocol/generated is out of date; regenerate with\n  cargo run --bin weir-codegen -- --messages {} --records {} --out {}\n{stdout}{stderr}",
        messages.display(),
        records.display(),
        generated.display()
    );
}
