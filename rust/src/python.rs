//! The Python binding: converts arguments, releases the GIL for work, maps errors to exceptions.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::batch;
use crate::error::CoreError;

create_exception!(_core, StorageError, PyException, "Base of every error raised by fastlog's core.");
create_exception!(_core, CorruptRecordError, StorageError, "A record batch failed validation: CORRUPT_MESSAGE.");
create_exception!(_core, RecordTooLargeError, StorageError, "A record batch exceeds the size limit: MESSAGE_TOO_LARGE.");
create_exception!(_core, OffsetOutOfRangeError, StorageError, "An offset outside the log: OFFSET_OUT_OF_RANGE.");
create_exception!(_core, LogIOError, StorageError, "A disk operation failed: KAFKA_STORAGE_ERROR.");

impl From<CoreError> for PyErr {
    fn from(err: CoreError) -> PyErr {
        let message = err.to_string();
        match err {
            CoreError::CorruptBatch(_) => CorruptRecordError::new_err(message),
            CoreError::BatchTooLarge(_) => RecordTooLargeError::new_err(message),
            CoreError::OffsetOutOfRange(_) => OffsetOutOfRangeError::new_err(message),
            CoreError::InvalidArgument(_) => pyo3::exceptions::PyValueError::new_err(message),
            CoreError::Io(..) => LogIOError::new_err(message),
        }
    }
}

/// CRC32C (Castagnoli) of `data`, as record batches carry it.
#[pyfunction]
#[pyo3(name = "crc32c")]
fn crc32c_of(py: Python<'_>, data: &[u8]) -> u32 {
    if data.len() < 4096 {
        return batch::crc32c(data);
    }
    py.detach(|| batch::crc32c(data))
}

/// Validates a producer's run of record batches; returns (record count, batch count).
#[pyfunction]
#[pyo3(signature = (data, max_batch_bytes = 1 << 30))]
fn validate_batches(py: Python<'_>, data: &[u8], max_batch_bytes: usize) -> PyResult<(i64, usize)> {
    let headers = py.detach(|| batch::validate_produce(data, max_batch_bytes))?;
    Ok((headers.iter().map(|h| h.record_count as i64).sum(), headers.len()))
}

/// Copies `data` with offsets assigned from `base_offset` (used by tests and internal writers).
#[pyfunction]
#[pyo3(signature = (data, base_offset, leader_epoch = 0, log_append_time = None))]
fn assign_offsets<'py>(
    py: Python<'py>,
    data: &[u8],
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut owned = data.to_vec();
    py.detach(|| -> Result<(), CoreError> {
        let headers = batch::validate_produce(&owned, usize::MAX)?;
        batch::assign_offsets(&mut owned, &headers, base_offset, leader_epoch, log_append_time);
        Ok(())
    })?;
    Ok(PyBytes::new(py, &owned))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("CorruptRecordError", py.get_type::<CorruptRecordError>())?;
    m.add("RecordTooLargeError", py.get_type::<RecordTooLargeError>())?;
    m.add("OffsetOutOfRangeError", py.get_type::<OffsetOutOfRangeError>())?;
    m.add("LogIOError", py.get_type::<LogIOError>())?;
    m.add_function(wrap_pyfunction!(crc32c_of, m)?)?;
    m.add_function(wrap_pyfunction!(validate_batches, m)?)?;
    m.add_function(wrap_pyfunction!(assign_offsets, m)?)?;
    Ok(())
}
