//! A bare Kafka connection speaking Weir's own codec, one request at a time: for what client
//! libraries cannot be made to send (odd versions and flags, exact retries, bad input).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use weir::protocol::frame::encode_request;
use weir::protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseHeader};
use weir::protocol::Message;

use super::Broker;

pub struct Raw {
    pub stream: TcpStream,
    correlation_id: i32,
}

impl Raw {
    pub fn connect(broker: &Broker) -> Raw {
        let stream = TcpStream::connect(broker.bootstrap()).expect("connecting to weir");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Raw {
            stream,
            correlation_id: 0,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a request without reading anything back (acks=0 produce); its correlation id.
    pub fn send<M: Message>(
        &mut self,
        api_key: i16,
        version: i16,
        body: &M,
    ) -> std::io::Result<i32> {
        self.correlation_id += 1;
        let chunks = encode_request(
            self.correlation_id,
            Some("weir-raw-test"),
            api_key,
            version,
            body,
        )
        .expect("the request encodes");
        for chunk in chunks {
            self.stream.write_all(&chunk)?;
        }
        Ok(self.correlation_id)
    }

    /// Reads one response frame (without its size); `None` if the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Vec<u8>> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut frame).ok()?;
        Some(frame)
    }

    /// Sends a request and decodes its response; `None` if the connection closed instead.
    pub fn try_request<Q: Message, R: Message>(
        &mut self,
        api_key: i16,
        version: i16,
        body: &Q,
    ) -> Option<R> {
        let correlation_id = self.send(api_key, version, body).ok()?;
        let mut frame = Bytes::from(self.read_frame()?);
        let header_version = weir::protocol::api_keys::response_header_version(api_key, version);
        let header = ResponseHeader::decode(&mut frame, header_version).expect("a response header");
        assert_eq!(header.correlation_id, correlation_id);
        Some(R::decode(&mut frame, version).expect("a well-formed response body"))
    }

    /// Sends a request and decodes its response.
    pub fn request<Q: Message, R: Message>(&mut self, api_key: i16, version: i16, body: &Q) -> R {
        self.try_request(api_key, version, body)
            .expect("a response (the broker closed the connection)")
    }

    pub fn api_versions(&mut self) -> Option<ApiVersionsResponse> {
        let request = ApiVersionsRequest {
            client_software_name: "t".into(),
            client_software_version: "1".into(),
            ..Default::default()
        };
        self.try_request(18, 3, &request)
    }

    /// True if the broker closed the connection (a read hits EOF or an error within the timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0) | Err(_))
    }
}
