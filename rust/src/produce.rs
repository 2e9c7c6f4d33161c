//! Produce (API 0) handled in one call per request: decode the frame, append each partition's
//! batches, encode the response. Python's per-partition work (decoding, the handler, response
//! objects: ~25 µs of a ~35 µs append) is what this replaces; the rules are those of
//! `python/fastlog/handlers/produce.py`, which still answers what this path declines.
//!
//! A frame this path cannot decode is declined (`None`) before anything is appended, so the
//! Python codec can answer it with its precise error. Partitions whose `flush.messages` is
//! reached are not fsynced here: `Produced::flush` does it, which the server runs on a worker
//! thread so that the fsync does not hold its event loop, before the response is encoded.

use crate::batch;
use crate::error::{CoreError, Result as CoreResult};
use crate::log::{FlushUpTo, PartitionLog};
use crate::wire::generated::{produce_request, produce_response, request_header, response_header};
use crate::wire::{Reader, Writer};

pub const API_KEY: i16 = 0;
const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const NOT_ENOUGH_REPLICAS: i16 = 19;
const INVALID_REQUIRED_ACKS: i16 = 21;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;

/// What this broker is for a partition, as the replica manager last said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub leader_epoch: i32,
    pub kind: RoleKind,
    /// The ISR is smaller than `min.insync.replicas`: acks=all is refused (NOT_ENOUGH_REPLICAS).
    pub isr_short: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    /// The only replica: the high watermark follows the log end.
    Alone,
    /// The leader of replicas: the replica manager moves the high watermark as followers fetch.
    Leader,
    /// A follower, or not a replica at all: producers are sent to the leader.
    NotLeader,
}

impl Role {
    pub const ALONE: Role = Role { leader_epoch: 0, kind: RoleKind::Alone, isr_short: false };
}

/// Where the partitions' logs are.
pub trait Partitions {
    /// Runs `f` on the log of `topic`-`index`; None when this broker has no such partition.
    fn with_log<T>(&self, topic: &str, index: i32, f: impl FnOnce(&mut PartitionLog) -> CoreResult<T>) -> Option<CoreResult<T>>;

    /// Whether another broker of the cluster hosts `topic`-`index` (then the client is sent
    /// there with NOT_LEADER_OR_FOLLOWER rather than told the partition does not exist).
    fn hosted_elsewhere(&self, _topic: &str, _index: i32) -> bool {
        false
    }

    /// This broker's role for `topic`-`index`; `default` where none was set (a single node).
    fn role(&self, _topic: &str, _index: i32, default: Role) -> Role {
        default
    }
}

/// One partition's result, as it goes into the response.
#[derive(Debug)]
struct PartitionResult {
    index: i32,
    error_code: i16,
    base_offset: i64,
    log_append_time: i64,
    log_start_offset: i64,
    message: Option<String>,
    /// (index of the record in its batch, why) of records refused one by one (KIP-467).
    record_errors: Vec<(i32, String)>,
}

impl PartitionResult {
    fn error(index: i32, error_code: i16, message: Option<String>) -> Self {
        PartitionResult {
            index,
            error_code,
            base_offset: -1,
            log_append_time: -1,
            log_start_offset: -1,
            message,
            record_errors: Vec::new(),
        }
    }

    fn refusal(index: i32, error: CoreError) -> Self {
        let mut result = Self::error(index, error.kafka_error_code(), Some(error.to_string()));
        if let CoreError::RecordErrors(_, records) = error {
            result.record_errors = records;
        }
        result
    }
}

/// A Produce request whose batches are appended: what it did, for the layers that keep
/// metrics, wake parked fetches and log, and what its response needs.
#[derive(Debug, Default)]
pub struct Produced {
    correlation_id: i32,
    version: i16,
    acks: i16,
    /// Per topic of the request, in order: its name and its partitions' results.
    results: Vec<(String, Vec<PartitionResult>)>,
    /// (topic position, partition position) in `results` of the partitions to fsync.
    to_flush: Vec<(usize, usize)>,
    /// Partitions that got records.
    pub appended: Vec<(String, i32)>,
    /// Partitions led with followers that got records, with the offset after the last one:
    /// acks=all waits until the high watermark reaches it.
    pub awaiting_replicas: Vec<(String, i32, i64)>,
    /// The request's timeout_ms (how long acks=all may wait for the followers).
    pub timeout_ms: i32,
    /// Per topic: (name, records appended, bytes appended).
    pub per_topic: Vec<(String, i64, u64)>,
    /// Partitions whose batches were refused: (topic, partition, Kafka error code, why).
    pub refused: Vec<(String, i32, i16, String)>,
}

