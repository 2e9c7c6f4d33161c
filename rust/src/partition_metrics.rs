//! The per-partition gauges of the broker's `/metrics`, in Prometheus' text format.
//!
//! With 10,000 partitions these are 50,000 samples: built in Python (prometheus_client) a scrape
//! took 240 ms of the broker's loop and set off a full garbage collection. Here they are read
//! and written with the GIL released, and allocate one string.

use std::fmt::Write;

/// One partition's gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionGauges {
    pub size_bytes: u64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub segments: usize,
    /// Below this offset everything is fsynced (it lags the log end until a flush or a roll).
    pub recovery_point: i64,
    /// A flush's fsync failed: the partition's later flushes fail too (see `PartitionLog`).
    pub sync_failed: bool,
}

/// (metric name, help text, the gauge's value): the families, in the order they are written.
const FAMILIES: [(&str, &str, fn(&PartitionGauges) -> i128); 7] = [
    ("fastlog_partition_log_size_bytes", "Bytes of a partition's segments", |g| g.size_bytes as i128),
    ("fastlog_partition_log_end_offset", "Offset the next record of a partition gets", |g| g.log_end_offset as i128),
    ("fastlog_partition_high_watermark", "Last committed offset + 1 of a partition", |g| g.high_watermark as i128),
    ("fastlog_partition_log_start_offset", "First offset still in a partition", |g| g.log_start_offset as i128),
    ("fastlog_partition_segments", "Segment files of a partition", |g| g.segments as i128),
    ("fastlog_partition_recovery_point", "Offset below which a partition is fsynced", |g| g.recovery_point as i128),
    ("fastlog_partition_sync_failed", "1 when an fsync of a partition failed: its appends and flushes fail since, until a restart", |g| g.sync_failed as i128),
];

/// The gauge families for `partitions` ((topic, partition, gauges), in the order given),
/// each with its HELP and TYPE lines, as prometheus_client writes them.
pub fn render(partitions: &[(&str, usize, PartitionGauges)]) -> String {
    let mut text = String::with_capacity(64 + partitions.len() * 5 * 80);
    for (name, help, value) in FAMILIES {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (topic, partition, gauges) in partitions {
            text.push_str(name);
            text.push_str("{topic=\"");
            push_label_value(&mut text, topic);
            let _ = writeln!(text, "\",partition=\"{partition}\"}} {}.0", value(gauges));
        }
    }
    text
}

/// A label value with the exposition format's escapes (Kafka's topic names need none).
fn push_label_value(text: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => text.push_str("\\\\"),
            '"' => text.push_str("\\\""),
            '\n' => text.push_str("\\n"),
            c => text.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAUGES: PartitionGauges =
        PartitionGauges { size_bytes: 4096, log_end_offset: 42, high_watermark: 40, log_start_offset: 3, segments: 2, recovery_point: 30, sync_failed: false };

    #[test]
    fn every_family_has_its_help_type_and_one_sample_per_partition() {
        let text = render(&[("orders", 0, GAUGES), ("orders", 1, PartitionGauges { segments: 1, ..GAUGES })]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), FAMILIES.len() * (2 + 2));
        assert_eq!(lines[0], "# HELP fastlog_partition_log_size_bytes Bytes of a partition's segments");
        assert_eq!(lines[1], "# TYPE fastlog_partition_log_size_bytes gauge");
        assert_eq!(lines[2], "fastlog_partition_log_size_bytes{topic=\"orders\",partition=\"0\"} 4096.0");
        assert!(text.contains("fastlog_partition_log_end_offset{topic=\"orders\",partition=\"1\"} 42.0\n"));
        assert!(text.contains("fastlog_partition_high_watermark{topic=\"orders\",partition=\"0\"} 40.0\n"));
        assert!(text.contains("fastlog_partition_log_start_offset{topic=\"orders\",partition=\"0\"} 3.0\n"));
        assert!(text.contains("fastlog_partition_segments{topic=\"orders\",partition=\"1\"} 1.0\n"));
        assert!(text.contains("fastlog_partition_recovery_point{topic=\"orders\",partition=\"0\"} 30.0\n"));
        assert!(text.ends_with("fastlog_partition_sync_failed{topic=\"orders\",partition=\"1\"} 0.0\n"));
    }

    #[test]
    fn no_partitions_still_describes_the_families() {
        assert_eq!(render(&[]).lines().count(), 2 * FAMILIES.len());
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&[("a\"b\\c\nd", 7, GAUGES)]);
        assert!(text.contains("{topic=\"a\\\"b\\\\c\\nd\",partition=\"7\"}"));
    }
}
