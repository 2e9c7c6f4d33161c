// Checks the sarama Kafka client (Debian's golang-github-shopify-sarama-dev, 1.22.1) against a
// broker: metadata for all topics, produce and consume with each codec (none, gzip, snappy,
// lz4, zstd), a consumer group that commits and resumes, offsets by time, and ClusterAdmin
// (create, describe, alter configs and partitions, delete records, delete). One JSON line per
// check (see ../checks); exit status 1 when any check failed.
//
// -version picks sarama's Config.Version: "newest" (sarama.MaxVersion, modern APIs), "default"
// (what sarama.NewConfig leaves, V0_8_2_0, which many users run with), or "X.Y.Z". sarama 1.22
// sends no ApiVersions request; the versions follow Config.Version alone. At 2.2.0: Produce v3
// (magic 2 batches, zstd too), Fetch v4, ListOffsets v1, Metadata v5 (v0 in ListTopics),
// FindCoordinator v0, JoinGroup v1, SyncGroup v0, Heartbeat v0, LeaveGroup v0, OffsetCommit v1,
// OffsetFetch v1, CreateTopics v2, DeleteTopics v1, DeleteRecords v0, DescribeConfigs v0,
// AlterConfigs v0, CreatePartitions v0. At 0.8.2.0: Metadata v0, Produce v0 (magic 0 messages),
// ListOffsets v0, Fetch v0; no consumer groups, lz4 or admin (sarama refuses them itself).
package main

import (
	"flag"
	"fmt"
	"time"

	"fastlog-clients/checks"

	"github.com/Shopify/sarama"
)

// libraryVersion is set at build time from the Debian package (scripts/clients/go.sh).
var libraryVersion = "unknown"

const (
	checkLimit   = 20 * time.Second
	recordsToUse = 5
)

var codecs = []struct {
	name  string
	codec sarama.CompressionCodec
}{
	{"none", sarama.CompressionNone},
	{"gzip", sarama.CompressionGZIP},
	{"snappy", sarama.CompressionSnappy},
	{"lz4", sarama.CompressionLZ4},
	{"zstd", sarama.CompressionZSTD},
}

type suite struct {
	bootstrap []string
	prefix    string
	config    *sarama.Config
}

func main() {
	bootstrap := flag.String("bootstrap", "127.0.0.1:9092", "broker HOST:PORT")
	version := flag.String("version", "newest", `sarama Config.Version: "newest", "default" or X.Y.Z`)
	prefix := flag.String("topic-prefix", "", "prefix of this run's topic and group names")
	existing := flag.String("existing-topic", "", "topic holding records key-i / \"existing value i\" at offsets 0-4, written by another client")
	flag.Parse()

	runner := &checks.Runner{}
	config, err := newConfig(*version)
	if err != nil {
		runner.Report(checks.Result{Check: "client", Detail: err.Error()})
		runner.Exit()
	}
	if *prefix == "" {
		*prefix = checks.DefaultPrefix("sarama")
	}
	s := &suite{bootstrap: []string{*bootstrap}, prefix: *prefix, config: config}
	runner.Report(checks.Result{Check: "client", OK: true, Detail: map[string]string{
		"library": "sarama", "library_version": libraryVersion, "kafka_version": config.Version.String(),
	}})
	runner.Run("metadata_all_topics", checkLimit, s.metadataAllTopics)
	for _, c := range codecs {
		codec := c
		runner.Run("produce_consume_"+codec.name, checkLimit, func() (interface{}, error) {
			return s.produceConsume(codec.name, codec.codec)
		})
	}
	runner.Run("consume_existing", checkLimit, func() (interface{}, error) { return s.consumeExisting(*existing) })
	runner.Run("consumer_group_commit_resume", 45*time.Second, s.consumerGroupCommitResume)
	runner.Run("offsets_by_time", checkLimit, s.offsetsByTime)
	runner.Run("admin", checkLimit, s.admin)
	runner.Exit()
}

