//! Record batches (magic 2) as they travel on the wire and lie on disk.
//!
//! Layout of the 61-byte header, then `record_count` records:
//! base_offset i64 | batch_length i32 | partition_leader_epoch i32 | magic i8 | crc u32 |
//! attributes i16 | last_offset_delta i32 | base_timestamp i64 | max_timestamp i64 |
//! producer_id i64 | producer_epoch i16 | base_sequence i32 | record_count i32
//! The CRC32C covers everything from `attributes` to the end of the batch, so the broker may
//! rewrite base offset and leader epoch without recomputing it.

use crate::compression;
use crate::error::{CoreError, Result};

pub const HEADER_SIZE: usize = 61;
/// Bytes before `batch_length` counts: base_offset and batch_length itself.
pub const LOG_OVERHEAD: usize = 12;
pub const MAGIC_V2: i8 = 2;

const OFF_BASE_OFFSET: usize = 0;
const OFF_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
/// The magic byte sits here in every message format (legacy messages included).
pub const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORD_COUNT: usize = 57;

pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
pub const ATTR_CONTROL: i16 = 0x20;

/// The decoded header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Total size of the batch in bytes, header included.
    pub fn size(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Reads just base offset and length: enough to walk a run of batches, whatever their magic.
pub fn peek_offset_and_size(buf: &[u8]) -> Option<(i64, usize)> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let length = be_i32(buf, OFF_LENGTH);
    if length < 0 {
        return None;
    }
    Some((be_i64(buf, OFF_BASE_OFFSET), length as usize + LOG_OVERHEAD))
}

/// Decodes the header at the start of `buf` without checking the CRC.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader> {
    if buf.len() < HEADER_SIZE {
        return Err(CoreError::CorruptBatch(format!(
            "record batch truncated: {} bytes, a header needs {HEADER_SIZE}",
            buf.len()
        )));
    }
    let header = BatchHeader {
        base_offset: be_i64(buf, OFF_BASE_OFFSET),
        batch_length: be_i32(buf, OFF_LENGTH),
        partition_leader_epoch: be_i32(buf, OFF_LEADER_EPOCH),
        magic: buf[OFF_MAGIC] as i8,
        crc: be_u32(buf, OFF_CRC),
        attributes: be_i16(buf, OFF_ATTRIBUTES),
        last_offset_delta: be_i32(buf, OFF_LAST_OFFSET_DELTA),
        base_timestamp: be_i64(buf, OFF_BASE_TIMESTAMP),
        max_timestamp: be_i64(buf, OFF_MAX_TIMESTAMP),
        producer_id: be_i64(buf, OFF_PRODUCER_ID),
        producer_epoch: be_i16(buf, OFF_PRODUCER_EPOCH),
        base_sequence: be_i32(buf, OFF_BASE_SEQUENCE),
        record_count: be_i32(buf, OFF_RECORD_COUNT),
    };
    if header.magic != MAGIC_V2 {
        return Err(CoreError::CorruptBatch(format!(
            "unsupported record batch magic {} (only magic 2 is accepted)",
            header.magic
        )));
    }
    if (header.batch_length as i64) < (HEADER_SIZE - LOG_OVERHEAD) as i64 {
        return Err(CoreError::CorruptBatch(format!(
            "record batch length {} is below the header size",
            header.batch_length
        )));
    }
    if header.record_count < 0 || header.last_offset_delta < 0 {
        return Err(CoreError::CorruptBatch(format!(
            "record batch has negative record count {} or last offset delta {}",
            header.record_count, header.last_offset_delta
        )));
    }
    Ok(header)
}

/// Checks the CRC32C of one whole batch (`buf` holds exactly the batch).
pub fn verify_crc(header: &BatchHeader, batch: &[u8]) -> Result<()> {
    let actual = crc32c(&batch[OFF_ATTRIBUTES..]);
    if actual != header.crc {
        return Err(CoreError::CorruptBatch(format!(
            "record batch at offset {} fails its CRC: stored {:#010x}, computed {:#010x}",
            header.base_offset, header.crc, actual
        )));
    }
    Ok(())
}

