//! A raw Kafka-protocol connection for tests that need exact bytes on the wire (bad input,
//! idempotence sequences): Weir's own codec on a blocking socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use weir::protocol::frame::encode_request;
use weir::protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use weir::protocol::Message;

use super::Broker;

pub struct Raw {
    pub stream: TcpStream,
    correlation: i32,
}

impl Raw {
    pub fn connect(broker: &Broker) -> Raw {
        let stream = TcpStream::connect(broker.bootstrap()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw {
            stream,
            correlation: 0,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one response frame (without its size); `None` if the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Vec<u8>> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut frame).ok()?;
        Some(frame)
    }

    pub fn request<Q: Message, R: Message>(
        &mut self,
        api_key: i16,
        version: i16,
        body: &Q,
        flexible_response: bool,
    ) -> Option<R> {
        self.correlation += 1;
        let chunks = encode_request(
            self.correlation,
            Some("bad-input-test"),
            api_key,
            version,
            body,
        )
        .unwrap();
        for chunk in chunks {
            self.send_raw(&chunk).ok()?;
        }
        let frame = self.read_frame()?;
        let mut bytes = Bytes::from(frame);
        assert_eq!(
            i32::from_be_bytes(bytes[..4].try_into().unwrap()),
            self.correlation
        );
        let _ = bytes.split_to(4);
        if flexible_response {
            let _tagged_fields = bytes.split_to(1);
        }
        Some(R::decode(&mut bytes, version).expect("a well-formed response"))
    }

    pub fn api_versions(&mut self) -> Option<ApiVersionsResponse> {
        self.request(
            18,
            3,
            &ApiVersionsRequest {
                client_software_name: "t".into(),
                client_software_version: "1".into(),
                ..Default::default()
            },
            false,
        )
    }

    /// True if the broker closed the connection (reads hit EOF within the timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0) | Err(_))
    }
}