/// The request's API key and version, from the first four bytes of a frame.
pub fn api_key_and_version(frame: &[u8]) -> Option<(i16, i16)> {
    let mut r = Reader::new(frame);
    Some((r.i16().ok()?, r.i16().ok()?))
}

/// A Produce frame of a version in `versions`, decoded (its records borrowed from the frame);
/// None for anything this path leaves to the generic codec.
fn decode(frame: &[u8], versions: (i16, i16)) -> Option<(request_header::RequestHeader<'_>, produce_request::ProduceRequest<'_>, i16)> {
    let (api_key, version) = api_key_and_version(frame)?;
    if api_key != API_KEY || version < versions.0 || version > versions.1 {
        return None;
    }
    let mut r = Reader::new(frame);
    let header_version = if version >= produce_request::FLEXIBLE_FROM { 2 } else { 1 };
    let header = request_header::RequestHeader::read(&mut r, header_version).ok()?;
    let request = produce_request::ProduceRequest::read(&mut r, version).ok()?;
    if r.remaining() != 0 {
        // Kafka ignores bytes after the last field; the generic path does too, and counts
        // and logs them per connection, which this path cannot.
        return None;
    }
    if request.topic_data.iter().flat_map(|t| &t.partition_data).any(|p| is_legacy_format(p.records)) {
        return None; // message formats v0/v1: the generic path converts them to batches v2
    }
    Some((header, request, version))
}

/// The topics a Produce frame writes to (for the authorizer), None when `handle` would decline it.
pub fn topic_names(frame: &[u8], versions: (i16, i16)) -> Option<Vec<String>> {
    let (_, request, _) = decode(frame, versions)?;
    Some(request.topic_data.iter().map(|t| t.name.to_string()).collect())
}

/// A transactional Produce's transactional id and its transactional batches: (topic,
/// partition, producer id, producer epoch) of each partition's first batch. None when the
/// frame is declined or carries no transactional id.
pub fn transactional_writes(frame: &[u8], versions: (i16, i16)) -> Option<(String, Vec<(String, i32, i64, i16)>)> {
    peek_transactional_id(frame)?; // most frames have none: no second decode of them
    let (_, request, _) = decode(frame, versions)?;
    let id = request.transactional_id?;
    let mut writes = Vec::new();
    for topic in &request.topic_data {
        for p in &topic.partition_data {
            let Some(header) = p.records.and_then(|r| batch::parse_header(r).ok()) else { continue };
            if header.is_transactional() {
                writes.push((topic.name.to_string(), p.index, header.producer_id, header.producer_epoch));
            }
        }
    }
    Some((id.to_string(), writes))
}

/// The transactional id of a Produce frame (v3+), read without decoding the rest.
fn peek_transactional_id(frame: &[u8]) -> Option<&str> {
    let (api_key, version) = api_key_and_version(frame)?;
    if api_key != API_KEY || version < 3 {
        return None;
    }
    let mut r = Reader::new(frame);
    let flexible = version >= produce_request::FLEXIBLE_FROM;
    request_header::RequestHeader::read(&mut r, if flexible { 2 } else { 1 }).ok()?;
    r.nullable_string(flexible).ok()?
}

/// Handles one Produce frame (without its size prefix); None declines it (not Produce, a
/// version outside `versions`, or undecodable) before anything is appended. The partitions of
/// `denied` topics (the ACLs do not let the client write them) get TOPIC_AUTHORIZATION_FAILED.
pub fn handle(
    frame: &[u8],
    versions: (i16, i16),
    partitions: &impl Partitions,
    leader_epoch: i32,
    now_ms: i64,
    denied: &[String],
) -> Option<Produced> {
    handle_refusing(frame, versions, partitions, leader_epoch, now_ms, denied, &[])
}

