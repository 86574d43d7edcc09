//! Kafka error codes, the one place net/ names them. Each value is read from kafka-protocol's
//! table of Kafka's `Errors` (so a typo cannot invent a code); `NONE` is success.
//! The engine and the group state machines answer with codes of their own making
//! (`LogError::kafka_error_code`, fjord-group's replies), from the same table.

use kafka_protocol::error::ResponseError as E;

pub const NONE: i16 = 0;
pub const CONCURRENT_TRANSACTIONS: i16 = E::ConcurrentTransactions.code();
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = E::CoordinatorLoadInProgress.code();
pub const COORDINATOR_NOT_AVAILABLE: i16 = E::CoordinatorNotAvailable.code();
pub const CORRUPT_MESSAGE: i16 = E::CorruptMessage.code();
pub const FENCED_LEADER_EPOCH: i16 = E::FencedLeaderEpoch.code();
pub const FETCH_SESSION_ID_NOT_FOUND: i16 = E::FetchSessionIdNotFound.code();
pub const GROUP_ID_NOT_FOUND: i16 = E::GroupIdNotFound.code();
pub const ILLEGAL_GENERATION: i16 = E::IllegalGeneration.code();
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = E::InconsistentGroupProtocol.code();
pub const INVALID_CONFIG: i16 = E::InvalidConfig.code();
pub const INVALID_FETCH_SESSION_EPOCH: i16 = E::InvalidFetchSessionEpoch.code();
pub const INVALID_GROUP_ID: i16 = E::InvalidGroupId.code();
pub const INVALID_PARTITIONS: i16 = E::InvalidPartitions.code();
pub const INVALID_PRODUCER_EPOCH: i16 = E::InvalidProducerEpoch.code();
pub const INVALID_PRODUCER_ID_MAPPING: i16 = E::InvalidProducerIdMapping.code();
pub const INVALID_REQUEST: i16 = E::InvalidRequest.code();
pub const INVALID_REQUIRED_ACKS: i16 = E::InvalidRequiredAcks.code();
pub const INVALID_TOPIC_EXCEPTION: i16 = E::InvalidTopicException.code();
pub const INVALID_TXN_STATE: i16 = E::InvalidTxnState.code();
pub const KAFKA_STORAGE_ERROR: i16 = E::KafkaStorageError.code();
pub const MISMATCHED_ENDPOINT_TYPE: i16 = E::MismatchedEndpointType.code();
pub const NOT_ENOUGH_REPLICAS: i16 = E::NotEnoughReplicas.code();
pub const OFFSET_METADATA_TOO_LARGE: i16 = E::OffsetMetadataTooLarge.code();
pub const OFFSET_OUT_OF_RANGE: i16 = E::OffsetOutOfRange.code();
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = E::OutOfOrderSequenceNumber.code();
pub const POLICY_VIOLATION: i16 = E::PolicyViolation.code();
pub const PRODUCER_FENCED: i16 = E::ProducerFenced.code();
pub const STALE_MEMBER_EPOCH: i16 = E::StaleMemberEpoch.code();
pub const TOPIC_ALREADY_EXISTS: i16 = E::TopicAlreadyExists.code();
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = E::TransactionalIdAuthorizationFailed.code();
pub const TRANSACTION_COORDINATOR_FENCED: i16 = E::TransactionCoordinatorFenced.code();
pub const UNKNOWN_LEADER_EPOCH: i16 = E::UnknownLeaderEpoch.code();
pub const UNKNOWN_SERVER_ERROR: i16 = E::UnknownServerError.code();
pub const UNKNOWN_TOPIC_ID: i16 = E::UnknownTopicId.code();
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = E::UnknownTopicOrPartition.code();
pub const UNSTABLE_OFFSET_COMMIT: i16 = E::UnstableOffsetCommit.code();
pub const UNSUPPORTED_ENDPOINT_TYPE: i16 = E::UnsupportedEndpointType.code();
pub const UNSUPPORTED_VERSION: i16 = E::UnsupportedVersion.code();

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers Kafka's protocol guide lists (kafka.apache.org/protocol#protocol_error_codes).
    #[test]
    fn codes_are_kafkas_numbers() {
        assert_eq!(UNKNOWN_SERVER_ERROR, -1);
        assert_eq!(UNKNOWN_TOPIC_OR_PARTITION, 3);
        assert_eq!(COORDINATOR_NOT_AVAILABLE, 15);
        assert_eq!(KAFKA_STORAGE_ERROR, 56);
        assert_eq!(STALE_MEMBER_EPOCH, 113);
        assert_eq!(UNSUPPORTED_ENDPOINT_TYPE, 115);
    }
}
