//! What can go wrong talking to a broker, and Kafka's error codes by their Kafka names, e.g.
//! `TOPIC_ALREADY_EXISTS (36): Topic 'x' already exists.`

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;

/// Everything a request to a broker can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("connection to {address} failed: {source}")]
    Transport { address: String, source: std::io::Error },
    #[error("broker {address} sent a frame of {size_bytes} bytes (limit {frame_bytes_max})")]
    FrameSize { address: String, size_bytes: i64, frame_bytes_max: usize },
    #[error("broker {address} answered correlation id {actual}, expected {expected}")]
    CorrelationMismatch { address: String, expected: i32, actual: i32 },
    #[error("{api:?} v{version}: {detail}")]
    Codec { api: ApiKey, version: i16, detail: String },
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16 },
    #[error("broker {address} does not support {api:?} in a version this client speaks ({detail})")]
    UnsupportedApi { address: String, api: ApiKey, detail: String },
    #[error("{0}")]
    Kafka(#[from] KafkaError),
    #[error("broker answered {answered} of {asked} partitions")]
    PartitionCount { answered: usize, asked: usize },
    #[error("broker returned no metadata for topic '{topic}'")]
    MissingTopic { topic: String },
    #[error("cannot encode record batch: {detail}")]
    RecordEncode { detail: String },
}

impl ClientError {
    /// Whether the broker could not be reached or the connection broke (as opposed to a broker
    /// that answered something this client refuses).
    pub fn is_connection(&self) -> bool {
        matches!(self, ClientError::Connect { .. } | ClientError::Transport { .. })
    }
}

/// A non-zero error code returned by a broker, with the broker's message or our own context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({code}): {text}", error_code_name(*.code))]
pub struct KafkaError {
    pub code: i16,
    pub text: String,
}

impl KafkaError {
    /// `Ok` for code 0, otherwise an error carrying the broker's message when it sent a
    /// non-empty one, else `context` (e.g. "topic 'x'").
    pub fn check(code: i16, message: Option<&str>, context: impl FnOnce() -> String) -> Result<(), KafkaError> {
        if code == 0 {
            return Ok(());
        }
        let text = match message {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => context(),
        };
        Err(KafkaError { code, text })
    }

    /// Whether Kafka marks this error code as worth retrying.
    pub fn is_retriable(&self) -> bool {
        ResponseError::try_from_code(self.code).is_some_and(|e| e.is_retriable())
    }
}

/// Kafka's name for an error code, e.g. 36 → `TOPIC_ALREADY_EXISTS`.
pub fn error_code_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(_)) => "UNKNOWN_ERROR_CODE".to_string(),
        Some(known) => screaming_snake_case(&known.to_string()),
    }
}

/// `TopicAlreadyExists` → `TOPIC_ALREADY_EXISTS`.
fn screaming_snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (index, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_names_match_kafkas_errors_enum() {
        assert_eq!(error_code_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_code_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_code_name(17), "INVALID_TOPIC_EXCEPTION");
        assert_eq!(error_code_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_code_name(0), "NONE");
        assert_eq!(error_code_name(9999), "UNKNOWN_ERROR_CODE");
    }

    #[test]
    fn kafka_error_prefers_broker_message_and_names_the_code() {
        let err = KafkaError::check(36, Some("Topic 'x' already exists."), || "topic 'x'".into()).unwrap_err();
        assert_eq!(err.to_string(), "TOPIC_ALREADY_EXISTS (36): Topic 'x' already exists.");
    }

    #[test]
    fn kafka_error_falls_back_to_context_without_broker_message() {
        let err = KafkaError::check(3, Some(""), || "topic 'y'".into()).unwrap_err();
        assert_eq!(err.to_string(), "UNKNOWN_TOPIC_OR_PARTITION (3): topic 'y'");
        assert!(err.is_retriable());
        assert!(KafkaError::check(0, None, || unreachable!()).is_ok());
    }
}