/// `handle`, with partitions refused beforehand: (topic, partition, Kafka error code), e.g. a
/// transaction's write to a partition its coordinator has not added (KIP-890).
pub fn handle_refusing(
    frame: &[u8],
    versions: (i16, i16),
    partitions: &impl Partitions,
    leader_epoch: i32,
    now_ms: i64,
    denied: &[String],
    refused_partitions: &[(String, i32, i16)],
) -> Option<Produced> {
    let (header, request, version) = decode(frame, versions)?;
    let mut produced = Produced {
        correlation_id: header.correlation_id,
        version,
        acks: request.acks,
        timeout_ms: request.timeout_ms,
        ..Default::default()
    };
    for topic in &request.topic_data {
        let results = if denied.iter().any(|name| name == topic.name) {
            let refused = topic.partition_data.iter().map(|p| (topic.name.to_string(), p.index, TOPIC_AUTHORIZATION_FAILED, String::new()));
            produced.refused.extend(refused);
            topic.partition_data.iter().map(|p| PartitionResult::error(p.index, TOPIC_AUTHORIZATION_FAILED, None)).collect()
        } else {
            produced.append_topic(topic, partitions, leader_epoch, now_ms, refused_partitions)
        };
        produced.results.push((topic.name.to_string(), results));
    }
    Some(produced)
}

/// Whether a partition's records are a legacy message set (magic 0 or 1).
fn is_legacy_format(records: Option<&[u8]>) -> bool {
    records.and_then(|r| r.get(batch::OFF_MAGIC)).is_some_and(|magic| *magic < batch::MAGIC_V2 as u8)
}

impl Produced {
    /// Whether some partition waits for `flush` before the response may be sent.
    pub fn needs_flush(&self) -> bool {
        !self.to_flush.is_empty()
    }

    fn append_topic(
        &mut self,
        topic: &produce_request::TopicProduceData<'_>,
        partitions: &impl Partitions,
        leader_epoch: i32,
        now_ms: i64,
        refused_partitions: &[(String, i32, i16)],
    ) -> Vec<PartitionResult> {
        let (mut records, mut bytes) = (0, 0);
        let mut results = Vec::with_capacity(topic.partition_data.len());
        for p in &topic.partition_data {
            if !matches!(self.acks, -1..=1) {
                results.push(PartitionResult::error(p.index, INVALID_REQUIRED_ACKS, None));
                continue;
            }
            if let Some((_, _, code)) = refused_partitions.iter().find(|(t, i, _)| t == topic.name && *i == p.index) {
                self.refused.push((topic.name.to_string(), p.index, *code, String::new()));
                results.push(PartitionResult::error(p.index, *code, None));
                continue;
            }
            let data = p.records.unwrap_or_default();
            let role = partitions.role(topic.name, p.index, Role { leader_epoch, ..Role::ALONE });
            match append(partitions, topic.name, p.index, data, role, self.acks, now_ms) {
                Ok((result, count, flush_due, next_offset)) => {
                    records += count;
                    bytes += data.len() as u64;
                    self.appended.push((topic.name.to_string(), p.index));
                    if role.kind == RoleKind::Leader && self.acks == -1 {
                        self.awaiting_replicas.push((topic.name.to_string(), p.index, next_offset));
                    }
                    if flush_due {
                        self.to_flush.push((self.results.len(), results.len()));
                    }
                    results.push(result);
                }
                Err(result) => {
                    let why = result.message.clone().unwrap_or_default();
                    self.refused.push((topic.name.to_string(), p.index, result.error_code, why));
                    results.push(result);
                }
            }
        }
        if records > 0 {
            self.per_topic.push((topic.name.to_string(), records, bytes));
        }
        results
    }

    /// Fsyncs the partitions whose `flush.messages` the appends reached; a partition whose
    /// fsync fails is answered with KAFKA_STORAGE_ERROR.
    pub fn flush(&mut self, partitions: &impl Partitions, now_ms: i64) {
        for (t, p) in std::mem::take(&mut self.to_flush) {
            let (topic, results) = &mut self.results[t];
            let result = &mut results[p];
            let Err(e) = flush_unheld(partitions, topic, result.index, now_ms) else { continue };
            *result = PartitionResult::error(result.index, e.kafka_error_code(), Some(e.to_string()));
            self.refused.push((topic.clone(), result.index, result.error_code, e.to_string()));
        }
    }

    /// Replaces a partition's answer with an error (acks=all that timed out, or whose
    /// leadership moved while it waited).
    pub fn fail(&mut self, topic: &str, index: i32, error_code: i16) {
        for (name, results) in &mut self.results {
            if name == topic {
                for result in results.iter_mut().filter(|r| r.index == index && r.error_code == 0) {
                    *result = PartitionResult::error(index, error_code, None);
                }
            }
        }
    }

