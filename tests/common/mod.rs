//! Shared harness for integration tests: runs the real `weir` binary on free ports with its own
//! data directory (on a real filesystem: O_DIRECT fails on tmpfs), and builds librdkafka clients
//! (the `rdkafka` crate) pointed at it.
#![allow(dead_code)]

pub mod raw;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Message, Offset, TopicPartitionList};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn test_root() -> PathBuf {
    std::env::var_os("WEIR_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("weir-it"))
}

/// A broker process. Killed (not cleanly stopped) when dropped.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    pub admin_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    extra: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Broker {
    /// Starts a broker with 2 shards and `settings` (NAME=VALUE) on a fresh data directory.
    pub fn start(settings: &[&str]) -> Broker {
        std::fs::create_dir_all(test_root()).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("broker-")
            .tempdir_in(test_root())
            .unwrap();
        // WEIR_KEEP_TEST_DATA=1 keeps the data directory and log for a post-mortem.
        if std::env::var_os("WEIR_KEEP_TEST_DATA").is_some() {
            let kept = dir.keep();
            eprintln!("keeping broker data in {}", kept.display());
            return Broker::start_in(kept, settings);
        }
        let data_dir = dir.path().join("data");
        let mut broker = Broker {
            child: None,
            port: free_port(),
            admin_port: free_port(),
            log_path: dir.path().join("broker.log"),
            data_dir,
            extra: settings.iter().map(|s| s.to_string()).collect(),
            _dir: Some(dir),
        };
        broker.launch();
        broker
    }

    fn start_in(dir: PathBuf, settings: &[&str]) -> Broker {
        let mut broker = Broker {
            child: None,
            port: free_port(),
            admin_port: free_port(),
            log_path: dir.join("broker.log"),
            data_dir: dir.join("data"),
            extra: settings.iter().map(|s| s.to_string()).collect(),
            _dir: None,
        };
        broker.launch();
        broker
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .arg("start")
            .arg("--listen")
            .arg(self.bootstrap())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--smp")
            .arg("2")
            .arg("--set")
            .arg(format!("weir.admin.listen=127.0.0.1:{}", self.admin_port))
            .env("WEIR_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for setting in &self.extra {
            command.arg("--set").arg(setting);
        }
        self.child = Some(command.spawn().expect("spawning weir"));
        self.wait_until_ready();
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("weir exited during startup ({status}):\n{}", self.log());
            }
            if http_get(self.admin_port, "/ready").is_some_and(|(status, _)| status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("weir did not become ready in 60 s:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: no flush, no clean-shutdown marker.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the clean shutdown.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(
                        status.success(),
                        "weir exited with {status} on SIGTERM:\n{}",
                        self.log()
                    );
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("weir did not stop within 60 s of SIGTERM:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the same broker again on the same data directory and ports.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the broker first");
        self.launch();
    }

    pub fn metrics(&self) -> String {
        http_get(self.admin_port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A tiny HTTP GET: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(500),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

pub fn client_config(broker: &Broker) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.bootstrap())
        .set("broker.address.family", "v4");
    config
}

pub fn admin(broker: &Broker) -> AdminClient<DefaultClientContext> {
    client_config(broker).create().expect("admin client")
}

pub fn producer(broker: &Broker, settings: &[(&str, &str)]) -> FutureProducer {
    let mut config = client_config(broker);
    config
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "0");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

pub fn consumer(broker: &Broker, settings: &[(&str, &str)]) -> BaseConsumer {
    let mut config = client_config(broker);
    config
        .set("group.id", "unused-no-commits")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    config.create().expect("consumer")
}

pub fn create_topic(broker: &Broker, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = admin(broker);
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = futures::executor::block_on(admin.create_topics(&[topic], &AdminOptions::new()))
        .expect("create_topics");
    for result in results {
        result.unwrap_or_else(|(name, error)| panic!("creating {name}: {error:?}"));
    }
}

/// A record as a consumer saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Reads `topic` partitions from `offset` until `count` records arrived (or the timeout).
pub fn consume(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    offset: Offset,
    count: usize,
    settings: &[(&str, &str)],
) -> Vec<Seen> {
    use rdkafka::message::Headers;
    let consumer = consumer(broker, settings);
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, offset).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while seen.len() < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => seen.push(Seen {
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                timestamp: message.timestamp().to_millis(),
                headers: message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|header| {
                                (header.key.to_string(), header.value.map(<[u8]>::to_vec))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(error)) => panic!("consume error: {error}"),
            None => {}
        }
    }
    seen
}

pub fn data_dir_of(broker: &Broker) -> &Path {
    &broker.data_dir
}
