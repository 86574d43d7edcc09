//! Errors of the command-line client and the exit codes they map to.
//!
//! Exit codes: 0 success, 1 a Kafka error or bad input, 2 the broker could not be reached or the
//! connection broke. Kafka error codes are shown with Kafka's own names, e.g.
//! `TOPIC_ALREADY_EXISTS (36): Topic 'x' already exists.`

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;

/// Exit code for a Kafka error, bad input or a malformed response.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code when a broker cannot be reached or the connection breaks.
pub const EXIT_CONNECTION: i32 = 2;

/// Everything that can go wrong in a client command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot connect to {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("connection to {address} failed: {source}")]
    Transport { address: String, source: std::io::Error },
    #[error("broker {address} sent a frame of {size_bytes} bytes (limit {size_bytes_max})")]
    FrameSize { address: String, size_bytes: i64, size_bytes_max: usize },
    #[error("broker {address} answered correlation id {actual}, expected {expected}")]
    CorrelationMismatch { address: String, expected: i32, actual: i32 },
    #[error("{api:?} v{version}: {detail}")]
    Codec { api: ApiKey, version: i16, detail: String },
    #[error("broker {address} does not support {api:?} in a version this client speaks ({detail})")]
    UnsupportedApi { address: String, api: ApiKey, detail: String },
    #[error("{0}")]
    Kafka(#[from] KafkaError),
    #[error("{detail}")]
    Input { detail: String },
    #[error("broker {node_id} is not in the cluster metadata")]
    UnknownBroker { node_id: i32 },
    #[error("cannot decode records of {topic}-{partition} at offset {offset}: {detail}")]
    Records { topic: String, partition: i32, offset: i64, detail: String },
    #[error("cannot encode record batch: {detail}")]
    RecordEncode { detail: String },
    #[error("{record_count} records in {batch_count} failed batch(es) were not produced")]
    ProduceFailed { batch_count: usize, record_count: usize },
    #[error("cannot read standard input: {0}")]
    Stdin(std::io::Error),
    #[error("cannot write standard output: {0}")]
    Stdout(std::io::Error),
    /// Several independent failures (e.g. one per topic); each is reported on its own line.
    #[error("{} operations failed", .0.len())]
    Several(Vec<CliError>),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Connect { .. } | CliError::Transport { .. } => EXIT_CONNECTION,
            CliError::Several(errors) => errors.iter().map(CliError::exit_code).max().unwrap_or(EXIT_FAILURE),
            _ => EXIT_FAILURE,
        }
    }

    /// Builds an input error from anything printable.
    pub fn input(detail: impl Into<String>) -> Self {
        CliError::Input { detail: detail.into() }
    }

    /// Turns a list of failures into one error, or `Ok` when it is empty.
    pub fn from_failures(mut failures: Vec<CliError>) -> Result<(), CliError> {
        match failures.len() {
            0 => Ok(()),
            1 => Err(failures.remove(0)),
            _ => Err(CliError::Several(failures)),
        }
    }

    /// The lines to print on stderr, one per failure.
    pub fn report_lines(&self) -> Vec<String> {
        match self {
            CliError::Several(errors) => errors.iter().flat_map(CliError::report_lines).collect(),
            other => vec![format!("error: {other}")],
        }
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
        let err = KafkaError::check(36, Some("Topic 'x' already exists."), || "topic 'x'".into());
        let text = CliError::from(err.unwrap_err()).report_lines();
        assert_eq!(text, vec!["error: TOPIC_ALREADY_EXISTS (36): Topic 'x' already exists."]);
    }

    #[test]
    fn kafka_error_falls_back_to_context_without_broker_message() {
        let err = KafkaError::check(3, Some(""), || "topic 'y'".into()).unwrap_err();
        assert_eq!(err.to_string(), "UNKNOWN_TOPIC_OR_PARTITION (3): topic 'y'");
        assert!(err.is_retriable());
        assert!(KafkaError::check(0, None, || unreachable!()).is_ok());
    }

    #[test]
    fn connection_failures_exit_2_and_kafka_errors_exit_1() {
        let connect =
            CliError::Connect { address: "h:1".into(), source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused) };
        let kafka = CliError::Kafka(KafkaError { code: 36, text: String::new() });
        assert_eq!(kafka.exit_code(), EXIT_FAILURE);
        assert_eq!(connect.exit_code(), EXIT_CONNECTION);
        assert_eq!(CliError::Several(vec![kafka, connect]).exit_code(), EXIT_CONNECTION);
    }
}
