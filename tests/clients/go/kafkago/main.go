// Checks the segmentio kafka-go client (Debian's golang-github-segmentio-kafka-go-dev, 0.2.1)
// against a broker: metadata for all topics, produce and consume with each codec it has (none,
// gzip, snappy, lz4: its codec mask is 0x03 and it ships no zstd package), a Reader with a
// GroupID that commits and a new one that resumes, offsets by time (Conn.ReadOffset), and the
// admin calls it has (CreateTopics v0, Metadata v1 to describe, DeleteTopics v1; it has no
// DescribeConfigs, AlterConfigs or CreatePartitions). One JSON line per check (see ../checks);
// exit status 1 when any check failed.
//
// On the wire kafka-go 0.2.1 uses fixed versions: Produce v2 (magic 1 message sets), Fetch v2,
// ListOffsets v1, Metadata v1, FindCoordinator v0, JoinGroup v1, SyncGroup v0, Heartbeat v0,
// LeaveGroup v0, OffsetCommit v2, OffsetFetch v1, CreateTopics v0, DeleteTopics v1; no
// ApiVersions.
package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"fastlog-clients/checks"

	kafka "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/gzip"
	"github.com/segmentio/kafka-go/lz4"
	"github.com/segmentio/kafka-go/snappy"
)

// libraryVersion is set at build time from the Debian package (scripts/clients/go.sh).
var libraryVersion = "unknown"

const (
	checkLimit   = 20 * time.Second
	ioLimit      = 10 * time.Second
	recordsToUse = 5
)

var codecs = []struct {
	name  string
	codec kafka.CompressionCodec
}{
	{"none", nil},
	{"gzip", gzip.NewCompressionCodec()},
	{"snappy", snappy.NewCompressionCodec()},
	{"lz4", lz4.NewCompressionCodec()},
}

type suite struct {
	bootstrap string
	prefix    string
	dialer    *kafka.Dialer
}

func main() {
	bootstrap := flag.String("bootstrap", "127.0.0.1:9092", "broker HOST:PORT")
	prefix := flag.String("topic-prefix", "", "prefix of this run's topic and group names")
	existing := flag.String("existing-topic", "", "topic holding records key-i / \"existing value i\" at offsets 0-4, written by another client")
	flag.Parse()
	if *prefix == "" {
		*prefix = checks.DefaultPrefix("kafkago")
	}
	dialer := &kafka.Dialer{ClientID: "fastlog-kafkago-check", Timeout: 5 * time.Second}
	s := &suite{bootstrap: *bootstrap, prefix: *prefix, dialer: dialer}
	runner := &checks.Runner{}
	runner.Report(checks.Result{Check: "client", OK: true, Detail: map[string]string{
		"library": "kafka-go", "library_version": libraryVersion,
	}})
	runner.Run("metadata_all_topics", checkLimit, s.metadataAllTopics)
	for _, c := range codecs {
		codec := c
		runner.Run("produce_consume_"+codec.name, checkLimit, func() (interface{}, error) {
			return s.produceConsume(codec.name, codec.codec)
		})
	}
	runner.Run("produce_consume_zstd", checkLimit, func() (interface{}, error) {
		return nil, checks.Skip("kafka-go 0.2.1 has no zstd codec (codec packages gzip, snappy, lz4 only; compressionCodecMask 0x03)")
	})
	runner.Run("consume_existing", checkLimit, func() (interface{}, error) { return s.consumeExisting(*existing) })
	runner.Run("consumer_group_commit_resume", 45*time.Second, func() (interface{}, error) {
		return s.consumerGroupCommitResume(*existing)
	})
	runner.Run("offsets_by_time", checkLimit, s.offsetsByTime)
	runner.Run("admin", checkLimit, s.admin)
	runner.Run("admin_alter", checkLimit, func() (interface{}, error) {
		return nil, checks.Skip("kafka-go 0.2.1 has no AlterConfigs, DescribeConfigs or CreatePartitions API (protocol.go knows API keys 0-3, 8-16, 19, 20)")
	})
	runner.Exit()
}

// controller is a connection to the bootstrap broker (the only broker, so the controller).
func (s *suite) controller() (*kafka.Conn, error) {
	conn, err := s.dialer.Dial("tcp", s.bootstrap)
	if err != nil {
		return nil, err
	}
	return conn, conn.SetDeadline(time.Now().Add(ioLimit))
}

func (s *suite) createTopic(topic string, partitions int, configs ...kafka.ConfigEntry) error {
	conn, err := s.controller()
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.CreateTopics(kafka.TopicConfig{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: configs,
	})
}

// leader is a connection to partition 0's leader, with a deadline.
func (s *suite) leader(topic string) (*kafka.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ioLimit)
	defer cancel()
	conn, err := s.dialer.DialLeader(ctx, "tcp", s.bootstrap, topic, 0)
	if err != nil {
		return nil, err
	}
	return conn, conn.SetDeadline(time.Now().Add(ioLimit))
}

