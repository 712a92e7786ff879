//! One blocking TCP connection to one broker: connect with a timeout, the ApiVersions handshake,
//! and request/response exchanges framed as `[int32 size][header][body]`.
//!
//! Invariants:
//! - one request in flight at a time, so every response must carry the correlation id just
//!   sent; anything else means the stream is out of step and the connection is dropped;
//! - a response frame larger than `ClientConfig::response_bytes_max` is refused before any of
//!   it is buffered, and the buffer grows only as bytes arrive;
//! - every exchange has a deadline (request timeout plus whatever the request itself asks the
//!   broker to wait), enforced across all reads and writes of the exchange;
//! - after any I/O or framing error the socket is closed; the next request reconnects (and
//!   renegotiates versions) instead of reading a half-consumed stream.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::error::ClientError;
use super::versions::{client_range, ApiVersions};
use super::ClientConfig;
use crate::protocol::api_keys::response_header_version;
use crate::protocol::frame::encode_request;
use crate::protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseHeader};
use crate::protocol::{ApiKey, ErrorCode, Message};

/// Port assumed when an address names only a host, as Kafka tools do.
pub const DEFAULT_PORT: u16 = 9092;

/// Smallest response frame: a correlation id.
const RESPONSE_FRAME_BYTES_MIN: usize = 4;

/// Bytes read from the socket per call while filling a frame.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Requests this small are copied into one buffer and written with one call.
const COALESCE_BYTES_MAX: usize = 64 * 1024;

/// Name and version sent in ApiVersions v3+ (the broker logs them per connection).
const SOFTWARE_NAME: &str = "weir-cli";
const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct Connection {
    address: String,
    stream: Option<TcpStream>,
    config: ClientConfig,
    next_correlation_id: i32,
    versions: ApiVersions,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("address", &self.address)
            .field("open", &self.stream.is_some())
            .finish()
    }
}

/// Resolves `HOST:PORT` (or a bare `HOST`, port 9092).
pub fn resolve(address: &str) -> Result<Vec<SocketAddr>, ClientError> {
    let address_error = |reason: String| ClientError::Address {
        address: address.to_string(),
        reason,
    };
    let trimmed = address.trim();
    if trimmed.is_empty() {
        return Err(address_error("empty address; expected HOST:PORT".into()));
    }
    if let Ok(socket) = trimmed.parse::<SocketAddr>() {
        return Ok(vec![socket]);
    }
    let resolved = if trimmed.contains(':') {
        trimmed.to_socket_addrs()
    } else {
        (trimmed, DEFAULT_PORT).to_socket_addrs()
    };
    let addresses: Vec<SocketAddr> = resolved
        .map_err(|error| address_error(error.to_string()))?
        .collect();
    if addresses.is_empty() {
        return Err(address_error("the name resolves to no address".into()));
    }
    Ok(addresses)
}

fn connect_stream(address: &str, timeout: Duration) -> Result<TcpStream, ClientError> {
    let mut last_error = None;
    for socket in resolve(address)? {
        match TcpStream::connect_timeout(&socket, timeout) {
            Ok(stream) => {
                // Requests are written whole; Nagle would only add latency.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(ClientError::Connect {
        address: address.to_string(),
        source: last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrNotAvailable)),
        timeout,
    })
}

