//! Errors of the core, each naming what was wrong; the binding maps them to Python exceptions.

use std::fmt;
use std::io;

/// Every failure of the core. The variant tells the server which Kafka error code to answer with.
#[derive(Debug)]
pub enum CoreError {
    /// A record batch whose bytes cannot be trusted (bad length, magic or CRC): CORRUPT_MESSAGE.
    CorruptBatch(String),
    /// A batch larger than the configured maximum: MESSAGE_TOO_LARGE.
    BatchTooLarge(String),
    /// An offset outside the log: OFFSET_OUT_OF_RANGE.
    OffsetOutOfRange(String),
    /// The caller asked for something the log cannot do (bad argument): INVALID_REQUEST.
    InvalidArgument(String),
    /// A producer's batch with a sequence that does not follow its last: OUT_OF_ORDER_SEQUENCE_NUMBER.
    OutOfOrderSequence(String),
    /// A producer epoch older than the current one: INVALID_PRODUCER_EPOCH.
    InvalidProducerEpoch(String),
    /// A producer this partition has no state for, mid-sequence: UNKNOWN_PRODUCER_ID.
    UnknownProducerId(String),
    /// A transaction marker from a coordinator older than the last one that wrote a marker for
    /// the producer here (a coordinator that lost its role): TRANSACTION_COORDINATOR_FENCED.
    CoordinatorFenced(String),
    /// A produce request the log cannot take as a whole (e.g. two batches of one idempotent
    /// producer): INVALID_RECORD.
    InvalidRecord(String),
    /// Records refused one by one (KIP-467), e.g. keyless records for a compacted topic:
    /// INVALID_RECORD with (index of the record in its batch, why) for each.
    RecordErrors(String, Vec<(i32, String)>),
    /// An I/O failure, with the path or operation it happened on: KAFKA_STORAGE_ERROR.
    Io(String, io::Error),
}

impl CoreError {
    pub fn io(context: impl Into<String>, err: io::Error) -> Self {
        CoreError::Io(context.into(), err)
    }

    /// The Kafka error code a client is answered with (Kafka's `Errors` numbering; the Python
    /// layer's `storage_error_code` gives the same codes for the exceptions, a test checks it).
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            CoreError::CorruptBatch(_) => 2,         // CORRUPT_MESSAGE
            CoreError::BatchTooLarge(_) => 10,       // MESSAGE_TOO_LARGE
            CoreError::OffsetOutOfRange(_) => 1,     // OFFSET_OUT_OF_RANGE
            CoreError::InvalidArgument(_) => 42,     // INVALID_REQUEST
            CoreError::OutOfOrderSequence(_) => 45,  // OUT_OF_ORDER_SEQUENCE_NUMBER
            CoreError::InvalidProducerEpoch(_) => 47, // INVALID_PRODUCER_EPOCH
            CoreError::UnknownProducerId(_) => 59,   // UNKNOWN_PRODUCER_ID
            CoreError::CoordinatorFenced(_) => 52,   // TRANSACTION_COORDINATOR_FENCED
            CoreError::InvalidRecord(_) => 87,       // INVALID_RECORD
            CoreError::RecordErrors(..) => 87,       // INVALID_RECORD
            CoreError::Io(..) => 56,                 // KAFKA_STORAGE_ERROR
        }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::CorruptBatch(m)
            | CoreError::BatchTooLarge(m)
            | CoreError::OffsetOutOfRange(m)
            | CoreError::InvalidArgument(m)
            | CoreError::OutOfOrderSequence(m)
            | CoreError::InvalidProducerEpoch(m)
            | CoreError::UnknownProducerId(m)
            | CoreError::CoordinatorFenced(m)
            | CoreError::InvalidRecord(m)
            | CoreError::RecordErrors(m, _) => f.write_str(m),
            CoreError::Io(ctx, e) => write!(f, "{ctx}: {e}"),
        }
    }
}

impl std::error::Error for CoreError {}

pub type Result<T> = std::result::Result<T, CoreError>;
