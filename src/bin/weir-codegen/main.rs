//! weir-codegen: generates Weir's Kafka protocol codec (`src/protocol/generated/`) from
//! Kafka's JSON message and record schemas.
//!
//! ```text
//! weir-codegen --messages <dir> --records <dir> --out <dir> [--check]
//! ```
//!
//! Output is deterministic: the same schemas always give byte-identical files. With
//! `--check` nothing is written; the generated text is compared with `<out>` and the
//! command exits 1 listing differing, missing and extra files (0 when identical).
//! Without it, files are written and stale `.rs` files under `<out>` are removed.
//!
//! The generator does not depend on the protocol module it generates, so it builds even
//! when the generated code is broken. To serve another API, add it to `MESSAGE_APIS`.

mod code_writer;
mod emit_index;
mod emit_struct;
mod naming;
mod schema;
mod versions;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use emit_index::{Api, Group};
use schema::Schema;

/// APIs generated as `<Name>Request` and `<Name>Response`, in any order.
const MESSAGE_APIS: &[&str] = &[
    "Produce",
    "Fetch",
    "ListOffsets",
    "Metadata",
    "OffsetCommit",
    "OffsetFetch",
    "FindCoordinator",
    "JoinGroup",
    "Heartbeat",
    "LeaveGroup",
    "SyncGroup",
    "DescribeGroups",
    "ListGroups",
    "SaslHandshake",
    "ApiVersions",
    "CreateTopics",
    "DeleteTopics",
    "DeleteRecords",
    "InitProducerId",
    "OffsetForLeaderEpoch",
    "AddPartitionsToTxn",
    "AddOffsetsToTxn",
    "EndTxn",
    "WriteTxnMarkers",
    "TxnOffsetCommit",
    "DescribeConfigs",
    "AlterConfigs",
    "SaslAuthenticate",
    "CreatePartitions",
    "DeleteGroups",
    "IncrementalAlterConfigs",
    "DescribeCluster",
    "DescribeProducers",
    "DescribeTransactions",
    "ListTransactions",
    "ConsumerGroupHeartbeat",
    "ConsumerGroupDescribe",
    "OffsetDelete",
    "DescribeLogDirs",
];

/// Message-directory schemas generated alongside the APIs (headers, consumer protocol).
const EXTRA_MESSAGE_SCHEMAS: &[&str] = &[
    "RequestHeader",
    "ResponseHeader",
    "ConsumerProtocolSubscription",
    "ConsumerProtocolAssignment",
];

/// Record-schema subdirectories generated whole: (directory, module, module doc).
const RECORD_DIRECTORIES: &[(&str, &str, &str)] = &[
    (
        "metadata",
        "metadata",
        "KRaft metadata log records (`__cluster_metadata`).",
    ),
    (
        "group-coordinator",
        "group_coordinator",
        "Group coordinator records: keys and values of `__consumer_offsets`.",
    ),
    (
        "transaction-coordinator",
        "transaction_coordinator",
        "Transaction coordinator records: keys and values of `__transaction_state`.",
    ),
];

const MESSAGES_MODULE_DOC: &str = "Kafka request, response and header messages Weir serves.";

struct Options {
    messages: PathBuf,
    records: PathBuf,
    out: PathBuf,
    check: bool,
}

const USAGE: &str = "usage: weir-codegen --messages <dir> --records <dir> --out <dir> [--check]";

fn parse_options(arguments: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut messages = None;
    let mut records = None;
    let mut out = None;
    let mut check = false;
    let mut arguments = arguments;
    while let Some(argument) = arguments.next() {
        let mut value = || {
            arguments
                .next()
                .map(PathBuf::from)
                .ok_or(format!("{argument} needs a directory"))
        };
        match argument.as_str() {
            "--messages" => messages = Some(value()?),
            "--records" => records = Some(value()?),
            "--out" => out = Some(value()?),
            "--check" => check = true,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Options {
        messages: messages.ok_or("--messages is required")?,
        records: records.ok_or("--records is required")?,
        out: out.ok_or("--out is required")?,
        check,
    })
}

fn main() -> ExitCode {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("weir-codegen: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let files = match generate(&options.messages, &options.records) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("weir-codegen: {error}");
            return ExitCode::from(2);
        }
    };
    let result = if options.check {
        check(&options.out, &files)
    } else {
        write(&options.out, &files)
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("weir-codegen: {error}");
            ExitCode::from(2)
        }
    }
}

fn load_schema(path: &Path) -> Result<Schema, String> {
    let text = fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("schema");
    schema::parse_schema(&text, file_name)
}