impl Connection {
    /// Connects to `address` and negotiates API versions.
    pub fn open(address: &str, config: &ClientConfig) -> Result<Connection, ClientError> {
        let mut connection = Connection {
            address: address.to_string(),
            stream: None,
            config: config.clone(),
            next_correlation_id: 0,
            versions: ApiVersions::default(),
        };
        connection.reconnect()?;
        Ok(connection)
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The versions negotiated with this broker.
    pub fn versions(&self) -> &ApiVersions {
        &self.versions
    }

    /// The version to send `key` at, or `Unsupported`.
    pub fn version(&self, key: ApiKey) -> Result<i16, ClientError> {
        self.versions
            .version(key)
            .ok_or_else(|| ClientError::Unsupported {
                address: self.address.clone(),
                api: key.name(),
                broker: self.versions.broker_range(key),
                client: client_range(key),
            })
    }

    fn reconnect(&mut self) -> Result<(), ClientError> {
        self.stream = Some(connect_stream(&self.address, self.config.connect_timeout)?);
        self.versions = self.handshake()?;
        Ok(())
    }

    /// ApiVersions at our highest version; a broker that does not know it answers with a v0
    /// body listing its own range (KIP-511), and we retry at the highest common version.
    fn handshake(&mut self) -> Result<ApiVersions, ClientError> {
        let key = ApiKey::ApiVersions;
        let (client_min, client_max) = client_range(key);
        let mut version = client_max;
        for _attempt in 0..2 {
            let request = if version >= 3 {
                ApiVersionsRequest {
                    client_software_name: SOFTWARE_NAME.into(),
                    client_software_version: SOFTWARE_VERSION.into(),
                    ..ApiVersionsRequest::default()
                }
            } else {
                ApiVersionsRequest::default()
            };
            let mut body = self.exchange(key, version, &request, Duration::ZERO)?;
            let error_code = match body.get(..2) {
                Some(&[high, low]) => i16::from_be_bytes([high, low]),
                _ => return Err(self.protocol(key, "empty ApiVersions body".into())),
            };
            if error_code == ErrorCode::UnsupportedVersion.code() && version > client_min {
                let fallback = ApiVersionsResponse::decode(&mut body, 0)
                    .map_err(|error| self.protocol(key, error.to_string()))?;
                let broker_max = fallback
                    .api_keys
                    .iter()
                    .find(|api| api.api_key == key.code())
                    .map_or(0, |api| api.max_version);
                version = broker_max.clamp(client_min, version - 1);
                continue;
            }
            let response = ApiVersionsResponse::decode(&mut body, version)
                .map_err(|error| self.protocol(key, error.to_string()))?;
            super::error::check(
                key.name(),
                || format!("broker {}", self.address),
                response.error_code,
                None,
            )?;
            return Ok(ApiVersions::negotiate(&response.api_keys));
        }
        Err(self.protocol(
            key,
            "the broker refused every ApiVersions version offered".into(),
        ))
    }

    /// Sends `body` as `key` at `version` and returns the decoded response. `extra_wait` is how
    /// long the request itself lets the broker wait (a fetch's max wait, a produce timeout).
    pub fn request<Req: Message, Resp: Message>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
        extra_wait: Duration,
    ) -> Result<Resp, ClientError> {
        if self.stream.is_none() {
            self.reconnect()?;
        }
        let mut frame = self.exchange(key, version, body, extra_wait)?;
        Resp::decode(&mut frame, version).map_err(|error| {
            self.stream = None;
            self.protocol(key, error.to_string())
        })
    }

    /// Sends a request the broker does not answer (Produce with acks=0).
    pub fn send_only<Req: Message>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<(), ClientError> {
        if self.stream.is_none() {
            self.reconnect()?;
        }
        let correlation_id = self.next_correlation_id();
        let deadline = Deadline::after(self.config.request_timeout);
        let chunks = self.encode(key, version, correlation_id, body)?;
        self.write_chunks(key, &chunks, deadline)
    }

