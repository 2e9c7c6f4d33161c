// The offsets-by-time check of the kafka-go program: three records with timestamps a second
// apart, then Conn.ReadFirstOffset / ReadLastOffset / ReadOffset(time) (ListOffsets v1).
package main

import (
	"time"

	"fastlog-clients/checks"

	kafka "github.com/segmentio/kafka-go"
)

func (s *suite) offsetsByTime() (interface{}, error) {
	topic := checks.TopicName(s.prefix, "times")
	if err := s.createTopic(topic, 1); err != nil {
		return nil, checks.Failf(nil, "CreateTopics %s: %v", topic, err)
	}
	start := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	sent := messagesFor("times", 3)
	for i := range sent {
		sent[i].Time = start.Add(time.Duration(i) * time.Second)
	}
	if err := s.produce(topic, nil, sent); err != nil {
		return nil, checks.Failf(nil, "produce: %v", err)
	}
	conn, err := s.leader(topic)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	asked := map[string]func() (int64, error){
		"earliest":         conn.ReadFirstOffset,
		"latest":           conn.ReadLastOffset,
		"first_timestamp":  offsetAt(conn, start),
		"between_1st_2nd":  offsetAt(conn, start.Add(500*time.Millisecond)),
		"second_timestamp": offsetAt(conn, start.Add(time.Second)),
		"after_last":       offsetAt(conn, start.Add(time.Hour)),
	}
	want := map[string]int64{
		"earliest": 0, "latest": 3, "first_timestamp": 0, "between_1st_2nd": 1, "second_timestamp": 1, "after_last": -1,
	}
	answers := map[string]int64{}
	for name, ask := range asked {
		offset, err := ask()
		if err != nil {
			return nil, checks.Failf(answers, "%s: %v", name, err)
		}
		answers[name] = offset
	}
	for name, offset := range want {
		if answers[name] != offset {
			return nil, checks.Failf(answers, "%s answered %d, want %d", name, answers[name], offset)
		}
	}
	return answers, nil
}

func offsetAt(conn *kafka.Conn, at time.Time) func() (int64, error) {
	return func() (int64, error) { return conn.ReadOffset(at) }
}
