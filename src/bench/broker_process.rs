//! `--spawn-broker`: runs a Weir broker as a child process for the duration of a bench, on free
//! loopback ports, with its data under the bench's data directory (the disk the ceilings are
//! measured on), so the bench knows its pid (CPU accounting) and its admin port (counters).
//!
//! The child is the same executable (`weir start …`) unless `--broker-bin` names another. It is
//! stopped with SIGTERM (a clean shutdown) and, failing that within a minute, killed; its data
//! directory is removed afterwards unless asked to keep it. Dropping a [`SpawnedBroker`] does the
//! same, so an error or a panic in the bench does not leave a broker running, and the child asks
//! the kernel for SIGTERM when the bench process dies (`PR_SET_PDEATHSIG`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a spawned broker may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a clean shutdown may take before the broker is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start the broker.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// The `weir` executable.
    pub binary: PathBuf,
    /// Parent of the broker's data directory.
    pub parent_dir: PathBuf,
    pub shards: usize,
    /// Extra `--set NAME=VALUE` settings.
    pub settings: Vec<(String, String)>,
    pub keep_data: bool,
}

pub struct SpawnedBroker {
    child: Option<Child>,
    pub pid: u32,
    pub bootstrap: String,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// Everything the broker was started with, for the report.
    pub command_line: String,
    keep_data: bool,
}

/// A port nobody listens on right now (it may be taken before we use it; startup then fails
/// with a clear message and the bench can be rerun).
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

impl SpawnedBroker {
    pub fn start(options: &SpawnOptions) -> Result<SpawnedBroker, String> {
        let port = free_port()?;
        let admin_port = free_port()?;
        let data_dir = options
            .parent_dir
            .join(format!("weir-bench-broker-{}", std::process::id()));
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
        let log_path = data_dir.with_extension("log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        let bootstrap = format!("127.0.0.1:{port}");
        let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
        let mut args: Vec<String> = vec![
            "start".into(),
            "--listen".into(),
            bootstrap.clone(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--smp".into(),
            options.shards.to_string(),
            "--set".into(),
            format!("weir.admin.listen={admin}"),
        ];
        for (name, value) in &options.settings {
            args.push("--set".into());
            args.push(format!("{name}={value}"));
        }
        let command_line = format!("{} {}", options.binary.display(), args.join(" "));
        let mut command = Command::new(&options.binary);
        // SAFETY: prctl is async-signal-safe; the closure allocates nothing. If the bench dies
        // (killed, timed out) the broker gets SIGTERM and shuts down instead of lingering.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = command
            .args(&args)
            .env(
                "WEIR_LOG",
                std::env::var("WEIR_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", options.binary.display()))?;
        let mut broker = SpawnedBroker {
            pid: child.id(),
            child: Some(child),
            bootstrap,
            admin,
            data_dir,
            log_path,
            command_line,
            keep_data: options.keep_data,
        };
        broker.wait_until_ready()?;
        Ok(broker)
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let address: SocketAddr = self
            .bootstrap
            .parse()
            .map_err(|_| format!("bad listen address {}", self.bootstrap))?;
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "the spawned broker exited during startup ({status}); its log {}:\n{}",
                    self.log_path.display(),
                    tail(&self.log_path)
                ));
            }
            let kafka_up = TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok();
            let ready = kafka_up && http_status(self.admin, "/ready") == Some(200);
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "the spawned broker was not ready within {} s; its log {}:\n{}",
            READY_TIMEOUT.as_secs(),
            self.log_path.display(),
            tail(&self.log_path)
        ))
    }

    /// Clean shutdown (SIGTERM), then removes the data directory unless kept.
    pub fn stop(mut self) -> Result<(), String> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // Signal only a child that has not been reaped: a reaped pid may belong to someone else.
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: signalling our own, still unreaped child process by its pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let outcome = loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => break Ok(()),
                Ok(Some(status)) => {
                    break Err(format!(
                        "the spawned broker exited with {status} on SIGTERM; log {}",
                        self.log_path.display()
                    ))
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!(
                        "the spawned broker did not stop within {} s of SIGTERM and was killed",
                        STOP_TIMEOUT.as_secs()
                    ));
                }
            }
        };
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
            if outcome.is_ok() {
                let _ = std::fs::remove_file(&self.log_path);
            }
        }
        outcome
    }
}

impl Drop for SpawnedBroker {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            eprintln!("weir bench: {error}");
        }
    }
}

/// Last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Status code of a GET on `path`, or `None` when the endpoint does not answer.
fn http_status(address: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port().unwrap();
        assert!(port > 0);
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }

    #[test]
    fn a_missing_binary_is_a_clear_error() {
        let dir = crate::testing::data_dir();
        let options = SpawnOptions {
            binary: dir.path().join("no-such-weir"),
            parent_dir: dir.path().to_path_buf(),
            shards: 1,
            settings: Vec::new(),
            keep_data: false,
        };
        let error = SpawnedBroker::start(&options).err().expect("start fails");
        assert!(error.contains("no-such-weir"), "{error}");
    }

    #[test]
    fn a_binary_that_exits_at_once_reports_its_log() {
        let dir = crate::testing::data_dir();
        let options = SpawnOptions {
            binary: PathBuf::from("/bin/false"),
            parent_dir: dir.path().to_path_buf(),
            shards: 1,
            settings: Vec::new(),
            keep_data: false,
        };
        let error = SpawnedBroker::start(&options).err().expect("start fails");
        assert!(error.contains("exited during startup"), "{error}");
    }
}
