//! The checks: each creates its own topics, drives rskafka against the broker and compares
//! what comes back with what Kafka would answer. Each returns a detail line or why it failed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::StreamExt;
use rskafka::client::consumer::{StartOffset, StreamConsumerBuilder};
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::producer::aggregator::RecordAggregator;
use rskafka::client::producer::BatchProducerBuilder;
use rskafka::client::Client;
use rskafka::record::Record;

use crate::records::{compare, now_ms, offsets_of, read_range, record, timestamp, varied_batch};
use crate::report::{ensure, CheckResult, Outcome};

const ADMIN_TIMEOUT_MS: i32 = 5_000;
const LONG_POLL_DELAY: Duration = Duration::from_millis(300);
/// A long poll must be answered well before this when data arrives.
const LONG_POLL_MAX_WAIT_MS: i32 = 3_000;
const EMPTY_POLL_WAIT_MS: i32 = 400;

/// The connected client and what makes this run's topic names unique.
pub struct Context {
    pub client: Client,
    /// A second client: its own connection, so its requests do not queue behind the first's.
    pub other_client: Client,
    pub run_id: String,
}

impl Context {
    pub fn topic_name(&self, purpose: &str) -> String {
        format!("rskafka-{}-{purpose}", self.run_id)
    }

    async fn create_topic(&self, purpose: &str, partitions: i32) -> Result<String, String> {
        let name = self.topic_name(purpose);
        let controller = self.client.controller_client().map_err(|e| e.to_string())?;
        controller
            .create_topic(name.as_str(), partitions, 1, ADMIN_TIMEOUT_MS)
            .await
            .map_err(|e| format!("create_topic({name}, {partitions} partitions): {e}"))?;
        Ok(name)
    }

    async fn partition(&self, topic: &str, partition: i32) -> Result<PartitionClient, String> {
        self.client
            .partition_client(topic, partition, UnknownTopicHandling::Retry)
            .await
            .map_err(|e| format!("partition_client({topic}, {partition}): {e}"))
    }

    async fn listed_partitions(&self, topic: &str) -> Result<Option<BTreeSet<i32>>, String> {
        let topics = self
            .client
            .list_topics()
            .await
            .map_err(|e| format!("list_topics: {e}"))?;
        Ok(topics
            .into_iter()
            .find(|t| t.name == topic)
            .map(|t| t.partitions))
    }
}

async fn produce(
    partition: &PartitionClient,
    records: &[Record],
    codec: Compression,
) -> Result<Vec<i64>, String> {
    partition
        .produce(records.to_vec(), codec)
        .await
        .map_err(|e| format!("produce {} records ({codec:?}): {e}", records.len()))
}

async fn offset_at(partition: &PartitionClient, at: OffsetAt) -> Result<i64, String> {
    partition
        .get_offset(at)
        .await
        .map_err(|e| format!("get_offset({at:?}): {e}"))
}

fn expect_offsets(got: &[i64], want: std::ops::Range<i64>, what: &str) -> Result<(), String> {
    let want: Vec<i64> = want.collect();
    ensure(got == want.as_slice(), || {
        format!("{what}: offsets {got:?}, expected {want:?}")
    })
}

/// The Kafka error code a failed call carries, if the broker answered with one.
fn protocol_error(error: &ClientError) -> Option<&ProtocolError> {
    match error {
        ClientError::ServerError { protocol_error, .. } => Some(protocol_error),
        _ => None,
    }
}

/// 1. A created topic shows up in `list_topics` with all its partitions.
pub async fn list_topics(ctx: &Context) -> CheckResult {
    let topic = ctx.create_topic("listed", 3).await?;
    let partitions = ctx.listed_partitions(&topic).await?;
    let want: BTreeSet<i32> = (0..3).collect();
    ensure(partitions.as_ref() == Some(&want), || {
        format!("{topic} listed with partitions {partitions:?}, expected {want:?}")
    })?;
    Ok(Outcome::Passed(format!(
        "{topic} listed with partitions {want:?}"
    )))
}