    /// The response frame (size prefix, header, body); None for acks=0.
    pub fn response(&self) -> Option<Vec<u8>> {
        use produce_response::{BatchIndexAndErrorMessage, PartitionProduceResponse, ProduceResponse, TopicProduceResponse};
        if self.acks == 0 {
            return None;
        }
        let responses = self
            .results
            .iter()
            .map(|(name, partitions)| TopicProduceResponse {
                name,
                partition_responses: partitions
                    .iter()
                    .map(|p| PartitionProduceResponse {
                        index: p.index,
                        error_code: p.error_code,
                        base_offset: p.base_offset,
                        log_append_time_ms: p.log_append_time,
                        log_start_offset: p.log_start_offset,
                        error_message: p.message.as_deref(),
                        record_errors: p
                            .record_errors
                            .iter()
                            .map(|(batch_index, why)| BatchIndexAndErrorMessage {
                                batch_index: *batch_index,
                                batch_index_error_message: Some(why),
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
            })
            .collect();
        let body = ProduceResponse { responses, throttle_time_ms: 0, ..Default::default() };
        let mut w = Writer::with_capacity(64 + 48 * self.results.iter().map(|(_, r)| r.len()).sum::<usize>());
        w.i32(0); // the size, filled in below
        let header_version = if self.version >= produce_response::FLEXIBLE_FROM { 1 } else { 0 };
        response_header::ResponseHeader { correlation_id: self.correlation_id }.write(&mut w, header_version).ok()?;
        body.write(&mut w, self.version).ok()?;
        let size = (w.buf.len() - 4) as i32;
        w.buf[..4].copy_from_slice(&size.to_be_bytes());
        Some(w.buf)
    }
}

/// Flushes a partition in three steps (see `log::PlannedFlush`), holding its log only to plan
/// and to finish: the fsyncs between run without it. A partition gone meanwhile ends it.
fn flush_unheld(partitions: &impl Partitions, topic: &str, index: i32, now_ms: i64) -> Result<(), CoreError> {
    let with_log = |step: &mut dyn FnMut(&mut PartitionLog)| {
        partitions.with_log(topic, index, |log| {
            step(log);
            Ok(())
        });
    };
    crate::flusher::flush_in_steps(with_log, FlushUpTo::LogEnd, now_ms)
}

/// Appends one partition's batches: (its result, records appended, whether its flush is due,
/// the log end after them) or the refusal.
fn append(
    partitions: &impl Partitions,
    topic: &str,
    index: i32,
    data: &[u8],
    role: Role,
    acks: i16,
    now_ms: i64,
) -> Result<(PartitionResult, i64, bool, i64), PartitionResult> {
    if data.is_empty() {
        let why = "produce request without record batches".to_string();
        return Err(PartitionResult::error(index, CORRUPT_MESSAGE, Some(why)));
    }
    match role.kind {
        RoleKind::NotLeader => return Err(PartitionResult::error(index, NOT_LEADER_OR_FOLLOWER, None)),
        _ if acks == -1 && role.isr_short => {
            let why = "the partition has fewer in-sync replicas than min.insync.replicas".to_string();
            return Err(PartitionResult::error(index, NOT_ENOUGH_REPLICAS, Some(why)));
        }
        _ => {}
    }
    let appended = partitions.with_log(topic, index, |log| {
        let info = log.append_unflushed(data, role.leader_epoch, now_ms)?;
        if role.kind == RoleKind::Alone {
            // One replica: the leader is the whole ISR, so the high watermark follows the log end.
            log.high_watermark = log.log_end_offset();
        }
        let next_offset = info.last_offset + 1;
        Ok((info, log.log_start_offset, log.flush_due(), next_offset))
    });
    match appended {
        None if partitions.hosted_elsewhere(topic, index) => Err(PartitionResult::error(index, NOT_LEADER_OR_FOLLOWER, None)),
        None => Err(PartitionResult::error(index, UNKNOWN_TOPIC_OR_PARTITION, None)),
        Some(Err(e)) => Err(PartitionResult::refusal(index, e)),
        Some(Ok((info, log_start_offset, flush_due, next_offset))) => Ok((
            PartitionResult {
                index,
                error_code: 0,
                base_offset: info.base_offset,
                log_append_time: info.log_append_time,
                log_start_offset,
                message: None,
                record_errors: Vec::new(),
            },
            info.record_count,
            flush_due,
            next_offset,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::build_batch;
    use crate::log::LogConfig;
    use produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData};
    use std::cell::RefCell;
    use std::collections::HashMap;

    struct Logs(RefCell<HashMap<(String, i32), PartitionLog>>);

    impl Partitions for Logs {
        fn with_log<T>(&self, topic: &str, index: i32, f: impl FnOnce(&mut PartitionLog) -> Result<T, CoreError>) -> Option<Result<T, CoreError>> {
            self.0.borrow_mut().get_mut(&(topic.to_string(), index)).map(f)
        }
    }

    fn logs(dir: &std::path::Path) -> Logs {
        logs_with(dir, LogConfig::default())
    }

    fn logs_with(dir: &std::path::Path, config: LogConfig) -> Logs {
        let log = PartitionLog::open(&dir.join("t-0"), config, 0, 0, 0).unwrap();
        Logs(RefCell::new(HashMap::from([(("t".to_string(), 0), log)])))
    }

    fn frame(version: i16, acks: i16, parts: &[(&str, i32, &[u8])]) -> Vec<u8> {
        let request = ProduceRequest {
            acks,
            timeout_ms: 1000,
            topic_data: parts
                .iter()
                .map(|(name, index, records)| TopicProduceData {
                    name,
                    partition_data: vec![PartitionProduceData { index: *index, records: Some(records) }],
                })
                .collect(),
            ..Default::default()
        };
        let header = request_header::RequestHeader { request_api_version: version, correlation_id: 42, ..Default::default() };
        let mut w = Writer::default();
        header.write(&mut w, if version >= produce_request::FLEXIBLE_FROM { 2 } else { 1 }).unwrap();
        request.write(&mut w, version).unwrap();
        w.buf
    }

    fn response(frame: &[u8], version: i16) -> Vec<(i32, i16, i64)> {
        let mut r = Reader::new(&frame[4..]);
        let header = response_header::ResponseHeader::read(&mut r, if version >= 9 { 1 } else { 0 }).unwrap();
        assert_eq!(header.correlation_id, 42);
        let body = produce_response::ProduceResponse::read(&mut r, version).unwrap();
        assert_eq!(r.remaining(), 0);
        body.responses.iter().flat_map(|t| t.partition_responses.iter().map(|p| (p.index, p.error_code, p.base_offset))).collect()
    }

    #[test]
    fn appends_and_answers_in_old_and_flexible_versions() {
        let dir = tempfile::tempdir().unwrap();
        let logs = logs(dir.path());
        let batch = build_batch(0, 1000, &[b"a", b"b"]);
        for (i, version) in [3i16, 8, 9, 11].into_iter().enumerate() {
            let out = handle(&frame(version, 1, &[("t", 0, &batch)]), (0, 11), &logs, 0, 0, &[]).unwrap();
            assert_eq!(response(&out.response().unwrap(), version), vec![(0, 0, 2 * i as i64)]);
            assert_eq!(out.appended, vec![("t".to_string(), 0)]);
            assert_eq!(out.per_topic, vec![("t".to_string(), 2, batch.len() as u64)]);
        }
        let log = &logs.0.borrow()[&("t".to_string(), 0)];
        assert_eq!((log.log_end_offset(), log.high_watermark), (8, 8));
    }

    #[test]
    fn partition_errors_are_answered_and_nothing_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let logs = logs(dir.path());
        let mut corrupt = build_batch(0, 1000, &[b"a"]);
        *corrupt.last_mut().unwrap() ^= 0xff;
        let out = handle(&frame(9, 1, &[("t", 0, &corrupt), ("t", 1, b"x"), ("u", 0, b"x"), ("t", 0, b"")]), (0, 11), &logs, 0, 0, &[]).unwrap();
        assert_eq!(response(&out.response().unwrap(), 9), vec![(0, 2, -1), (1, 3, -1), (0, 3, -1), (0, 2, -1)]);
        assert!(out.appended.is_empty() && out.per_topic.is_empty());
        assert_eq!(out.refused.len(), 4);
        let out = handle(&frame(9, 7, &[("t", 0, &build_batch(0, 1000, &[b"a"]))]), (0, 11), &logs, 0, 0, &[]).unwrap();
        assert_eq!(response(&out.response().unwrap(), 9), vec![(0, 21, -1)]); // INVALID_REQUIRED_ACKS
        assert_eq!(logs.0.borrow()[&("t".to_string(), 0)].log_end_offset(), 0);
    }

    #[test]
    fn transactional_writes_are_found_and_unverified_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let logs = logs(dir.path());
        let mut txn = build_batch(0, 1000, &[b"a"]);
        txn[21..23].copy_from_slice(&batch::ATTR_TRANSACTIONAL.to_be_bytes());
        txn[43..51].copy_from_slice(&7i64.to_be_bytes());
        txn[51..53].copy_from_slice(&0i16.to_be_bytes());
        txn[53..57].copy_from_slice(&0i32.to_be_bytes());
        let crc = batch::crc32c(&txn[21..]);
        txn[17..21].copy_from_slice(&crc.to_be_bytes());
        for version in [3, 9, 11] {
            let plain = frame(version, 1, &[("t", 0, &txn)]);
            assert_eq!(transactional_writes(&plain, (0, 11)), None, "no transactional id: not looked at");
            let mut header_and_body = frame(version, 1, &[("t", 0, &txn), ("t", 1, &build_batch(0, 1000, &[b"b"]))]);
            // The same request with a transactional id: rebuilt through the codec.
            let mut r = Reader::new(&header_and_body);
            let flexible = version >= produce_request::FLEXIBLE_FROM;
            let header = request_header::RequestHeader::read(&mut r, if flexible { 2 } else { 1 }).unwrap();
            let mut request = produce_request::ProduceRequest::read(&mut r, version).unwrap();
            request.transactional_id = Some("tx");
            let mut w = Writer::default();
            header.write(&mut w, if flexible { 2 } else { 1 }).unwrap();
            request.write(&mut w, version).unwrap();
            header_and_body = w.buf;
            let (id, writes) = transactional_writes(&header_and_body, (0, 11)).unwrap();
            assert_eq!((id.as_str(), writes), ("tx", vec![("t".to_string(), 0, 7, 0)]));
            let refused = [("t".to_string(), 0, 48)];
            let out = handle_refusing(&header_and_body, (0, 11), &logs, 0, 0, &[], &refused).unwrap();
            let answers = response(&out.response().unwrap(), version);
            assert_eq!(answers[0], (0, 48, -1));
            assert_eq!(answers[1].1, UNKNOWN_TOPIC_OR_PARTITION, "the other partition is answered as usual");
        }
        assert_eq!(logs.0.borrow()[&("t".to_string(), 0)].log_end_offset(), 0, "the refused partition got nothing");
    }

    #[test]
    fn a_denied_topic_is_refused_and_not_appended() {
        let dir = tempfile::tempdir().unwrap();
        let logs = logs(dir.path());
        let batch = build_batch(0, 1000, &[b"a"]);
        let request = frame(9, 1, &[("t", 0, &batch)]);
        assert_eq!(topic_names(&request, (0, 11)), Some(vec!["t".to_string()]));
        let out = handle(&request, (0, 11), &logs, 0, 0, &["t".to_string()]).unwrap();
        assert_eq!(response(&out.response().unwrap(), 9), vec![(0, TOPIC_AUTHORIZATION_FAILED, -1)]);
        assert!(out.appended.is_empty());
        assert_eq!(out.refused, vec![("t".to_string(), 0, TOPIC_AUTHORIZATION_FAILED, String::new())]);
        assert_eq!(logs.0.borrow()[&("t".to_string(), 0)].log_end_offset(), 0);
        let out = handle(&request, (0, 11), &logs, 0, 0, &["u".to_string()]).unwrap();
        assert_eq!(out.appended, vec![("t".to_string(), 0)]);
    }

    #[test]
    fn acks_zero_has_no_response_and_bad_frames_are_declined() {
        let dir = tempfile::tempdir().unwrap();
        let logs = logs(dir.path());
        let good = frame(9, 0, &[("t", 0, &build_batch(0, 1000, &[b"a"]))]);
        for end in 0..good.len() {
            assert!(handle(&good[..end], (0, 11), &logs, 0, 0, &[]).is_none(), "truncated at {end}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(handle(&trailing, (0, 11), &logs, 0, 0, &[]).is_none());
        assert!(handle(&good, (0, 8), &logs, 0, 0, &[]).is_none(), "a version outside the range is declined");
        assert_eq!(logs.0.borrow()[&("t".to_string(), 0)].log_end_offset(), 0);
        let out = handle(&good, (0, 11), &logs, 0, 0, &[]).unwrap();
        assert!(out.response().is_none());
        assert_eq!(logs.0.borrow()[&("t".to_string(), 0)].log_end_offset(), 1);
    }

    struct Led(Logs, Role);

    impl Partitions for Led {
        fn with_log<T>(&self, topic: &str, index: i32, f: impl FnOnce(&mut PartitionLog) -> Result<T, CoreError>) -> Option<Result<T, CoreError>> {
            self.0.with_log(topic, index, f)
        }
        fn role(&self, _topic: &str, _index: i32, _default: Role) -> Role {
            self.1
        }
    }

    #[test]
    fn roles_send_producers_to_the_leader_and_acks_all_waits_for_followers() {
        let dir = tempfile::tempdir().unwrap();
        let batch = build_batch(0, 1000, &[b"a", b"b"]);
        let follower = Led(logs(dir.path()), Role { leader_epoch: 3, kind: RoleKind::NotLeader, isr_short: false });
        let out = handle(&frame(9, -1, &[("t", 0, &batch)]), (0, 11), &follower, 0, 0, &[]).unwrap();
        assert_eq!(response(&out.response().unwrap(), 9), vec![(0, 6, -1)]); // NOT_LEADER_OR_FOLLOWER
        let other = tempfile::tempdir().unwrap();
        let short = Led(logs(other.path()), Role { leader_epoch: 3, kind: RoleKind::Leader, isr_short: true });
        let out = handle(&frame(9, -1, &[("t", 0, &batch)]), (0, 11), &short, 0, 0, &[]).unwrap();
        assert_eq!(response(&out.response().unwrap(), 9), vec![(0, 19, -1)]); // NOT_ENOUGH_REPLICAS
        let out = handle(&frame(9, 1, &[("t", 0, &batch)]), (0, 11), &short, 0, 0, &[]).unwrap();
        assert_eq!(response(&out.response().unwrap(), 9), vec![(0, 0, 0)], "acks=1 needs no ISR");
        let third = tempfile::tempdir().unwrap();
        let leader = Led(logs(third.path()), Role { leader_epoch: 3, kind: RoleKind::Leader, isr_short: false });
        let mut out = handle(&frame(9, -1, &[("t", 0, &batch)]), (0, 11), &leader, 0, 0, &[]).unwrap();
        assert_eq!(out.awaiting_replicas, vec![("t".to_string(), 0, 2)]);
        assert_eq!(out.timeout_ms, 1000);
        let log = &leader.0 .0.borrow()[&("t".to_string(), 0)];
        assert_eq!((log.log_end_offset(), log.high_watermark, log.latest_epoch()), (2, 0, 3), "the followers move the high watermark");
        out.fail("t", 0, 7);
        assert_eq!(response(&out.response().unwrap(), 9), vec![(0, 7, -1)]);
    }

    #[test]
    fn a_due_flush_is_left_to_flush_and_the_response_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let logs = logs_with(dir.path(), LogConfig { flush_messages: 1, ..LogConfig::default() });
        let mut out = handle(&frame(9, -1, &[("t", 0, &build_batch(0, 1000, &[b"a"]))]), (0, 11), &logs, 0, 0, &[]).unwrap();
        assert!(out.needs_flush());
        assert_eq!(logs.0.borrow()[&("t".to_string(), 0)].recovery_point, 0, "no fsync during the append");
        out.flush(&logs, 0);
        assert!(!out.needs_flush());
        assert_eq!(logs.0.borrow()[&("t".to_string(), 0)].recovery_point, 1);
        assert_eq!(response(&out.response().unwrap(), 9), vec![(0, 0, 0)]);
        let other = tempfile::tempdir().unwrap();
        let default_policy = super::tests::logs(other.path());
        let out = handle(&frame(9, 1, &[("t", 0, &build_batch(0, 1000, &[b"b"]))]), (0, 11), &default_policy, 0, 0, &[]);
        assert!(out.is_some_and(|o| !o.needs_flush()), "the default flush policy leaves fsync to the log flusher");
    }
}
