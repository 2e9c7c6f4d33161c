// The offsets-by-time check of the sarama program: three records with timestamps a second
// apart, then Client.GetOffset (ListOffsets) for earliest, latest and times between them.
package main

import (
	"time"

	"fastlog-clients/checks"

	"github.com/Shopify/sarama"
)

func millis(t time.Time) int64 { return t.UnixNano() / int64(time.Millisecond) }

func (s *suite) offsetsByTime() (interface{}, error) {
	topic := checks.TopicName(s.prefix, "times")
	if createdBy, err := s.createTopic(topic, 1); err != nil {
		return nil, checks.Failf(nil, "create %s (%s): %v", topic, createdBy, err)
	}
	start := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	sent := recordsFor(topic, "times", 3)
	for i, message := range sent {
		message.Timestamp = start.Add(time.Duration(i) * time.Second)
	}
	if err := s.produce(s.config, sent); err != nil {
		return nil, checks.Failf(nil, "produce: %v", err)
	}
	client, err := sarama.NewClient(s.bootstrap, s.config)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	asked := map[string]int64{
		"earliest":         sarama.OffsetOldest,
		"latest":           sarama.OffsetNewest,
		"first_timestamp":  millis(start),
		"between_1st_2nd":  millis(start.Add(500 * time.Millisecond)),
		"second_timestamp": millis(start.Add(time.Second)),
		"after_last":       millis(start.Add(time.Hour)),
	}
	want := map[string]int64{
		"earliest": 0, "latest": 3, "first_timestamp": 0, "between_1st_2nd": 1, "second_timestamp": 1, "after_last": -1,
	}
	if !s.config.Version.IsAtLeast(sarama.V0_10_1_0) {
		// ListOffsets v0 predates record timestamps (sarama sends v1 from 0.10.1 on): only
		// earliest and latest have a meaning there; the other answers are reported, not checked.
		want = map[string]int64{"earliest": 0, "latest": 3}
	}
	answers := map[string]int64{}
	for name, at := range asked {
		offset, err := client.GetOffset(topic, 0, at)
		if _, checked := want[name]; err != nil && !checked {
			// v0 answers a time by segment modification times, as Kafka does: none stamped at
			// or before it is an empty answer, which sarama reports as an error
			answers[name] = -1
			continue
		}
		if err != nil {
			return nil, checks.Failf(answers, "GetOffset %s (%d): %v", name, at, err)
		}
		answers[name] = offset
	}
	for name, offset := range want {
		if answers[name] != offset {
			return nil, checks.Failf(answers, "GetOffset %s answered %d, want %d", name, answers[name], offset)
		}
	}
	return answers, nil
}