func newConfig(version string) (*sarama.Config, error) {
	config := sarama.NewConfig()
	switch version {
	case "newest":
		config.Version = sarama.MaxVersion
	case "default":
	default:
		parsed, err := sarama.ParseKafkaVersion(version)
		if err != nil {
			return nil, err
		}
		config.Version = parsed
	}
	config.ClientID = "fastlog-sarama-check"
	config.Net.DialTimeout = 5 * time.Second
	config.Net.ReadTimeout = 10 * time.Second
	config.Net.WriteTimeout = 5 * time.Second
	config.Metadata.Retry.Max = 3
	config.Metadata.Retry.Backoff = 200 * time.Millisecond
	config.Producer.Return.Successes = true
	config.Producer.RequiredAcks = sarama.WaitForAll
	config.Producer.Retry.Max = 2
	config.Producer.Retry.Backoff = 200 * time.Millisecond
	config.Consumer.Return.Errors = true
	config.Consumer.Offsets.Initial = sarama.OffsetOldest
	config.Consumer.MaxWaitTime = 250 * time.Millisecond
	config.Consumer.Group.Session.Timeout = 10 * time.Second
	config.Consumer.Group.Heartbeat.Interval = time.Second
	config.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	return config, config.Validate()
}

// versionGate is a Skip when the Config.Version is below what sarama itself requires for an
// API (it refuses client-side, before sending anything), else nil.
func (s *suite) versionGate(what string, needs sarama.KafkaVersion) error {
	if s.config.Version.IsAtLeast(needs) {
		return nil
	}
	return checks.Skip(fmt.Sprintf("sarama refuses %s below Config.Version %s (client-side: %s)", what, needs, s.config.Version))
}

// createTopic creates a topic with ClusterAdmin where the Config.Version allows it (CreateTopics
// needs 0.10.1), else by naming it in a Metadata request (the broker auto-creates it).
func (s *suite) createTopic(topic string, partitions int32) (string, error) {
	if !s.config.Version.IsAtLeast(sarama.V0_10_1_0) {
		client, err := sarama.NewClient(s.bootstrap, s.config)
		if err != nil {
			return "", err
		}
		defer client.Close()
		return "metadata auto-create", client.RefreshMetadata(topic)
	}
	admin, err := sarama.NewClusterAdmin(s.bootstrap, s.config)
	if err != nil {
		return "", err
	}
	defer admin.Close()
	detail := &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}
	return "ClusterAdmin.CreateTopic", admin.CreateTopic(topic, detail, false)
}

func (s *suite) metadataAllTopics() (interface{}, error) {
	topic := checks.TopicName(s.prefix, "listed")
	createdBy, err := s.createTopic(topic, 1)
	if err != nil {
		return nil, checks.Failf(nil, "create %s (%s): %v", topic, createdBy, err)
	}
	// A new client starts with a Metadata request for all topics (Metadata.Full).
	client, err := sarama.NewClient(s.bootstrap, s.config)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	if err := client.RefreshMetadata(); err != nil {
		return nil, err
	}
	topics, err := client.Topics()
	if err != nil {
		return nil, err
	}
	detail := map[string]interface{}{"created_by": createdBy, "topics_listed": len(topics)}
	for _, listed := range topics {
		if listed == topic {
			return detail, nil
		}
	}
	return nil, checks.Failf(detail, "%s not among the %d topics listed: %v", topic, len(topics), topics)
}

