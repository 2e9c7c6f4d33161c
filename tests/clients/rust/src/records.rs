//! Records the checks send (keys, values, headers, timestamps, nulls), and reading a
//! partition back to its high watermark for comparison.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, TimeZone, Utc};
use rskafka::client::partition::PartitionClient;
use rskafka::record::{Record, RecordAndOffset};

use crate::report::ensure;

/// Most fetches a read-back may take before it gives up (each waits at most `FETCH_WAIT_MS`).
const MAX_FETCHES: usize = 50;
const FETCH_WAIT_MS: i32 = 200;
const FETCH_BYTES: std::ops::Range<i32> = 1..4_000_000;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970");
    since_epoch.as_millis() as i64
}

pub fn timestamp(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .expect("timestamp in range")
}

/// A record with the given parts; headers are (name, value) pairs.
pub fn record(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, &[u8])],
    ts_ms: i64,
) -> Record {
    let headers: BTreeMap<String, Vec<u8>> = headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_vec()))
        .collect();
    Record {
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        headers,
        timestamp: timestamp(ts_ms),
    }
}

/// A varied batch: headers (one with an empty value), a null key, an empty value, a null
/// value (tombstone), a large compressible value, timestamps 1 ms apart from `base_ms`.
pub fn varied_batch(tag: &str, base_ms: i64) -> Vec<Record> {
    let large_value = tag.repeat(5_000).into_bytes();
    vec![
        record(
            Some(b"key-0"),
            Some(tag.as_bytes()),
            &[("h1", b"v1"), ("empty", b"")],
            base_ms,
        ),
        record(None, Some(b"value with null key"), &[], base_ms + 1),
        record(
            Some(b"key-2"),
            Some(b""),
            &[("h", b"\x00\xff binary")],
            base_ms + 2,
        ),
        record(Some(b"key-3"), None, &[], base_ms + 3),
        record(
            Some(b"key-4"),
            Some(&large_value),
            &[("size", b"large")],
            base_ms + 4,
        ),
    ]
}

/// Fetches from `start` until `end` (exclusive), in as many fetches as that takes.
pub async fn read_range(
    partition: &PartitionClient,
    start: i64,
    end: i64,
) -> Result<Vec<RecordAndOffset>, String> {
    let mut read: Vec<RecordAndOffset> = Vec::new();
    let mut next_offset = start;
    for _ in 0..MAX_FETCHES {
        if next_offset >= end {
            return Ok(read);
        }
        let (batch, _high_watermark) = partition
            .fetch_records(next_offset, FETCH_BYTES, FETCH_WAIT_MS)
            .await
            .map_err(|e| format!("fetch_records(offset={next_offset}): {e}"))?;
        if let Some(last) = batch.last() {
            next_offset = last.offset + 1;
        }
        read.extend(batch.into_iter().filter(|r| r.offset < end));
    }
    Err(format!(
        "read {start}..{end}: reached only offset {next_offset} after {MAX_FETCHES} fetches"
    ))
}

/// Checks that `read` holds exactly `sent`, at `offsets`, in order, field by field.
pub fn compare(sent: &[Record], offsets: &[i64], read: &[RecordAndOffset]) -> Result<(), String> {
    ensure(read.len() == sent.len(), || {
        format!(
            "read {} records, sent {}: offsets read {:?}",
            read.len(),
            sent.len(),
            offsets_of(read)
        )
    })?;
    for ((want, want_offset), got) in sent.iter().zip(offsets).zip(read) {
        ensure(got.offset == *want_offset, || {
            format!(
                "offset {} read where {want_offset} was expected",
                got.offset
            )
        })?;
        compare_record(want, &got.record).map_err(|e| format!("offset {want_offset}: {e}"))?;
    }
    Ok(())
}

fn compare_record(want: &Record, got: &Record) -> Result<(), String> {
    ensure(got.key == want.key, || {
        format!(
            "key {:?} != sent {:?}",
            shorten(&got.key),
            shorten(&want.key)
        )
    })?;
    ensure(got.value == want.value, || {
        format!(
            "value {:?} != sent {:?}",
            shorten(&got.value),
            shorten(&want.value)
        )
    })?;
    ensure(got.headers == want.headers, || {
        format!("headers {:?} != sent {:?}", got.headers, want.headers)
    })?;
    ensure(got.timestamp == want.timestamp, || {
        format!(
            "timestamp {} != sent {}",
            got.timestamp.timestamp_millis(),
            want.timestamp.timestamp_millis()
        )
    })
}

pub fn offsets_of(read: &[RecordAndOffset]) -> Vec<i64> {
    read.iter().map(|r| r.offset).collect()
}

/// At most 40 bytes of a key or value, for messages.
fn shorten(bytes: &Option<Vec<u8>>) -> Option<String> {
    bytes
        .as_ref()
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(40)]).into_owned())
}