/// Reads a zig-zag varint; `None` when the buffer ends first or it runs past 5 bytes.
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i32> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= ((byte & 0x7f) as u32) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i32) ^ -((value & 1) as i32));
        }
    }
    None
}

/// The refusal of records one by one, with the message Kafka's broker gives it.
fn record_errors(errors: Vec<(i32, String)>) -> CoreError {
    let shown: Vec<String> =
        errors.iter().take(3).map(|(index, why)| format!("RecordError(batchIndex={index}, message='{why}')")).collect();
    let message = format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
        errors.len(),
        shown.join(", ")
    );
    CoreError::RecordErrors(message, errors)
}

/// Reads a zig-zag varlong; `None` when the buffer ends first or it runs past 10 bytes.
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// One record inside a (decompressed) records section.
pub struct RecordRef {
    /// Byte range of the whole record, length prefix included.
    pub start: usize,
    pub end: usize,
    pub offset_delta: i32,
    pub key: Option<(usize, usize)>,
    /// Byte range of the value; None for a null value (a tombstone).
    pub value: Option<(usize, usize)>,
}

impl RecordRef {
    pub fn tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// Parses the records of a batch's (decompressed) records section.
pub fn parse_records(records: &[u8], count: i32) -> Result<Vec<RecordRef>> {
    let bad = |what: &str| CoreError::CorruptBatch(format!("record batch has a malformed record: {what}"));
    // A record takes at least 7 bytes: a count beyond what the bytes can hold is not trusted.
    let mut out = Vec::with_capacity((count.max(0) as usize).min(records.len() / 7));
    let mut pos = 0;
    for _ in 0..count {
        let start = pos;
        let length = read_varint(records, &mut pos).filter(|l| *l >= 0).ok_or_else(|| bad("length"))? as usize;
        let end = pos.checked_add(length).filter(|e| *e <= records.len()).ok_or_else(|| bad("length past the end"))?;
        let body = &records[..end];
        pos += 1; // attributes
        read_varlong(body, &mut pos).ok_or_else(|| bad("timestamp delta"))?;
        let offset_delta = read_varint(body, &mut pos).ok_or_else(|| bad("offset delta"))?;
        let key_len = read_varint(body, &mut pos).ok_or_else(|| bad("key length"))?;
        let key = if key_len < 0 {
            None
        } else {
            let key_end = pos.checked_add(key_len as usize).filter(|e| *e <= end).ok_or_else(|| bad("key past the end"))?;
            let range = (pos, key_end);
            pos = key_end;
            Some(range)
        };
        let value_len = read_varint(body, &mut pos).ok_or_else(|| bad("value length"))?;
        let value = if value_len < 0 {
            None
        } else {
            Some((pos, pos.checked_add(value_len as usize).filter(|e| *e <= end).ok_or_else(|| bad("value past the end"))?))
        };
        out.push(RecordRef { start, end, offset_delta, key, value });
        pos = end;
    }
    Ok(out)
}

/// What walking a batch's records found.
struct RecordsSeen {
    /// The largest record timestamp (the header's own max timestamp for an empty batch).
    max_timestamp: i64,
    /// Indexes (in the batch) of records without a key, when they were looked for.
    keyless: Vec<i32>,
}

/// Walks a batch's records (decompressed), checks that their count and lengths add up, and
/// reads each record's timestamp (and, with `find_keyless`, whether it has a key).
fn check_records(header: &BatchHeader, records: &[u8], find_keyless: bool) -> Result<RecordsSeen> {
    let mut pos = 0;
    let mut seen = RecordsSeen { max_timestamp: if header.record_count > 0 { i64::MIN } else { header.max_timestamp }, keyless: vec![] };
    for index in 0..header.record_count {
        let bad = |what: &str| CoreError::CorruptBatch(format!("record {index} of batch at offset {} {what}", header.base_offset));
        let length = read_varint(records, &mut pos).filter(|l| *l >= 0).ok_or_else(|| bad("has a bad length"))? as usize;
        let end = pos.checked_add(length).filter(|end| *end <= records.len()).ok_or_else(|| bad("runs past the batch end"))?;
        let record = &records[pos..end];
        let mut at = 1; // after the attributes byte: timestamp delta, offset delta, key length
        let delta = read_varlong(record, &mut at).ok_or_else(|| bad("is malformed"))?;
        seen.max_timestamp = seen.max_timestamp.max(header.base_timestamp.wrapping_add(delta));
        if find_keyless {
            read_varint(record, &mut at).ok_or_else(|| bad("is malformed"))?;
            if read_varint(record, &mut at).ok_or_else(|| bad("is malformed"))? < 0 {
                seen.keyless.push(index);
            }
        }
        pos = end;
    }
    if pos != records.len() {
        return Err(CoreError::CorruptBatch(format!(
            "batch at offset {} has {} bytes after its {} records",
            header.base_offset,
            records.len() - pos,
            header.record_count
        )));
    }
    Ok(seen)
}

/// Validates one batch from the start of `buf` and returns its header.
/// Checks length, magic, CRC and (uncompressed) that the record count matches the records.
pub fn validate_batch(buf: &[u8]) -> Result<BatchHeader> {
    let header = checked_header(buf)?;
    if header.compression() == 0 {
        check_records(&header, &buf[HEADER_SIZE..header.size()], false)?;
    }
    Ok(header)
}

/// The header of the batch at the start of `buf`, its length and CRC checked (not its records).
pub fn checked_header(buf: &[u8]) -> Result<BatchHeader> {
    let header = parse_header(buf)?;
    let size = header.size();
    if size > buf.len() {
        return Err(CoreError::CorruptBatch(format!(
            "record batch at offset {} claims {} bytes but only {} remain",
            header.base_offset,
            size,
            buf.len()
        )));
    }
    verify_crc(&header, &buf[..size])?;
    Ok(header)
}

/// Decompresses a compressed batch's records (at most `limit` bytes) and checks them.
fn check_compressed_records(header: &BatchHeader, batch: &[u8], limit: usize, find_keyless: bool) -> Result<RecordsSeen> {
    let records = compression::decompress(header.compression(), &batch[HEADER_SIZE..], limit)
        .map_err(|e| CoreError::CorruptBatch(format!("record batch at offset {}: {e}", header.base_offset)))?;
    check_records(header, &records, find_keyless)
}

/// Validates a producer's run of batches (the `records` field of a Produce request).
/// Refuses an empty run, a batch above `max_batch_bytes`, trailing garbage, and compressed
/// records that do not decompress, inflate past `max_batch_bytes`, or miscount themselves.
pub fn validate_produce(buf: &[u8], max_batch_bytes: usize) -> Result<Vec<BatchHeader>> {
    validate_run(buf, max_batch_bytes, None)
}

/// `validate_produce` for a compacted topic: a batch with records without a key is refused as
/// Kafka's LogValidator refuses it, INVALID_RECORD naming each keyless record of the first such
/// batch with Kafka's message (`partition` is "topic-index", as Kafka prints a partition).
pub fn validate_compacted_produce(buf: &[u8], max_batch_bytes: usize, partition: &str) -> Result<Vec<BatchHeader>> {
    validate_run(buf, max_batch_bytes, Some(partition))
}

fn validate_run(buf: &[u8], max_batch_bytes: usize, keys_required_in: Option<&str>) -> Result<Vec<BatchHeader>> {
    if buf.is_empty() {
        return Err(CoreError::CorruptBatch("produce request carries no record batch".into()));
    }
    let mut headers = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let mut header = checked_header(&buf[pos..])?;
        if header.size() > max_batch_bytes {
            return Err(CoreError::BatchTooLarge(format!(
                "record batch of {} bytes exceeds the limit of {max_batch_bytes}",
                header.size()
            )));
        }
        if header.last_offset_delta != header.record_count - 1 && header.record_count > 0 {
            return Err(CoreError::CorruptBatch(format!(
                "record batch has {} records but last offset delta {}",
                header.record_count, header.last_offset_delta
            )));
        }
        let batch = &buf[pos..pos + header.size()];
        let find_keyless = keys_required_in.is_some() && !header.is_control();
        let seen = if header.compression() != 0 {
            check_compressed_records(&header, batch, max_batch_bytes, find_keyless)?
        } else {
            check_records(&header, &batch[HEADER_SIZE..], find_keyless)?
        };
        if let (Some(partition), false) = (keys_required_in, seen.keyless.is_empty()) {
            let why = format!("Compacted topic cannot accept message without key in topic partition {partition}");
            return Err(record_errors(seen.keyless.into_iter().map(|index| (index, why.clone())).collect()));
        }
        // As Kafka's LogValidator: the header's max timestamp is the records' largest one
        // (sarama 1.22 sends -1 there); `patched_headers` writes it when it differs.
        header.max_timestamp = seen.max_timestamp;
        pos += header.size();
        headers.push(header);
    }
    Ok(headers)
}