func (s *suite) produceConsume(name string, codec sarama.CompressionCodec) (interface{}, error) {
	topic := checks.TopicName(s.prefix, "codec-"+name)
	if codec == sarama.CompressionLZ4 {
		if err := s.versionGate("lz4 compression", sarama.V0_10_0_0); err != nil {
			return nil, err // config.go: "lz4 compression requires Version >= V0_10_0_0"
		}
	}
	config := copyConfig(s.config, func(c *sarama.Config) { c.Producer.Compression = codec })
	if createdBy, err := s.createTopic(topic, 1); err != nil {
		return nil, checks.Failf(nil, "create %s (%s): %v", topic, createdBy, err)
	}
	sent := recordsFor(topic, name, recordsToUse)
	if err := s.produce(config, sent); err != nil {
		return nil, checks.Failf(nil, "produce: %v", err)
	}
	if err := expectOffsets(sent, 0); err != nil {
		return nil, err
	}
	received, err := s.consume(topic, 0, sarama.OffsetOldest, len(sent))
	if err != nil {
		return nil, checks.Failf(len(received), "consume: %v", err)
	}
	if err := compare(sent, received); err != nil {
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
	received, err := s.consume(topic, 0, sarama.OffsetOldest, checks.ExistingRecords)
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

// recordsFor makes count messages for partition 0 of topic, keyed key-0, key-1, ...
func recordsFor(topic, label string, count int) []*sarama.ProducerMessage {
	messages := make([]*sarama.ProducerMessage, count)
	for i := range messages {
		messages[i] = &sarama.ProducerMessage{
			Topic:     topic,
			Partition: 0,
			Key:       sarama.StringEncoder(fmt.Sprintf("key-%d", i)),
			Value:     sarama.ByteEncoder(checks.Payload(label, i)),
		}
	}
	return messages
}

// produce sends messages with one SendMessages call (sarama may still split them in batches);
// sarama fills in each message's offset. An error names what the broker answered.
func (s *suite) produce(config *sarama.Config, messages []*sarama.ProducerMessage) error {
	config = copyConfig(config, func(c *sarama.Config) { c.Producer.Partitioner = sarama.NewManualPartitioner })
	producer, err := sarama.NewSyncProducer(s.bootstrap, config)
	if err != nil {
		return err
	}
	defer producer.Close()
	err = producer.SendMessages(messages)
	if failed, ok := err.(sarama.ProducerErrors); ok && len(failed) > 0 {
		return fmt.Errorf("%d of %d messages failed, first: %v", len(failed), len(messages), failed[0].Err)
	}
	return err
}

// copyConfig is a copy of config changed by edit (sarama configs are plain structs).
func copyConfig(config *sarama.Config, edit func(*sarama.Config)) *sarama.Config {
	copied := *config
	edit(&copied)
	return &copied
}

func expectOffsets(sent []*sarama.ProducerMessage, first int64) error {
	for i, message := range sent {
		if message.Offset != first+int64(i) {
			return checks.Failf(offsetsOf(sent), "record %d was given offset %d, want %d", i, message.Offset, first+int64(i))
		}
	}
	return nil
}

func offsetsOf(sent []*sarama.ProducerMessage) []int64 {
	offsets := make([]int64, len(sent))
	for i, message := range sent {
		offsets[i] = message.Offset
	}
	return offsets
}

// consume reads count messages of a partition from offset, within 10 seconds.
func (s *suite) consume(topic string, partition int32, offset int64, count int) ([]*sarama.ConsumerMessage, error) {
	consumer, err := sarama.NewConsumer(s.bootstrap, s.config)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	partitionConsumer, err := consumer.ConsumePartition(topic, partition, offset)
	if err != nil {
		return nil, err
	}
	defer partitionConsumer.AsyncClose()
	var received []*sarama.ConsumerMessage
	deadline := time.After(10 * time.Second)
	for len(received) < count {
		select {
		case message := <-partitionConsumer.Messages():
			received = append(received, message)
		case consumeErr := <-partitionConsumer.Errors():
			return received, consumeErr
		case <-deadline:
			return received, fmt.Errorf("got %d of %d records in 10s", len(received), count)
		}
	}
	return received, nil
}

func compare(sent []*sarama.ProducerMessage, received []*sarama.ConsumerMessage) error {
	if len(received) != len(sent) {
		return checks.Failf(nil, "received %d records, sent %d", len(received), len(sent))
	}
	for i, message := range received {
		wantKey, _ := sent[i].Key.Encode()
		wantValue, _ := sent[i].Value.Encode()
		if message.Offset != sent[i].Offset || string(message.Key) != string(wantKey) || string(message.Value) != string(wantValue) {
			return checks.Failf(nil, "record %d: got offset %d key %q value %.40q, want offset %d key %q value %.40q",
				i, message.Offset, message.Key, message.Value, sent[i].Offset, wantKey, wantValue)
		}
	}
	return nil
}