func (s *suite) metadataAllTopics() (interface{}, error) {
	topic := checks.TopicName(s.prefix, "listed")
	if err := s.createTopic(topic, 1); err != nil {
		return nil, checks.Failf(nil, "CreateTopics %s: %v", topic, err)
	}
	all, err := s.readPartitions()
	if err != nil {
		return nil, checks.Failf(nil, "ReadPartitions(): %v", err)
	}
	detail := map[string]interface{}{"topics_listed": len(all)}
	if all[topic] {
		return detail, nil
	}
	if len(all) > 0 {
		return nil, checks.Failf(detail, "%s not among the %d topics listed", topic, len(all))
	}
	// ReadPartitions() sends Metadata v1 with an empty topic array, which from v1 on means "no
	// topics" (null means all): kafka-go 0.2.1 cannot list all topics. The named topic must show.
	named, err := s.readPartitions(topic)
	detail["named_topic_listed"] = named[topic]
	if err != nil || !named[topic] {
		return nil, checks.Failf(detail, "ReadPartitions(%s): %v", topic, err)
	}
	return detail, checks.Skip("kafka-go 0.2.1 cannot ask for all topics: ReadPartitions() sends Metadata v1 " +
		"with an empty topic array, which means no topics from v1 on (Kafka answers none too); " +
		"the created topic was found by name")
}

// readPartitions asks for the partitions of topics (none: kafka-go's "all topics") and
// returns the topics that came back.
func (s *suite) readPartitions(topics ...string) (map[string]bool, error) {
	conn, err := s.controller()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	partitions, err := conn.ReadPartitions(topics...)
	listed := map[string]bool{}
	for _, partition := range partitions {
		listed[partition.Topic] = true
	}
	return listed, err
}

func (s *suite) produceConsume(name string, codec kafka.CompressionCodec) (interface{}, error) {
	topic := checks.TopicName(s.prefix, "codec-"+name)
	if err := s.createTopic(topic, 1); err != nil {
		return nil, checks.Failf(nil, "CreateTopics %s: %v", topic, err)
	}
	sent := messagesFor(name, recordsToUse)
	if err := s.produce(topic, codec, sent); err != nil {
		return nil, checks.Failf(nil, "produce: %v", err)
	}
	received, err := s.consume(topic, 0, len(sent))
	if err != nil {
		return nil, checks.Failf(len(received), "consume: %v", err)
	}
	if err := compare(sent, received, 0); err != nil {
		return nil, err
	}
	return map[string]interface{}{"topic": topic, "records": len(received)}, nil
}

// consumeExisting reads records another client wrote (magic 2 batches), so that consuming is
// checked even where this client's own produce requests fail.
func (s *suite) consumeExisting(topic string) (interface{}, error) {
	if topic == "" {
		return nil, checks.Skip("no -existing-topic given")
	}
	received, err := s.consume(topic, 0, checks.ExistingRecords)
	if err != nil {
		return nil, checks.Failf(len(received), "consume: %v", err)
	}
	for i, message := range received {
		if err := checks.ExpectExisting(i, message.Offset, message.Key, message.Value); err != nil {
			return nil, err
		}
	}
	return map[string]interface{}{"records": len(received)}, nil
}

func messagesFor(label string, count int) []kafka.Message {
	messages := make([]kafka.Message, count)
	for i := range messages {
		messages[i] = kafka.Message{Key: []byte(fmt.Sprintf("key-%d", i)), Value: checks.Payload(label, i)}
	}
	return messages
}

// produce writes messages to partition 0 in one Produce request (one compressed message set).
func (s *suite) produce(topic string, codec kafka.CompressionCodec, messages []kafka.Message) error {
	conn, err := s.leader(topic)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.WriteCompressedMessages(codec, messages...)
	return err
}

// consume reads count messages of partition 0 from offset with Fetch requests.
func (s *suite) consume(topic string, offset int64, count int) ([]kafka.Message, error) {
	conn, err := s.leader(topic)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.Seek(offset, kafka.SeekAbsolute); err != nil {
		return nil, fmt.Errorf("seek to %d: %v", offset, err)
	}
	var received []kafka.Message
	for len(received) < count {
		batch := conn.ReadBatch(1, 1<<20)
		for len(received) < count {
			message, err := batch.ReadMessage()
			if err != nil {
				break
			}
			received = append(received, message)
		}
		if err := batch.Close(); err != nil {
			return received, err
		}
	}
	return received, nil
}

func compare(sent, received []kafka.Message, firstOffset int64) error {
	if len(received) != len(sent) {
		return checks.Failf(nil, "received %d records, sent %d", len(received), len(sent))
	}
	for i, message := range received {
		want := sent[i]
		if message.Offset != firstOffset+int64(i) || string(message.Key) != string(want.Key) || string(message.Value) != string(want.Value) {
			return checks.Failf(nil, "record %d: got offset %d key %q value %.40q, want offset %d key %q value %.40q",
				i, message.Offset, message.Key, message.Value, firstOffset+int64(i), want.Key, want.Value)
		}
	}
	return nil
}
