// The consumer group check of the sarama program: a member of a new group consumes the first
// records of a topic, marks them (committed when its session ends), and leaves; the committed
// offset is read back with OffsetFetch; a new member of the same group resumes right after it.
package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"fastlog-clients/checks"

	"github.com/Shopify/sarama"
)

const (
	groupRecords   = 10
	firstMemberEat = 4 // records the first member consumes and commits
	memberLimit    = 15 * time.Second
)

// claimHandler consumes one partition's claim, marks what it consumes, and ends its session
// once it has `want` records.
type claimHandler struct {
	want    int
	lock    sync.Mutex
	offsets []int64
	keys    []string
	done    chan struct{}
	once    sync.Once
}

func newClaimHandler(want int) *claimHandler {
	return &claimHandler{want: want, done: make(chan struct{})}
}

func (h *claimHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *claimHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *claimHandler) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for message := range claim.Messages() {
		session.MarkMessage(message, "")
		if h.record(message) {
			h.once.Do(func() { close(h.done) })
			return nil
		}
	}
	return nil
}

// record notes a message; true once the handler has all it wants.
func (h *claimHandler) record(message *sarama.ConsumerMessage) bool {
	h.lock.Lock()
	defer h.lock.Unlock()
	h.offsets = append(h.offsets, message.Offset)
	h.keys = append(h.keys, string(message.Key))
	return len(h.offsets) >= h.want
}

func (h *claimHandler) seen() ([]int64, []string) {
	h.lock.Lock()
	defer h.lock.Unlock()
	return append([]int64(nil), h.offsets...), append([]string(nil), h.keys...)
}

func (s *suite) consumerGroupCommitResume() (interface{}, error) {
	topic := checks.TopicName(s.prefix, "group")
	groupID := checks.TopicName(s.prefix, "group")
	if err := s.versionGate("ConsumerGroup", sarama.V0_10_2_0); err != nil {
		return nil, err // consumer_group.go: "consumer groups require Version to be >= V0_10_2_0"
	}
	if createdBy, err := s.createTopic(topic, 1); err != nil {
		return nil, checks.Failf(nil, "create %s (%s): %v", topic, createdBy, err)
	}
	if err := s.produce(s.config, recordsFor(topic, "group", groupRecords)); err != nil {
		return nil, checks.Failf(nil, "produce: %v", err)
	}
	detail := map[string]interface{}{"group": groupID}
	first := newClaimHandler(firstMemberEat)
	if err := s.runMember(groupID, topic, first); err != nil {
		return nil, checks.Failf(detail, "first member: %v", err)
	}
	detail["first_member_offsets"], _ = first.seen()
	committed, err := s.committedOffset(groupID, topic)
	detail["committed"] = committed
	if err != nil || committed != firstMemberEat {
		return nil, checks.Failf(detail, "committed offset %d (%v), want %d", committed, err, firstMemberEat)
	}
	second := newClaimHandler(groupRecords - firstMemberEat)
	if err := s.runMember(groupID, topic, second); err != nil {
		return nil, checks.Failf(detail, "second member: %v", err)
	}
	offsets, keys := second.seen()
	detail["second_member_offsets"] = offsets
	if offsets[0] != firstMemberEat || keys[0] != fmt.Sprintf("key-%d", firstMemberEat) {
		return nil, checks.Failf(detail, "second member started at offset %d key %q, want %d", offsets[0], keys[0], firstMemberEat)
	}
	return detail, nil
}

// runMember joins the group with a new ConsumerGroup, consumes until the handler is done,
// then closes it (committing what the handler marked and leaving the group).
func (s *suite) runMember(groupID, topic string, handler *claimHandler) error {
	group, err := sarama.NewConsumerGroup(s.bootstrap, groupID, s.config)
	if err != nil {
		return err
	}
	groupErrors := collectErrors(group.Errors())
	ctx, cancel := context.WithCancel(context.Background())
	consumed := make(chan error, 1)
	go func() { consumed <- consumeUntilCancelled(ctx, group, topic, handler) }()
	var outcome error
	select {
	case <-handler.done:
	case outcome = <-consumed:
		if outcome == nil {
			outcome = fmt.Errorf("Consume stopped before the records came")
		}
	case <-time.After(memberLimit):
		outcome = fmt.Errorf("no %d records within %s", handler.want, memberLimit)
	}
	cancel()
	if closeErr := group.Close(); closeErr != nil && outcome == nil {
		outcome = fmt.Errorf("close: %v", closeErr)
	}
	if outcome != nil {
		return fmt.Errorf("%v (group errors: %v)", outcome, groupErrors())
	}
	return nil
}

// consumeUntilCancelled calls Consume again after each rebalance, as sarama's users do.
func consumeUntilCancelled(ctx context.Context, group sarama.ConsumerGroup, topic string, handler *claimHandler) error {
	for ctx.Err() == nil {
		if err := group.Consume(ctx, []string{topic}, handler); err != nil {
			return err
		}
		select {
		case <-handler.done:
			return nil
		default:
		}
	}
	return nil
}

// collectErrors drains an error channel in the background; the function returns what came.
func collectErrors(errs <-chan error) func() []string {
	var lock sync.Mutex
	var seen []string
	go func() {
		for err := range errs {
			lock.Lock()
			seen = append(seen, err.Error())
			lock.Unlock()
		}
	}()
	return func() []string {
		lock.Lock()
		defer lock.Unlock()
		return append([]string(nil), seen...)
	}
}

// committedOffset asks the group coordinator (OffsetFetch) for the group's offset of partition 0.
func (s *suite) committedOffset(groupID, topic string) (int64, error) {
	client, err := sarama.NewClient(s.bootstrap, s.config)
	if err != nil {
		return -1, err
	}
	defer client.Close()
	coordinator, err := client.Coordinator(groupID)
	if err != nil {
		return -1, err
	}
	request := &sarama.OffsetFetchRequest{ConsumerGroup: groupID, Version: 1}
	request.AddPartition(topic, 0)
	response, err := coordinator.FetchOffset(request)
	if err != nil {
		return -1, err
	}
	block := response.GetBlock(topic, 0)
	if block == nil {
		return -1, fmt.Errorf("no offset for %s-0 in the answer", topic)
	}
	if block.Err != sarama.ErrNoError {
		return block.Offset, block.Err
	}
	return block.Offset, nil
}