/// A topic named in a Metadata request (v4, allow_auto_topic_creation) is auto-created.
pub async fn auto_create_topic(ctx: &Context) -> CheckResult {
    let topic = ctx.topic_name("auto-created");
    let partition = ctx.partition(&topic, 0).await?;
    let sent = vec![record(Some(b"k"), Some(b"auto"), &[], now_ms())];
    let offsets = produce(&partition, &sent, Compression::NoCompression).await?;
    expect_offsets(&offsets, 0..1, "produce")?;
    compare(&sent, &offsets, &read_range(&partition, 0, 1).await?)?;
    Ok(Outcome::Passed(format!(
        "{topic} auto-created on metadata, produced and read back"
    )))
}

/// 2. Two batches with `codec`, read back whole and from inside the first batch.
pub async fn produce_consume(ctx: &Context, codec: Compression, codec_name: &str) -> CheckResult {
    let topic = ctx.create_topic(&format!("codec-{codec_name}"), 1).await?;
    let partition = ctx.partition(&topic, 0).await?;
    let base_ms = now_ms() - 60_000;
    let first = varied_batch(codec_name, base_ms);
    let second = vec![
        record(
            Some(b"second-0"),
            Some(b"after the first batch"),
            &[("batch", b"2")],
            base_ms + 1000,
        ),
        record(
            Some(b"second-1"),
            Some(codec_name.as_bytes()),
            &[],
            base_ms + 1001,
        ),
    ];
    let first_offsets = produce(&partition, &first, codec).await?;
    expect_offsets(&first_offsets, 0..5, "first batch")?;
    let second_offsets = produce(&partition, &second, codec).await?;
    expect_offsets(&second_offsets, 5..7, "second batch")?;

    let sent: Vec<Record> = first.iter().chain(&second).cloned().collect();
    let offsets: Vec<i64> = (0..7).collect();
    compare(&sent, &offsets, &read_range(&partition, 0, 7).await?)
        .map_err(|e| format!("read from 0: {e}"))?;
    compare(
        &sent[2..],
        &offsets[2..],
        &read_range(&partition, 2, 7).await?,
    )
    .map_err(|e| format!("read from 2: {e}"))?;
    Ok(Outcome::Passed(format!(
        "{codec_name}: 7 records in 2 batches; keys, values, headers, timestamps, offsets match"
    )))
}

/// 2b. rskafka's own producer (lingering, aggregating) and stream consumer, with a long poll.
pub async fn batch_producer_stream_consumer(ctx: &Context) -> CheckResult {
    let topic = ctx.create_topic("stream", 1).await?;
    let partition = Arc::new(ctx.partition(&topic, 0).await?);
    let producer = BatchProducerBuilder::new(Arc::clone(&partition))
        .with_linger(Duration::from_millis(20))
        .with_compression(Compression::Zstd)
        .build(RecordAggregator::new(1 << 20));
    let base_ms = now_ms();
    let sent: Vec<Record> = (0..20)
        .map(|i| {
            record(
                Some(format!("k{i}").as_bytes()),
                Some(b"streamed"),
                &[],
                base_ms + i,
            )
        })
        .collect();
    let results = join_all(sent.iter().cloned().map(|r| producer.produce(r))).await;
    let offsets = results
        .into_iter()
        .collect::<Result<Vec<i64>, _>>()
        .map_err(|e| format!("batch produce: {e}"))?;
    let (in_offset_order, sorted_offsets) = sort_by_offset(&sent, &offsets);
    expect_offsets(&sorted_offsets, 0..20, "batch producer")?;

    let mut stream = StreamConsumerBuilder::new(Arc::clone(&partition), StartOffset::Earliest)
        .with_max_wait_ms(LONG_POLL_MAX_WAIT_MS)
        .build();
    let mut read = Vec::new();
    while read.len() < sent.len() {
        let (record_and_offset, _high_watermark) = next_from_stream(&mut stream).await?;
        read.push(record_and_offset);
    }
    compare(&in_offset_order, &sorted_offsets, &read)
        .map_err(|e| format!("stream consumer: {e}"))?;

    let producing_partition = ctx
        .other_client
        .partition_client(topic.as_str(), 0, UnknownTopicHandling::Retry)
        .await
        .map_err(|e| format!("second client's partition_client: {e}"))?;
    let waited = long_poll_for_one(&mut stream, producing_partition).await?;
    ensure(
        waited < Duration::from_millis(LONG_POLL_MAX_WAIT_MS as u64 / 2),
        || {
            format!(
                "record produced during a {LONG_POLL_MAX_WAIT_MS}ms poll arrived only after {}ms",
                waited.as_millis()
            )
        },
    )?;
    Ok(Outcome::Passed(format!(
        "20 records through BatchProducer (zstd) and StreamConsumer; a record produced {}ms into a poll (max wait {LONG_POLL_MAX_WAIT_MS}ms) arrived after {}ms",
        LONG_POLL_DELAY.as_millis(),
        waited.as_millis()
    )))
}