    fn next_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(0);
        id
    }

    fn encode<Req: Message>(
        &self,
        key: ApiKey,
        version: i16,
        correlation_id: i32,
        body: &Req,
    ) -> Result<Vec<Bytes>, ClientError> {
        encode_request(
            correlation_id,
            Some(&self.config.client_id),
            key.code(),
            version,
            body,
        )
        .map_err(|error| {
            ClientError::Request(format!("cannot encode {} v{version}: {error}", key.name()))
        })
    }

    /// Writes one request and reads its response frame, returning the body after the header.
    fn exchange<Req: Message>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
        extra_wait: Duration,
    ) -> Result<Bytes, ClientError> {
        let correlation_id = self.next_correlation_id();
        let chunks = self.encode(key, version, correlation_id, body)?;
        let deadline = Deadline::after(self.config.request_timeout + extra_wait);
        self.write_chunks(key, &chunks, deadline)?;
        let mut frame = self.read_frame(key, deadline)?;
        let header =
            ResponseHeader::decode(&mut frame, response_header_version(key.code(), version))
                .map_err(|error| {
                    self.stream = None;
                    self.protocol(key, format!("response header: {error}"))
                })?;
        if header.correlation_id != correlation_id {
            self.stream = None;
            return Err(self.protocol(
                key,
                format!(
                    "correlation id {} does not match the request's {correlation_id}",
                    header.correlation_id
                ),
            ));
        }
        Ok(frame)
    }

    fn write_chunks(
        &mut self,
        key: ApiKey,
        chunks: &[Bytes],
        deadline: Deadline,
    ) -> Result<(), ClientError> {
        let total: usize = chunks.iter().map(Bytes::len).sum();
        let result = match self.stream.as_mut() {
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
            Some(stream) if total <= COALESCE_BYTES_MAX => {
                let joined: Vec<u8> = chunks.concat();
                write_by(stream, &joined, deadline)
            }
            Some(stream) => chunks
                .iter()
                .try_for_each(|chunk| write_by(stream, chunk, deadline)),
        };
        result.map_err(|error| self.io_error(key, error, deadline))
    }

    fn read_frame(&mut self, key: ApiKey, deadline: Deadline) -> Result<Bytes, ClientError> {
        let limit = self.config.response_bytes_max;
        let Some(stream) = self.stream.as_mut() else {
            return Err(self.io_error(key, io::ErrorKind::NotConnected.into(), deadline));
        };
        let mut size = Vec::with_capacity(4);
        if let Err(error) = read_by(stream, &mut size, 4, deadline) {
            return Err(self.io_error(key, error, deadline));
        }
        let declared = i32::from_be_bytes([size[0], size[1], size[2], size[3]]);
        let length = usize::try_from(declared).unwrap_or(0);
        if length < RESPONSE_FRAME_BYTES_MIN || length > limit {
            self.stream = None;
            return Err(self.protocol(
                key,
                format!("response frame of {declared} bytes is outside 4..={limit}"),
            ));
        }
        let mut frame = Vec::with_capacity(length.min(READ_CHUNK_BYTES));
        if let Err(error) = read_by(stream, &mut frame, length, deadline) {
            return Err(self.io_error(key, error, deadline));
        }
        Ok(Bytes::from(frame))
    }

    fn io_error(&mut self, key: ApiKey, error: io::Error, deadline: Deadline) -> ClientError {
        self.stream = None;
        match error.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ClientError::Timeout {
                address: self.address.clone(),
                api: key.name(),
                after: deadline.budget,
            },
            _ => ClientError::Io {
                address: self.address.clone(),
                api: key.name(),
                source: error,
            },
        }
    }

    fn protocol(&self, key: ApiKey, detail: String) -> ClientError {
        ClientError::Protocol {
            address: self.address.clone(),
            api: key.name(),
            detail,
        }
    }
}

/// When an exchange must be over, and the time it was given (for the error message).
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    fn after(budget: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + budget,
            budget,
        }
    }

    fn remaining(self) -> io::Result<Duration> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        Ok(left)
    }
}

