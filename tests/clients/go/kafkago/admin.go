// The admin check of the kafka-go program, with what kafka-go 0.2.1 has: CreateTopics (v0)
// with a config, describe the topic (ReadPartitions: Metadata v1), DeleteTopics (v1). The
// deletion is checked with a second DeleteTopics, which must answer UNKNOWN_TOPIC_OR_PARTITION
// (a Metadata v1 request naming the topic would auto-create it again).
package main

import (
	"fmt"

	"fastlog-clients/checks"

	kafka "github.com/segmentio/kafka-go"
)

func (s *suite) admin() (interface{}, error) {
	topic := checks.TopicName(s.prefix, "admin")
	detail := map[string]interface{}{}
	steps := []struct {
		name string
		step func() error
	}{
		{"create", func() error {
			return s.createTopic(topic, 2, kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: "3600000"})
		}},
		{"describe_topic", func() error { return s.expectPartitions(topic, 2) }},
		{"delete", func() error { return s.deleteTopic(topic) }},
		{"delete_again_refused", func() error {
			if err := s.deleteTopic(topic); err != kafka.UnknownTopicOrPartition {
				return fmt.Errorf("second DeleteTopics answered %v, want %v", err, kafka.UnknownTopicOrPartition)
			}
			return nil
		}},
	}
	for _, step := range steps {
		if err := step.step(); err != nil {
			return nil, checks.Failf(detail, "%s: %v", step.name, err)
		}
		detail[step.name] = "ok"
	}
	return detail, nil
}

func (s *suite) expectPartitions(topic string, count int) error {
	conn, err := s.controller()
	if err != nil {
		return err
	}
	defer conn.Close()
	partitions, err := conn.ReadPartitions(topic)
	if err != nil {
		return err
	}
	if len(partitions) != count {
		return fmt.Errorf("%s has %d partitions, want %d: %+v", topic, len(partitions), count, partitions)
	}
	return nil
}

func (s *suite) deleteTopic(topic string) error {
	conn, err := s.controller()
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.DeleteTopics(topic)
}