/// The records ordered by the offsets the producer returned for them, and those offsets.
fn sort_by_offset(records: &[Record], offsets: &[i64]) -> (Vec<Record>, Vec<i64>) {
    let mut pairs: Vec<(i64, Record)> = offsets
        .iter()
        .copied()
        .zip(records.iter().cloned())
        .collect();
    pairs.sort_by_key(|(offset, _)| *offset);
    pairs
        .into_iter()
        .map(|(offset, record)| (record, offset))
        .unzip()
}

async fn next_from_stream(
    stream: &mut rskafka::client::consumer::StreamConsumer,
) -> Result<(rskafka::record::RecordAndOffset, i64), String> {
    match stream.next().await {
        Some(Ok(item)) => Ok(item),
        Some(Err(e)) => Err(format!("stream consumer: {e}")),
        None => Err("stream consumer ended".to_string()),
    }
}

/// Waits on the stream while another task produces one record a little later, on another
/// connection (a broker answers one connection's requests in order, as Kafka does).
async fn long_poll_for_one(
    stream: &mut rskafka::client::consumer::StreamConsumer,
    producing_partition: PartitionClient,
) -> Result<Duration, String> {
    let late_record = record(Some(b"late"), Some(b"arrives during a poll"), &[], now_ms());
    let sent = late_record.clone();
    let late_produce = tokio::spawn(async move {
        tokio::time::sleep(LONG_POLL_DELAY).await;
        produce(&producing_partition, &[sent], Compression::NoCompression).await
    });
    let started = Instant::now();
    let (got, _high_watermark) = next_from_stream(stream).await?;
    let waited = started.elapsed();
    let offsets = late_produce
        .await
        .map_err(|e| format!("late produce task: {e}"))??;
    compare(&[late_record], &offsets, &[got]).map_err(|e| format!("late record: {e}"))?;
    Ok(waited)
}

/// Each partition of a topic has its own offsets and records.
pub async fn multi_partition(ctx: &Context) -> CheckResult {
    let topic = ctx.create_topic("partitions", 3).await?;
    let base_ms = now_ms();
    for index in 0..3 {
        let partition = ctx.partition(&topic, index).await?;
        let count = index as i64 + 1;
        let sent: Vec<Record> = (0..count)
            .map(|i| {
                record(
                    Some(format!("p{index}").as_bytes()),
                    Some(format!("r{i}").as_bytes()),
                    &[],
                    base_ms + i,
                )
            })
            .collect();
        let offsets = produce(&partition, &sent, Compression::Snappy).await?;
        expect_offsets(&offsets, 0..count, &format!("partition {index}"))?;
        compare(&sent, &offsets, &read_range(&partition, 0, count).await?)
            .map_err(|e| format!("partition {index}: {e}"))?;
    }
    Ok(Outcome::Passed(format!(
        "{topic}: 1, 2 and 3 records in partitions 0, 1, 2, each from offset 0"
    )))
}