fn write_by(stream: &mut TcpStream, mut data: &[u8], deadline: Deadline) -> io::Result<()> {
    while !data.is_empty() {
        stream.set_write_timeout(Some(deadline.remaining()?))?;
        match stream.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => data = &data[written..],
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Appends exactly `total - buffer.len()` more bytes to `buffer`, growing it only as data
/// arrives (a declared size never allocates ahead of the bytes received).
fn read_by(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    total: usize,
    deadline: Deadline,
) -> io::Result<()> {
    while buffer.len() < total {
        stream.set_read_timeout(Some(deadline.remaining()?))?;
        let start = buffer.len();
        let want = (total - start).min(READ_CHUNK_BYTES);
        buffer.resize(start + want, 0);
        match stream.read(&mut buffer[start..]) {
            Ok(0) => {
                buffer.truncate(start);
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the broker closed the connection",
                ));
            }
            Ok(read) => buffer.truncate(start + read),
            Err(error) => {
                buffer.truncate(start);
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::encode_response;
    use crate::protocol::messages::api_versions_response::ApiVersion;
    use std::net::TcpListener;
    use std::thread;

    fn config() -> ClientConfig {
        ClientConfig {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
            response_bytes_max: 1024 * 1024,
            ..ClientConfig::default()
        }
    }

    /// Reads one request frame and returns (api key, version, correlation id).
    fn read_request(stream: &mut TcpStream) -> (i16, i16, i32) {
        let mut size = [0u8; 4];
        stream.read_exact(&mut size).unwrap();
        let mut frame = vec![0u8; u32::from_be_bytes(size) as usize];
        stream.read_exact(&mut frame).unwrap();
        crate::protocol::frame::peek_request_header(&frame).unwrap()
    }

    fn write_frames(stream: &mut TcpStream, chunks: Vec<Bytes>) {
        for chunk in chunks {
            stream.write_all(&chunk).unwrap();
        }
    }

    fn versions_response(apis: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
        ApiVersionsResponse {
            api_keys: apis
                .iter()
                .map(|&(key, min_version, max_version)| ApiVersion {
                    api_key: key.code(),
                    min_version,
                    max_version,
                    ..ApiVersion::default()
                })
                .collect(),
            ..ApiVersionsResponse::default()
        }
    }

    /// A fake broker running `script` on its first connection.
    fn fake_broker(script: impl FnOnce(TcpStream) + Send + 'static) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            script(stream);
        });
        address
    }

    #[test]
    fn an_old_broker_gets_api_versions_at_its_own_version() {
        let address = fake_broker(|mut stream| {
            let (key, version, correlation) = read_request(&mut stream);
            assert_eq!((key, version), (18, client_range(ApiKey::ApiVersions).1));
            let refusal = ApiVersionsResponse {
                error_code: ErrorCode::UnsupportedVersion.code(),
                ..versions_response(&[(ApiKey::ApiVersions, 0, 2)])
            };
            write_frames(
                &mut stream,
                encode_response(correlation, 18, 0, &refusal).unwrap(),
            );
            let (key, version, correlation) = read_request(&mut stream);
            assert_eq!((key, version), (18, 2));
            let answer =
                versions_response(&[(ApiKey::ApiVersions, 0, 2), (ApiKey::Metadata, 0, 7)]);
            write_frames(
                &mut stream,
                encode_response(correlation, 18, 2, &answer).unwrap(),
            );
        });
        let connection = Connection::open(&address, &config()).unwrap();
        assert_eq!(connection.versions().version(ApiKey::Metadata), Some(7));
        assert!(matches!(
            connection.version(ApiKey::Produce),
            Err(ClientError::Unsupported { broker: None, .. })
        ));
    }

    #[test]
    fn oversized_response_frames_are_refused() {
        let address = fake_broker(|mut stream| {
            let _ = read_request(&mut stream);
            stream
                .write_all(&(64 * 1024 * 1024i32).to_be_bytes())
                .unwrap();
            let _ = stream.write_all(&[0; 16]);
        });
        let error = Connection::open(&address, &config()).unwrap_err();
        assert!(
            matches!(&error, ClientError::Protocol { detail, .. } if detail.contains("outside 4..=1048576")),
            "{error}"
        );
    }

    #[test]
    fn a_wrong_correlation_id_is_a_protocol_error() {
        let address = fake_broker(|mut stream| {
            let (_, _, correlation) = read_request(&mut stream);
            let answer = versions_response(&[(ApiKey::ApiVersions, 0, 4)]);
            write_frames(
                &mut stream,
                encode_response(correlation + 7, 18, 4, &answer).unwrap(),
            );
        });
        let error = Connection::open(&address, &config()).unwrap_err();
        assert!(error.to_string().contains("correlation id"), "{error}");
    }

    #[test]
    fn garbage_and_silence_are_errors_not_panics() {
        let address = fake_broker(|mut stream| {
            let _ = read_request(&mut stream);
            stream
                .write_all(&[0, 0, 0, 6, 0, 0, 0, 0, 0xff, 0xff])
                .unwrap();
        });
        assert!(matches!(
            Connection::open(&address, &config()),
            Err(ClientError::Protocol { .. })
        ));
        let address = fake_broker(|mut stream| {
            let _ = read_request(&mut stream);
            thread::sleep(Duration::from_secs(4));
        });
        let config = ClientConfig {
            request_timeout: Duration::from_millis(200),
            ..config()
        };
        assert!(matches!(
            Connection::open(&address, &config),
            Err(ClientError::Timeout { .. })
        ));
        let address = fake_broker(drop);
        assert!(matches!(
            Connection::open(&address, &config),
            Err(ClientError::Io { .. })
        ));
    }

    #[test]
    fn addresses_need_a_host_and_default_to_port_9092() {
        assert_eq!(
            resolve("127.0.0.1").unwrap(),
            vec!["127.0.0.1:9092".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve("[::1]:19092").unwrap(),
            vec!["[::1]:19092".parse::<SocketAddr>().unwrap()]
        );
        assert!(matches!(resolve(" "), Err(ClientError::Address { .. })));
        assert!(matches!(
            resolve("127.0.0.1:notaport"),
            Err(ClientError::Address { .. })
        ));
    }
}