/// Rewrites one validated batch with its records compressed by `codec` instead (Kafka's
/// `compression.type` topic config): records decompressed (within `limit`), compressed again,
/// and a new header with the codec bits, length and CRC to match. Offsets, timestamps and
/// producer fields are kept. `level`: `compression.gzip.level` or `compression.zstd.level`
/// (None: the codec's default).
pub fn recompress(batch: &[u8], header: &BatchHeader, codec: i16, level: Option<i32>, limit: usize) -> Result<Vec<u8>> {
    let records = compression::decompress(header.compression(), &batch[HEADER_SIZE..header.size()], limit)?;
    let body = compression::compress(codec, &records, level)?;
    let mut out = Vec::with_capacity(HEADER_SIZE + body.len());
    out.extend_from_slice(&batch[..HEADER_SIZE]);
    out.extend_from_slice(&body);
    let length = (out.len() - LOG_OVERHEAD) as i32;
    out[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    let attributes = (header.attributes & !ATTR_COMPRESSION_MASK) | codec;
    out[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c(&out[OFF_ATTRIBUTES..]);
    out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// What `assign_offsets` did to a run of batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assigned {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    /// Offset of the batch holding `max_timestamp` (for the time index).
    pub offset_of_max_timestamp: i64,
}

/// The header of each batch with offsets assigned (see `assign_offsets`), leaving the records in
/// `buf` untouched, so the log can write patched headers and the producer's bytes side by side.
pub fn patched_headers(
    buf: &[u8],
    headers: &[BatchHeader],
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
) -> (Vec<[u8; HEADER_SIZE]>, Assigned) {
    let mut patched = Vec::with_capacity(headers.len());
    let mut next = base_offset;
    let mut pos = 0;
    let mut max_timestamp = -1;
    let mut offset_of_max_timestamp = base_offset;
    for header in headers {
        let mut head: [u8; HEADER_SIZE] = buf[pos..pos + HEADER_SIZE].try_into().unwrap();
        head[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&next.to_be_bytes());
        head[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
        // LogAppendTime stamps the batch; otherwise the records' own max timestamp, which
        // `validate_produce` put in the header, replaces whatever the producer wrote there.
        let (attributes, batch_max) = match log_append_time {
            Some(now) => (header.attributes | ATTR_LOG_APPEND_TIME, now),
            None => (header.attributes, header.max_timestamp),
        };
        if be_i16(&head, OFF_ATTRIBUTES) != attributes || be_i64(&head, OFF_MAX_TIMESTAMP) != batch_max {
            head[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
            head[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&batch_max.to_be_bytes());
            let crc = crc32c::crc32c_append(crc32c(&head[OFF_ATTRIBUTES..]), &buf[pos + HEADER_SIZE..pos + header.size()]);
            head[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        }
        if batch_max > max_timestamp {
            max_timestamp = batch_max;
            offset_of_max_timestamp = next + header.last_offset_delta as i64;
        }
        next += header.last_offset_delta as i64 + 1;
        pos += header.size();
        patched.push(head);
    }
    (patched, Assigned { base_offset, last_offset: next - 1, max_timestamp, offset_of_max_timestamp })
}

/// Rewrites already-validated batches in place: consecutive offsets from `base_offset`, the
/// partition leader epoch, and (when `log_append_time` is set) LogAppendTime timestamps, which
/// changes the CRC-covered part, so the CRC is recomputed then.
pub fn assign_offsets(
    buf: &mut [u8],
    headers: &[BatchHeader],
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
) -> Assigned {
    let (patched, assigned) = patched_headers(buf, headers, base_offset, leader_epoch, log_append_time);
    let mut pos = 0;
    for (head, header) in patched.iter().zip(headers) {
        buf[pos..pos + HEADER_SIZE].copy_from_slice(head);
        pos += header.size();
    }
    assigned
}

/// A transaction marker: the control record of a COMMIT or ABORT control batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

const CONTROL_ABORT: i16 = 0;
const CONTROL_COMMIT: i16 = 1;

/// Appends a zig-zag varlong (a record's varint fields).
pub(crate) fn push_varlong(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// The marker a control batch carries (its first record's key: version, type; value:
/// version, coordinator epoch), None for a control batch of another type or one unreadable.
/// Control batches are never compressed.
pub fn marker_of(header: &BatchHeader, batch: &[u8]) -> Option<Marker> {
    if !header.is_control() || header.record_count < 1 || batch.len() < header.size() {
        return None;
    }
    let records = &batch[HEADER_SIZE..header.size()];
    let record = parse_records(records, 1).ok()?.into_iter().next()?;
    let (ks, ke) = record.key?;
    let key = &records[ks..ke];
    if key.len() < 4 {
        return None;
    }
    let kind = i16::from_be_bytes([key[2], key[3]]);
    let coordinator_epoch = record
        .value
        .map(|(vs, ve)| &records[vs..ve])
        .filter(|v| v.len() >= 6)
        .map_or(0, |v| i32::from_be_bytes([v[2], v[3], v[4], v[5]]));
    match kind {
        CONTROL_COMMIT => Some(Marker { commit: true, coordinator_epoch }),
        CONTROL_ABORT => Some(Marker { commit: false, coordinator_epoch }),
        _ => None,
    }
}

/// A COMMIT or ABORT control batch of one record (Kafka's EndTransactionMarker), offset 0:
/// the log assigns its offset like any other batch's.
pub fn build_marker_batch(producer_id: i64, producer_epoch: i16, marker: Marker, timestamp: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&(if marker.commit { CONTROL_COMMIT } else { CONTROL_ABORT }).to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let mut body = vec![0u8]; // record attributes
    push_varlong(0, &mut body); // timestamp delta
    push_varlong(0, &mut body); // offset delta
    push_varlong(key.len() as i64, &mut body);
    body.extend_from_slice(&key);
    push_varlong(value.len() as i64, &mut body);
    body.extend_from_slice(&value);
    push_varlong(0, &mut body); // headers
    let mut records = Vec::with_capacity(body.len() + 2);
    push_varlong(body.len() as i64, &mut records);
    records.extend_from_slice(&body);
    let mut b = Vec::with_capacity(HEADER_SIZE + records.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_SIZE - LOG_OVERHEAD + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    b.extend_from_slice(&(ATTR_TRANSACTIONAL | ATTR_CONTROL).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c(&b[OFF_ATTRIBUTES..]);
    b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// An uncompressed batch of `values` with no keys or headers, no producer id, every record at
/// `timestamp` (the tests' batches and the load generator's, bench/loadgen.rs).
pub fn build_batch(base_offset: i64, timestamp: i64, values: &[&[u8]]) -> Vec<u8> {
    let mut records = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let mut body = vec![0u8]; // attributes
        push_varlong(0, &mut body); // timestamp delta
        push_varlong(i as i64, &mut body); // offset delta
        push_varlong(-1, &mut body); // key: null
        push_varlong(value.len() as i64, &mut body);
        body.extend_from_slice(value);
        push_varlong(0, &mut body); // no headers
        push_varlong(body.len() as i64, &mut records);
        records.extend_from_slice(&body);
    }
    let mut b = Vec::new();
    b.extend_from_slice(&base_offset.to_be_bytes());
    b.extend_from_slice(&((HEADER_SIZE - LOG_OVERHEAD + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(values.len() as i32 - 1).to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&(values.len() as i32).to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c(&b[OFF_ATTRIBUTES..]);
    b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub use super::build_batch;

    #[test]
    fn the_max_timestamp_is_the_records_largest_whatever_the_producer_wrote() {
        // sarama 1.22 writes -1 as the batch's max timestamp; Kafka recomputes it
        let mut sent = build_batch(0, 1000, &[b"a", b"b"]);
        sent[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&(-1i64).to_be_bytes());
        let crc = crc32c(&sent[OFF_ATTRIBUTES..]);
        sent[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        let headers = validate_produce(&sent, 1 << 20).unwrap();
        assert_eq!(headers[0].max_timestamp, 1000);
        let assigned = assign_offsets(&mut sent, &headers, 5, 0, None);
        assert_eq!(assigned.max_timestamp, 1000);
        let stored = validate_batch(&sent).unwrap();
        assert_eq!((stored.max_timestamp, stored.base_offset), (1000, 5), "header rewritten, CRC still valid");
    }

    #[test]
    fn crc32c_known_vector() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn validates_and_assigns() {
        let mut run = build_batch(0, 1000, &[b"a", b"bb"]);
        run.extend(build_batch(0, 2000, &[b"c"]));
        let headers = validate_produce(&run, 1 << 20).unwrap();
        assert_eq!(headers.len(), 2);
        let assigned = assign_offsets(&mut run, &headers, 10, 3, None);
        assert_eq!((assigned.base_offset, assigned.last_offset), (10, 12));
        assert_eq!((assigned.max_timestamp, assigned.offset_of_max_timestamp), (2000, 12));
        let second = validate_batch(&run[headers[0].size()..]).unwrap();
        assert_eq!(second.base_offset, 12);
        assert_eq!(second.partition_leader_epoch, 3);
    }

    #[test]
    fn patched_headers_match_assign_offsets() {
        let mut run = build_batch(0, 1000, &[b"a", b"bb"]);
        run.extend(build_batch(0, 2000, &[b"c"]));
        let headers = validate_produce(&run, 1 << 20).unwrap();
        for append_time in [None, Some(777)] {
            let (patched, assigned) = patched_headers(&run, &headers, 40, 2, append_time);
            let mut whole = run.clone();
            assert_eq!(assign_offsets(&mut whole, &headers, 40, 2, append_time), assigned);
            let mut joined = Vec::new();
            let mut pos = 0;
            for (head, h) in patched.iter().zip(&headers) {
                joined.extend_from_slice(head);
                joined.extend_from_slice(&run[pos + HEADER_SIZE..pos + h.size()]);
                pos += h.size();
            }
            assert_eq!(joined, whole);
        }
    }

    #[test]
    fn recompress_changes_codec_and_keeps_records() {
        let plain = build_batch(7, 1000, &[b"aaaaaaaaaaaaaaaaaaaaaaaa", b"bbbbbbbbbbbbbbbbbbbbbbbb"]);
        let header = validate_batch(&plain).unwrap();
        let zstd = recompress(&plain, &header, compression::ZSTD, None, 1 << 20).unwrap();
        let zheader = validate_produce(&zstd, 1 << 20).unwrap()[0];
        assert_eq!(zheader.compression(), compression::ZSTD);
        assert_eq!((zheader.base_offset, zheader.record_count, zheader.max_timestamp), (7, 2, 1000));
        let back = recompress(&zstd, &zheader, compression::NONE, None, 1 << 20).unwrap();
        assert_eq!(back, plain);
    }

    #[test]
    fn log_append_time_keeps_crc_valid() {
        let mut run = build_batch(0, 1000, &[b"a"]);
        let headers = validate_produce(&run, 1 << 20).unwrap();
        assign_offsets(&mut run, &headers, 0, 0, Some(5555));
        let header = validate_batch(&run).unwrap();
        assert_eq!(header.max_timestamp, 5555);
        assert_ne!(header.attributes & ATTR_LOG_APPEND_TIME, 0);
    }

    #[test]
    fn refuses_corruption() {
        let good = build_batch(0, 1000, &[b"hello"]);
        for cut in 0..good.len() {
            assert!(validate_produce(&good[..cut], 1 << 20).is_err(), "cut at {cut}");
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            // base offset and leader epoch are outside the CRC, so flips there are legal.
            if (OFF_BASE_OFFSET..OFF_LENGTH).contains(&i) || (OFF_LEADER_EPOCH..OFF_MAGIC).contains(&i) {
                continue;
            }
            assert!(validate_produce(&bad, 1 << 20).is_err(), "flip at {i}");
        }
        assert!(matches!(validate_produce(&good, 10), Err(CoreError::BatchTooLarge(_))));
    }
}