/// Fetch edges: a budget smaller than the first batch (KIP-74), an empty poll at the high
/// watermark that waits, an offset past it.
pub async fn fetch_limits(ctx: &Context) -> CheckResult {
    let topic = ctx.create_topic("fetch-limits", 1).await?;
    let partition = ctx.partition(&topic, 0).await?;
    let base_ms = now_ms();
    let large_batch = varied_batch("fetch-limits", base_ms);
    produce(&partition, &large_batch, Compression::NoCompression).await?;
    produce(
        &partition,
        &varied_batch("second", base_ms + 10)[..2],
        Compression::NoCompression,
    )
    .await?;

    let (first, high_watermark) = fetch(&partition, 0, 1..101, 100).await?;
    let first_offsets: Vec<i64> = (0..5).collect();
    compare(&large_batch, &first_offsets, &first)
        .map_err(|e| format!("100-byte budget from 0: {e}"))?;
    ensure(high_watermark == 7, || {
        format!("high watermark {high_watermark}, expected 7")
    })?;

    let empty_poll_started = Instant::now();
    let (at_end, _) = fetch(&partition, 7, 1..1_000_000, EMPTY_POLL_WAIT_MS).await?;
    let waited = empty_poll_started.elapsed();
    ensure(at_end.is_empty(), || {
        format!(
            "fetch at the high watermark returned offsets {:?}",
            offsets_of(&at_end)
        )
    })?;
    ensure(
        waited >= Duration::from_millis(EMPTY_POLL_WAIT_MS as u64 / 2),
        || {
            format!(
                "empty fetch with max_wait {EMPTY_POLL_WAIT_MS}ms answered after {}ms",
                waited.as_millis()
            )
        },
    )?;

    match partition.fetch_records(8, 1..1_000_000, 100).await {
        Err(e) if protocol_error(&e) == Some(&ProtocolError::OffsetOutOfRange) => {}
        Err(e) => {
            return Err(format!(
                "fetch past the high watermark: expected OffsetOutOfRange, got: {e}"
            ))
        }
        Ok((records, _)) => {
            return Err(format!(
                "fetch past the high watermark: got offsets {:?}",
                offsets_of(&records)
            ))
        }
    }
    Ok(Outcome::Passed(format!(
        "100-byte budget still gets the whole first batch; empty poll waited {}ms of {EMPTY_POLL_WAIT_MS}; past the end OFFSET_OUT_OF_RANGE",
        waited.as_millis()
    )))
}

async fn fetch(
    partition: &PartitionClient,
    offset: i64,
    bytes: std::ops::Range<i32>,
    max_wait_ms: i32,
) -> Result<(Vec<rskafka::record::RecordAndOffset>, i64), String> {
    partition
        .fetch_records(offset, bytes.clone(), max_wait_ms)
        .await
        .map_err(|e| format!("fetch_records(offset={offset}, bytes={bytes:?}): {e}"))
}

/// A record above the broker's message.max.bytes (1 MiB by default) is refused.
pub async fn produce_too_large(ctx: &Context) -> CheckResult {
    let topic = ctx.create_topic("too-large", 1).await?;
    let partition = ctx.partition(&topic, 0).await?;
    let huge_value = vec![b'x'; 2 * 1024 * 1024];
    let sent = [record(Some(b"huge"), Some(&huge_value), &[], now_ms())];
    match partition
        .produce(sent.to_vec(), Compression::NoCompression)
        .await
    {
        Err(e) if protocol_error(&e) == Some(&ProtocolError::MessageTooLarge) => {}
        Err(e) => return Err(format!("2 MiB record: expected MessageTooLarge, got: {e}")),
        Ok(offsets) => return Err(format!("2 MiB record accepted at offsets {offsets:?}")),
    }
    let latest = offset_at(&partition, OffsetAt::Latest).await?;
    ensure(latest == 0, || {
        format!("latest after the refused produce: {latest}")
    })?;
    Ok(Outcome::Passed(
        "2 MiB record: MESSAGE_TOO_LARGE, nothing written".to_string(),
    ))
}

/// 3. rskafka has no consumer groups.
pub async fn consumer_group(_ctx: &Context) -> CheckResult {
    Ok(Outcome::Skipped(
        "rskafka has no consumer-group API (no FindCoordinator, JoinGroup, SyncGroup, OffsetCommit, \
         OffsetFetch): it reads partitions by explicit offset only"
            .to_string(),
    ))
}

