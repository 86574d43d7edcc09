//! The engine's error type and its mapping onto Kafka error codes.

use kafka_protocol::error::ResponseError as E;
use std::io;
use std::path::PathBuf;

use crate::batch::BatchError;
use crate::producer_state::ProducerError;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("partition {0} no longer accepts writes after a failed write or fsync")]
    Poisoned(String),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("partition {0} is not hosted on this shard")]
    NotHere(String),
    #[error("partition {0} is being deleted")]
    Deleted(String),
    /// A fetch read found the shard's descriptor budget held by descriptors in use: the read
    /// returns no data this time (see `files`). Never reaches a client.
    #[error("the shard's segment descriptors are all in use")]
    DescriptorsBusy,
    /// The process or the system ran out of file descriptors: retriable, never a storage fault.
    #[error("out of file descriptors opening {path} (raise the open-file limit): {source}")]
    OutOfDescriptors { path: PathBuf, source: io::Error },
}

impl LogError {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> LogError {
        if crate::files::is_exhausted(&source) {
            return LogError::OutOfDescriptors { path: path.into(), source };
        }
        LogError::Io { path: path.into(), source }
    }

    /// The Kafka error code a client gets for this failure.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            LogError::Io { .. } | LogError::Poisoned(_) => E::KafkaStorageError.code(),
            LogError::Batch(error) => error.kafka_error_code(),
            LogError::Producer(error) => error.kafka_error_code(),
            LogError::OffsetOutOfRange { .. } => E::OffsetOutOfRange.code(),
            LogError::NotHere(_) => E::NotLeaderOrFollower.code(),
            LogError::Deleted(_) => E::UnknownTopicOrPartition.code(),
            // Retriable: the client tries again once descriptors are free.
            LogError::OutOfDescriptors { .. } | LogError::DescriptorsBusy => E::RequestTimedOut.code(),
        }
    }
}

pub type LogResult<T> = Result<T, LogError>;
