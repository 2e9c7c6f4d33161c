// The admin check of the sarama program, with sarama's ClusterAdmin: create a topic with a
// config, describe it (DescribeTopics, DescribeConfig, ListTopics), alter its config
// (AlterConfig) and partitions (CreatePartitions), delete records, delete the topic. sarama
// 1.22 ignores error codes without messages in several answers, so each change is read back.
package main

import (
	"fmt"
	"time"

	"fastlog-clients/checks"

	"github.com/Shopify/sarama"
)

type adminRun struct {
	suite  *suite
	admin  sarama.ClusterAdmin
	topic  string
	detail map[string]interface{}
}

func (s *suite) admin() (interface{}, error) {
	if err := s.versionGate("ClusterAdmin", sarama.V0_10_0_0); err != nil {
		return nil, err // NewClusterAdmin calls client.Controller(), ErrUnsupportedVersion below 0.10
	}
	admin, err := sarama.NewClusterAdmin(s.bootstrap, s.config)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	run := &adminRun{suite: s, admin: admin, topic: checks.TopicName(s.prefix, "admin"), detail: map[string]interface{}{}}
	steps := []struct {
		name string
		step func() error
	}{
		{"create", run.create},
		{"describe_topics", func() error { return run.expectPartitions(2) }},
		{"describe_config", func() error { return run.expectRetention("3600000") }},
		{"list_topics", run.listTopics},
		{"alter_config", run.alterRetention},
		{"create_partitions", run.addPartition},
		{"delete_records", run.deleteRecords},
		{"delete", run.delete},
	}
	for _, step := range steps {
		if err := step.step(); err != nil {
			return nil, checks.Failf(run.detail, "%s: %v", step.name, err)
		}
		run.detail[step.name] = "ok"
	}
	return run.detail, nil
}

func (r *adminRun) create() error {
	retention := "3600000"
	detail := &sarama.TopicDetail{
		NumPartitions: 2, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"retention.ms": &retention},
	}
	return r.admin.CreateTopic(r.topic, detail, false)
}

func (r *adminRun) expectPartitions(count int) error {
	topics, err := r.admin.DescribeTopics([]string{r.topic})
	if err != nil {
		return err
	}
	if len(topics) != 1 || topics[0].Err != sarama.ErrNoError || len(topics[0].Partitions) != count {
		return fmt.Errorf("described %s, want one topic with %d partitions", describeTopics(topics), count)
	}
	return nil
}

func describeTopics(topics []*sarama.TopicMetadata) string {
	text := ""
	for _, topic := range topics {
		text += fmt.Sprintf("[%s: %v, %d partitions]", topic.Name, topic.Err, len(topic.Partitions))
	}
	return text
}

func (r *adminRun) expectRetention(want string) error {
	resource := sarama.ConfigResource{Type: sarama.TopicResource, Name: r.topic, ConfigNames: []string{"retention.ms"}}
	entries, err := r.admin.DescribeConfig(resource)
	if err != nil {
		return err
	}
	for _, entry := range entries {
		if entry.Name == "retention.ms" && entry.Value == want {
			return nil
		}
	}
	return fmt.Errorf("retention.ms is not %s in %+v", want, entries)
}

func (r *adminRun) listTopics() error {
	topics, err := r.admin.ListTopics()
	if err != nil {
		return err
	}
	listed, found := topics[r.topic]
	if !found || listed.NumPartitions != 2 || listed.ConfigEntries["retention.ms"] == nil {
		return fmt.Errorf("ListTopics gave %+v for %s (of %d topics)", listed, r.topic, len(topics))
	}
	return nil
}

func (r *adminRun) alterRetention() error {
	retention := "7200000"
	err := r.admin.AlterConfig(sarama.TopicResource, r.topic, map[string]*string{"retention.ms": &retention}, false)
	if err != nil {
		return err
	}
	return r.expectRetention(retention)
}

func (r *adminRun) addPartition() error {
	if err := r.admin.CreatePartitions(r.topic, 3, nil, false); err != nil {
		return err
	}
	return r.expectPartitions(3)
}

// deleteRecords writes three records to partition 0 and deletes those before offset 2.
func (r *adminRun) deleteRecords() error {
	if err := r.suite.produce(r.suite.config, recordsFor(r.topic, "admin", 3)); err != nil {
		return fmt.Errorf("produce: %v", err)
	}
	if err := r.admin.DeleteRecords(r.topic, map[int32]int64{0: 2}); err != nil {
		return err
	}
	client, err := sarama.NewClient(r.suite.bootstrap, r.suite.config)
	if err != nil {
		return err
	}
	defer client.Close()
	earliest, err := client.GetOffset(r.topic, 0, sarama.OffsetOldest)
	if err != nil || earliest != 2 {
		return fmt.Errorf("earliest offset %d (%v) after deleting below 2", earliest, err)
	}
	return nil
}

func (r *adminRun) delete() error {
	if err := r.admin.DeleteTopic(r.topic); err != nil {
		return err
	}
	gone := checks.Poll(5*time.Second, func() bool {
		topics, err := r.admin.DescribeTopics([]string{r.topic})
		return err == nil && len(topics) == 1 && topics[0].Err == sarama.ErrUnknownTopicOrPartition
	})
	if !gone {
		return fmt.Errorf("%s still described 5s after DeleteTopic", r.topic)
	}
	return nil
}