/// 4. ListOffsets: earliest, latest, and by timestamp across and inside batches.
pub async fn offsets_by_time(ctx: &Context) -> CheckResult {
    let topic = ctx.create_topic("offsets", 1).await?;
    let partition = ctx.partition(&topic, 0).await?;
    let t0 = now_ms() - 600_000;
    let at = |ms: i64| record(Some(b"k"), Some(format!("ts {ms}").as_bytes()), &[], ms);
    produce(&partition, &[at(t0)], Compression::NoCompression).await?;
    produce(
        &partition,
        &[at(t0 + 1000), at(t0 + 2000)],
        Compression::Lz4,
    )
    .await?;
    produce(&partition, &[at(t0 + 3000)], Compression::NoCompression).await?;

    let expectations: [(&str, OffsetAt, i64); 9] = [
        ("earliest", OffsetAt::Earliest, 0),
        ("latest", OffsetAt::Latest, 4),
        ("epoch", OffsetAt::Timestamp(timestamp(0)), 0),
        ("t0", OffsetAt::Timestamp(timestamp(t0)), 0),
        ("t0+500", OffsetAt::Timestamp(timestamp(t0 + 500)), 1),
        (
            "t0+1500 (inside batch)",
            OffsetAt::Timestamp(timestamp(t0 + 1500)),
            2,
        ),
        (
            "t0+2000 (second of batch)",
            OffsetAt::Timestamp(timestamp(t0 + 2000)),
            2,
        ),
        ("t0+3000", OffsetAt::Timestamp(timestamp(t0 + 3000)), 3),
        (
            "after every record",
            OffsetAt::Timestamp(timestamp(t0 + 60_000)),
            -1,
        ),
    ];
    let mut wrong = Vec::new();
    for (label, query, want) in expectations {
        let got = offset_at(&partition, query).await?;
        if got != want {
            wrong.push(format!("{label}: {got} (expected {want})"));
        }
    }
    ensure(wrong.is_empty(), || {
        format!("ListOffsets answers: {}", wrong.join("; "))
    })?;
    Ok(Outcome::Passed(
        "earliest 0, latest 4, 7 timestamp lookups (in and across batches, none found: -1)"
            .to_string(),
    ))
}

/// 5a. CreateTopics / DeleteTopics, with Kafka's errors for a second create and delete.
pub async fn admin_create_delete_topic(ctx: &Context) -> CheckResult {
    let topic = ctx.create_topic("admin", 2).await?;
    let listed = ctx.listed_partitions(&topic).await?;
    ensure(listed == Some((0..2).collect()), || {
        format!("after create: {topic} listed as {listed:?}")
    })?;
    let controller = ctx.client.controller_client().map_err(|e| e.to_string())?;

    let again = controller
        .create_topic(topic.as_str(), 2, 1, ADMIN_TIMEOUT_MS)
        .await;
    expect_error(
        again,
        ProtocolError::TopicAlreadyExists,
        "second create_topic",
    )?;

    controller
        .delete_topic(topic.as_str(), ADMIN_TIMEOUT_MS)
        .await
        .map_err(|e| format!("delete_topic: {e}"))?;
    let listed = ctx.listed_partitions(&topic).await?;
    ensure(listed.is_none(), || {
        format!("after delete: {topic} still listed as {listed:?}")
    })?;

    let again = controller
        .delete_topic(topic.as_str(), ADMIN_TIMEOUT_MS)
        .await;
    expect_error(
        again,
        ProtocolError::UnknownTopicOrPartition,
        "second delete_topic",
    )?;
    Ok(Outcome::Passed(format!(
        "{topic}: created (listed), re-create TOPIC_ALREADY_EXISTS, deleted (unlisted), re-delete UNKNOWN_TOPIC_OR_PARTITION"
    )))
}