/// Every generated file, keyed by its path relative to the output directory.
fn generate(messages_dir: &Path, records_dir: &Path) -> Result<BTreeMap<PathBuf, String>, String> {
    let mut apis = Vec::new();
    let mut message_schemas = Vec::new();
    for name in MESSAGE_APIS {
        let request = load_schema(&messages_dir.join(format!("{name}Request.json")))?;
        let response = load_schema(&messages_dir.join(format!("{name}Response.json")))?;
        apis.push((*name, message_schemas.len()));
        message_schemas.push(request);
        message_schemas.push(response);
    }
    for name in EXTRA_MESSAGE_SCHEMAS {
        message_schemas.push(load_schema(&messages_dir.join(format!("{name}.json")))?);
    }
    let mut record_groups = Vec::new();
    for (directory, module, description) in RECORD_DIRECTORIES {
        record_groups.push((
            *module,
            *description,
            load_directory(&records_dir.join(directory))?,
        ));
    }

    let mut groups = vec![Group {
        module: "messages",
        description: MESSAGES_MODULE_DOC,
        schemas: message_schemas.iter().collect(),
    }];
    for (module, description, schemas) in &record_groups {
        groups.push(Group {
            module,
            description,
            schemas: schemas.iter().collect(),
        });
    }
    let apis: Vec<Api> = apis
        .iter()
        .map(|(name, index)| Api {
            name,
            request: &message_schemas[*index],
            response: &message_schemas[*index + 1],
        })
        .collect();

    let mut files = BTreeMap::new();
    files.insert(
        PathBuf::from("mod.rs"),
        emit_index::emit_root_module(&groups),
    );
    files.insert(
        PathBuf::from("api_keys.rs"),
        emit_index::emit_api_keys(&apis)?,
    );
    for group in &groups {
        let directory = PathBuf::from(group.module);
        files.insert(
            directory.join("mod.rs"),
            emit_index::emit_group_module(group),
        );
        for schema in &group.schemas {
            let file = directory.join(format!("{}.rs", emit_index::module_name(schema)));
            files.insert(file, emit_struct::emit_schema_module(schema)?);
        }
    }
    Ok(files)
}

/// All `*.json` schemas of a directory, sorted by file name.
fn load_directory(directory: &Path) -> Result<Vec<Schema>, String> {
    let entries = fs::read_dir(directory)
        .map_err(|error| format!("cannot list {}: {error}", directory.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("no schemas in {}", directory.display()));
    }
    paths.iter().map(|path| load_schema(path)).collect()
}

/// Relative paths of the files under `root` (none if it does not exist).
fn existing_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let directory = root.join(&relative);
        if !directory.is_dir() {
            continue;
        }
        let entries = fs::read_dir(&directory)
            .map_err(|error| format!("cannot list {}: {error}", directory.display()))?;
        for entry in entries {
            let entry =
                entry.map_err(|error| format!("cannot list {}: {error}", directory.display()))?;
            let path = relative.join(entry.file_name());
            if entry.path().is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Compares `files` with `out`; prints every difference and returns whether there are none.
fn check(out: &Path, files: &BTreeMap<PathBuf, String>) -> Result<bool, String> {
    let mut problems = Vec::new();
    for (path, expected) in files {
        match fs::read_to_string(out.join(path)) {
            Ok(actual) if actual == *expected => {}
            Ok(_) => problems.push(format!("differs: {}", path.display())),
            Err(_) => problems.push(format!("missing: {}", path.display())),
        }
    }
    for path in existing_files(out)? {
        if !files.contains_key(&path) {
            problems.push(format!("extra:   {}", path.display()));
        }
    }
    for problem in &problems {
        println!("{problem}");
    }
    if problems.is_empty() {
        println!(
            "weir-codegen: {} files in {} are up to date",
            files.len(),
            out.display()
        );
    } else {
        println!(
            "weir-codegen: {} of the generated files in {} are out of date; rerun without --check",
            problems.len(),
            out.display()
        );
    }
    Ok(problems.is_empty())
}

/// Writes `files` under `out` and removes stale `.rs` files there.
fn write(out: &Path, files: &BTreeMap<PathBuf, String>) -> Result<bool, String> {
    for (path, text) in files {
        let target = out.join(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        }
        if fs::read_to_string(&target).ok().as_deref() != Some(text.as_str()) {
            fs::write(&target, text)
                .map_err(|error| format!("cannot write {}: {error}", target.display()))?;
        }
    }
    for path in existing_files(out)? {
        let stale = !files.contains_key(&path)
            && path.extension().is_some_and(|extension| extension == "rs");
        if stale {
            let target = out.join(&path);
            fs::remove_file(&target)
                .map_err(|error| format!("cannot remove {}: {error}", target.display()))?;
            println!("removed stale {}", path.display());
        }
    }
    let lines: usize = files.values().map(|text| text.lines().count()).sum();
    println!(
        "weir-codegen: wrote {} files ({lines} lines) to {}",
        files.len(),
        out.display()
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let arguments =
            ["--messages", "m", "--records", "r", "--out", "o", "--check"].map(String::from);
        let options = parse_options(arguments.into_iter()).expect("valid");
        assert_eq!(options.messages, PathBuf::from("m"));
        assert!(options.check);
        assert!(parse_options(["--out".to_owned()].into_iter()).is_err());
        assert!(parse_options(["--bogus".to_owned()].into_iter()).is_err());
    }
}
