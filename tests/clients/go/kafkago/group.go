// The consumer group check of the kafka-go program: a Reader with a GroupID fetches the first
// half of a topic's records, commits them (CommitMessages, synchronous: CommitInterval 0) and
// closes; a new Reader of the same group resumes right after the committed offset.
package main

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"time"

	"fastlog-clients/checks"

	kafka "github.com/segmentio/kafka-go"
)

const memberLimit = 15 * time.Second

// consumerGroupCommitResume runs on -existing-topic when given (records another client wrote,
// so the group path is checked apart from this client's produce requests), else on records
// it writes itself.
func (s *suite) consumerGroupCommitResume(existing string) (interface{}, error) {
	topic, total, err := s.groupTopic(existing)
	if err != nil {
		return nil, err
	}
	firstMemberEat := total / 2 // records the first Reader fetches and commits
	groupID := checks.TopicName(s.prefix, "group")
	detail := map[string]interface{}{"group": groupID, "topic": topic}
	first, err := s.readAsMember(groupID, topic, firstMemberEat, true)
	detail["first_member_offsets"] = offsetsOf(first)
	if err != nil {
		return nil, checks.Failf(detail, "first member: %v", err)
	}
	second, err := s.readAsMember(groupID, topic, total-firstMemberEat, false)
	detail["second_member_offsets"] = offsetsOf(second)
	if err != nil {
		return nil, checks.Failf(detail, "second member: %v", err)
	}
	if second[0].Offset != int64(firstMemberEat) || string(second[0].Key) != fmt.Sprintf("key-%d", firstMemberEat) {
		return nil, checks.Failf(detail, "second member started at offset %d key %q, want %d", second[0].Offset, second[0].Key, firstMemberEat)
	}
	return detail, nil
}

// groupTopic is the topic the group check reads and how many records it holds (keyed key-i).
func (s *suite) groupTopic(existing string) (string, int, error) {
	if existing != "" {
		return existing, checks.ExistingRecords, nil
	}
	topic := checks.TopicName(s.prefix, "group")
	if err := s.createTopic(topic, 1); err != nil {
		return "", 0, checks.Failf(nil, "CreateTopics %s: %v", topic, err)
	}
	if err := s.produce(topic, nil, messagesFor("group", 10)); err != nil {
		return "", 0, checks.Failf(nil, "produce: %v", err)
	}
	return topic, 10, nil
}

// readAsMember joins the group with a new Reader, fetches count messages, commits them when
// asked, and closes the Reader (leaving the group). The Reader's error log goes into errors.
func (s *suite) readAsMember(groupID, topic string, count int, commit bool) ([]kafka.Message, error) {
	var errorLog bytes.Buffer
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{s.bootstrap}, GroupID: groupID, Topic: topic, Dialer: s.dialer,
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 250 * time.Millisecond,
		HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second,
		ErrorLogger: log.New(&errorLog, "", 0),
	})
	defer reader.Close()
	ctx, cancel := context.WithTimeout(context.Background(), memberLimit)
	defer cancel()
	var fetched []kafka.Message
	for len(fetched) < count {
		message, err := reader.FetchMessage(ctx)
		if err != nil {
			return fetched, fmt.Errorf("fetch %d of %d: %v (reader errors: %s)", len(fetched)+1, count, err, lastLines(errorLog.String(), 3))
		}
		fetched = append(fetched, message)
	}
	if commit {
		if err := reader.CommitMessages(ctx, fetched[len(fetched)-1]); err != nil {
			return fetched, fmt.Errorf("commit: %v", err)
		}
	}
	return fetched, nil
}

func offsetsOf(messages []kafka.Message) []int64 {
	offsets := make([]int64, len(messages))
	for i, message := range messages {
		offsets[i] = message.Offset
	}
	return offsets
}

// lastLines is the last n lines of a log, for error details.
func lastLines(text string, n int) string {
	lines := bytes.Split(bytes.TrimSpace([]byte(text)), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte(" | ")))
}