/// 5b. CreateTopics refusals: no partitions, replication beyond the one broker, a bad name.
pub async fn admin_create_topic_errors(ctx: &Context) -> CheckResult {
    let controller = ctx.client.controller_client().map_err(|e| e.to_string())?;
    let no_partitions = controller
        .create_topic(ctx.topic_name("zero-partitions"), 0, 1, ADMIN_TIMEOUT_MS)
        .await;
    expect_error(
        no_partitions,
        ProtocolError::InvalidPartitions,
        "0 partitions",
    )?;
    let replicated = controller
        .create_topic(ctx.topic_name("rf3"), 1, 3, ADMIN_TIMEOUT_MS)
        .await;
    expect_error(
        replicated,
        ProtocolError::InvalidReplicationFactor,
        "replication factor 3",
    )?;
    let bad_name = controller
        .create_topic("bad/name", 1, 1, ADMIN_TIMEOUT_MS)
        .await;
    expect_error(
        bad_name,
        ProtocolError::InvalidTopicException,
        "topic name with '/'",
    )?;
    Ok(Outcome::Passed(
        "INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR, INVALID_TOPIC_EXCEPTION".to_string(),
    ))
}

fn expect_error(
    result: Result<(), ClientError>,
    want: ProtocolError,
    what: &str,
) -> Result<(), String> {
    match result {
        Ok(()) => Err(format!("{what}: succeeded, expected {want:?}")),
        Err(e) if protocol_error(&e) == Some(&want) => Ok(()),
        Err(e) => Err(format!("{what}: expected {want:?}, got: {e}")),
    }
}

/// 5c. DeleteRecords moves the log start: at a batch boundary, then inside a batch.
pub async fn admin_delete_records(ctx: &Context) -> CheckResult {
    let topic = ctx.create_topic("delete-records", 1).await?;
    let partition = ctx.partition(&topic, 0).await?;
    let base_ms = now_ms();
    let first = varied_batch("delete", base_ms);
    let second = varied_batch("records", base_ms + 100);
    produce(&partition, &first, Compression::NoCompression).await?;
    produce(&partition, &second, Compression::Gzip).await?;
    let sent: Vec<Record> = first.iter().chain(&second).cloned().collect();

    delete_records_to(&partition, 5).await?;
    expect_read_from_start(&partition, &sent, 5).await?;
    delete_records_to(&partition, 7).await?;
    expect_read_from_start(&partition, &sent, 7).await?;
    let latest = offset_at(&partition, OffsetAt::Latest).await?;
    ensure(latest == 10, || {
        format!("latest after deletes: {latest}, expected 10")
    })?;
    Ok(Outcome::Passed("log start moved to 5 (batch boundary) then 7 (inside a gzip batch); below it OFFSET_OUT_OF_RANGE".to_string()))
}

async fn delete_records_to(partition: &PartitionClient, offset: i64) -> Result<(), String> {
    partition
        .delete_records(offset, ADMIN_TIMEOUT_MS)
        .await
        .map_err(|e| format!("delete_records({offset}): {e}"))?;
    let earliest = offset_at(partition, OffsetAt::Earliest).await?;
    ensure(earliest == offset, || {
        format!("earliest after delete_records({offset}): {earliest}")
    })
}

/// After deleting below `start`: fetching below it is OFFSET_OUT_OF_RANGE; from it, the rest is intact.
async fn expect_read_from_start(
    partition: &PartitionClient,
    sent: &[Record],
    start: i64,
) -> Result<(), String> {
    let below = partition.fetch_records(start - 1, 1..1_000_000, 100).await;
    match below {
        Err(e) if protocol_error(&e) == Some(&ProtocolError::OffsetOutOfRange) => {}
        Err(e) => {
            return Err(format!(
                "fetch below log start {start}: expected OffsetOutOfRange, got: {e}"
            ))
        }
        Ok((records, _)) => {
            return Err(format!(
                "fetch below log start {start}: got offsets {:?}",
                offsets_of(&records)
            ));
        }
    }
    let end = sent.len() as i64;
    let offsets: Vec<i64> = (start..end).collect();
    compare(
        &sent[start as usize..],
        &offsets,
        &read_range(partition, start, end).await?,
    )
}

/// 5d. Config APIs rskafka lacks.
pub async fn admin_configs(_ctx: &Context) -> CheckResult {
    Ok(Outcome::Skipped(
        "rskafka's ControllerClient offers only create_topic and delete_topic: no DescribeConfigs, \
         AlterConfigs, IncrementalAlterConfigs or CreatePartitions"
            .to_string(),
    ))
}
