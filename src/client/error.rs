//! What can go wrong talking to a broker, as values the caller can match on: the network
//! (`Connect`, `Io`, `Timeout`), the broker's bytes (`Protocol`), version support
//! (`Unsupported`), a Kafka error code for one resource (`Kafka`), and local problems building a
//! request (`Request`).
//!
//! Messages name the address, the API and the resource so that a tool can print them as they
//! are; the CLI adds what to do about them.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::protocol::ErrorCode;

/// An error code a broker returned for one resource (a topic, a partition, a config resource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    /// The int16 from the wire, kept even when this build does not know it.
    pub code: i16,
    /// The broker's `error_message`, when the API carries one.
    pub message: Option<String>,
    /// What the error is about, e.g. `topic 'orders'` or `topic 'orders' partition 3`.
    pub resource: String,
    /// The API that returned it.
    pub api: &'static str,
}

impl KafkaError {
    pub fn new(api: &'static str, resource: impl Into<String>, code: i16) -> KafkaError {
        KafkaError {
            code,
            message: None,
            resource: resource.into(),
            api,
        }
    }

    pub fn with_message(mut self, message: Option<String>) -> KafkaError {
        self.message = message.filter(|text| !text.is_empty());
        self
    }

    /// `None` for codes newer than Kafka 4.0.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code)
    }

    pub fn is(&self, code: ErrorCode) -> bool {
        self.code == code.code()
    }

    /// Kafka's UPPER_SNAKE name, or `ERROR_<code>` for an unknown code.
    pub fn name(&self) -> String {
        match self.error_code() {
            Some(code) => code.name().to_string(),
            None => format!("ERROR_{}", self.code),
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.error_code().is_some_and(ErrorCode::is_retriable)
    }
}

/// `topic 'orders': TOPIC_ALREADY_EXISTS: Topic 'orders' already exists.`
impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.resource, self.name())?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

/// Returns `Err` for a non-zero error code.
pub(crate) fn check(
    api: &'static str,
    resource: impl FnOnce() -> String,
    code: i16,
    message: Option<String>,
) -> Result<(), ClientError> {
    if code == ErrorCode::None.code() {
        return Ok(());
    }
    Err(ClientError::Kafka(
        KafkaError::new(api, resource(), code).with_message(message),
    ))
}

#[derive(Debug)]
pub enum ClientError {
    /// The bootstrap or broker address is not `HOST:PORT` or does not resolve.
    Address { address: String, reason: String },
    /// No TCP connection could be made.
    Connect {
        address: String,
        source: io::Error,
        timeout: Duration,
    },
    /// The connection failed during a request (reset, closed by the broker).
    Io {
        address: String,
        api: &'static str,
        source: io::Error,
    },
    /// The broker did not answer within the request timeout.
    Timeout {
        address: String,
        api: &'static str,
        after: Duration,
    },
    /// The broker's bytes are not a valid response (bad size, wrong correlation id, undecodable).
    Protocol {
        address: String,
        api: &'static str,
        detail: String,
    },
    /// The broker serves no version of `api` this client speaks (`broker` is `None` when it
    /// does not serve the API at all).
    Unsupported {
        address: String,
        api: &'static str,
        broker: Option<(i16, i16)>,
        client: (i16, i16),
    },
    /// The broker answered with an error code.
    Kafka(KafkaError),
    /// The request could not be built (encoding, compression, a value out of range).
    Request(String),
}

impl ClientError {
    /// The Kafka error, if that is what this is.
    pub fn kafka(&self) -> Option<&KafkaError> {
        match self {
            ClientError::Kafka(error) => Some(error),
            _ => None,
        }
    }

    /// Whether this is the Kafka error `code`.
    pub fn is_kafka(&self, code: ErrorCode) -> bool {
        self.kafka().is_some_and(|error| error.is(code))
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Address { address, reason } => {
                write!(f, "cannot use broker address '{address}': {reason}")
            }
            ClientError::Connect {
                address,
                source,
                timeout,
            } => {
                write!(f, "cannot reach a broker at {address}: ")?;
                describe_io(f, source, *timeout)
            }
            ClientError::Io {
                address,
                api,
                source,
            } => write!(f, "{api} request to {address} failed: {source}"),
            ClientError::Timeout {
                address,
                api,
                after,
            } => write!(
                f,
                "{api} request to {address} got no response within {} ms",
                after.as_millis()
            ),
            ClientError::Protocol {
                address,
                api,
                detail,
            } => write!(f, "invalid {api} response from {address}: {detail}"),
            ClientError::Unsupported {
                address,
                api,
                broker,
                client,
            } => match broker {
                Some((low, high)) => write!(
                    f,
                    "the broker at {address} serves {api} versions {low}-{high}, this client speaks {}-{}",
                    client.0, client.1
                ),
                None => write!(f, "the broker at {address} does not serve {api}"),
            },
            ClientError::Kafka(error) => error.fmt(f),
            ClientError::Request(detail) => f.write_str(detail),
        }
    }
}

fn describe_io(f: &mut fmt::Formatter<'_>, error: &io::Error, timeout: Duration) -> fmt::Result {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => f.write_str("connection refused"),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            write!(f, "no answer within {} ms", timeout.as_millis())
        }
        _ => write!(f, "{error}"),
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Connect { source, .. } | ClientError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_name_the_resource_the_code_and_the_message() {
        let error = KafkaError::new("CreateTopics", "topic 'orders'", 36)
            .with_message(Some("Topic 'orders' already exists.".into()));
        assert_eq!(
            error.to_string(),
            "topic 'orders': TOPIC_ALREADY_EXISTS: Topic 'orders' already exists."
        );
        assert!(error.is(ErrorCode::TopicAlreadyExists));
        assert!(!error.is_retriable());
        let unknown = KafkaError::new("Fetch", "topic 't' partition 0", 999);
        assert_eq!(unknown.to_string(), "topic 't' partition 0: ERROR_999");
        assert_eq!(unknown.error_code(), None);
    }

    #[test]
    fn empty_broker_messages_are_dropped() {
        let error =
            KafkaError::new("DeleteTopics", "topic 'x'", 3).with_message(Some(String::new()));
        assert_eq!(error.message, None);
    }

    #[test]
    fn refused_connections_say_so() {
        let error = ClientError::Connect {
            address: "127.0.0.1:9".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            error.to_string(),
            "cannot reach a broker at 127.0.0.1:9: connection refused"
        );
    }
}
