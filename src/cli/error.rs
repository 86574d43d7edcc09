//! Errors of the command-line client and the exit codes they map to.
//!
//! Exit codes: 0 success, 1 a Kafka error or bad input, 2 the broker could not be reached or the
//! connection broke. Kafka error codes are shown with Kafka's own names, e.g.
//! `TOPIC_ALREADY_EXISTS (36): Topic 'x' already exists.`

use fjord_client::ClientError;
pub use fjord_client::{error_code_name, KafkaError};

/// Exit code for a Kafka error, bad input or a malformed response.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code when a broker cannot be reached or the connection breaks.
pub const EXIT_CONNECTION: i32 = 2;

/// Everything that can go wrong in a client command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Talking to a broker failed (a Kafka error code arrives as [`CliError::Kafka`] instead).
    #[error(transparent)]
    Client(ClientError),
    #[error("{0}")]
    Kafka(#[from] KafkaError),
    #[error("{detail}")]
    Input { detail: String },
    #[error("broker {node_id} is not in the cluster metadata")]
    UnknownBroker { node_id: i32 },
    #[error("cannot decode records of {topic}-{partition} at offset {offset}: {detail}")]
    Records { topic: String, partition: i32, offset: i64, detail: String },
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
            CliError::Client(error) if error.is_connection() => EXIT_CONNECTION,
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

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Kafka(kafka) => CliError::Kafka(kafka),
            other => CliError::Client(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_are_reported_with_their_kafka_names() {
        let err = KafkaError::check(36, Some("Topic 'x' already exists."), || "topic 'x'".into());
        let text = CliError::from(err.unwrap_err()).report_lines();
        assert_eq!(text, vec!["error: TOPIC_ALREADY_EXISTS (36): Topic 'x' already exists."]);
        let from_client = CliError::from(ClientError::Kafka(KafkaError { code: 3, text: "t".into() }));
        assert!(matches!(from_client, CliError::Kafka(KafkaError { code: 3, .. })));
    }

    #[test]
    fn connection_failures_exit_2_and_kafka_errors_exit_1() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let connect = CliError::from(ClientError::Connect { address: "h:1".into(), source: refused });
        let kafka = CliError::Kafka(KafkaError { code: 36, text: String::new() });
        assert_eq!(kafka.exit_code(), EXIT_FAILURE);
        assert_eq!(connect.exit_code(), EXIT_CONNECTION);
        assert_eq!(CliError::Several(vec![kafka, connect]).exit_code(), EXIT_CONNECTION);
    }
}
