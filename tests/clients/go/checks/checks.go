// Package checks runs the client checks of tests/clients/go: each check is bounded in time and
// reports one JSON line {"check", "ok", "detail", "skipped"} on stdout; Exit ends the program
// non-zero when any check failed. Shared by the sarama and kafka-go programs.
package checks

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// Result is one check's JSON line.
type Result struct {
	Check   string      `json:"check"`
	OK      bool        `json:"ok"`
	Detail  interface{} `json:"detail,omitempty"`
	Skipped string      `json:"skipped,omitempty"`
}

// Skip is returned by a check that the client version has no API for; its text says why.
type Skip string

func (s Skip) Error() string { return string(s) }

// Failure is returned by a check that failed part-way, with what it saw until then.
type Failure struct {
	Err    error
	Detail interface{}
}

func (f *Failure) Error() string { return f.Err.Error() }

// Fail wraps err with the detail gathered so far.
func Fail(err error, detail interface{}) error { return &Failure{Err: err, Detail: detail} }

// Failf is Fail with a formatted message.
func Failf(detail interface{}, format string, args ...interface{}) error {
	return Fail(fmt.Errorf(format, args...), detail)
}

// Runner runs checks one after the other and remembers whether any failed.
type Runner struct {
	failures int
	out      sync.Mutex
}

// Func is a check: its detail on success, an error (Skip, Failure or any) otherwise.
type Func func() (interface{}, error)

// Run runs check within limit and prints its result line. A check still running at the limit
// is reported as failed and left behind (the program exits soon after).
func (r *Runner) Run(name string, limit time.Duration, check Func) Result {
	outcome := make(chan Result, 1)
	go func() { outcome <- resultOf(name, check) }()
	var result Result
	select {
	case result = <-outcome:
	case <-time.After(limit):
		result = Result{Check: name, Detail: fmt.Sprintf("timed out after %s", limit)}
	}
	r.Report(result)
	return result
}

// Report prints a result line and counts a failure.
func (r *Runner) Report(result Result) {
	r.out.Lock()
	defer r.out.Unlock()
	if !result.OK {
		r.failures++
	}
	line, err := json.Marshal(result)
	if err != nil {
		line, _ = json.Marshal(Result{Check: result.Check, Detail: fmt.Sprintf("%+v", result.Detail)})
	}
	fmt.Println(string(line))
}

// Exit ends the program: status 1 when any check failed.
func (r *Runner) Exit() {
	if r.failures > 0 {
		os.Exit(1)
	}
	os.Exit(0)
}

func resultOf(name string, check Func) (result Result) {
	result.Check = name
	defer func() {
		if p := recover(); p != nil {
			result.OK = false
			result.Detail = fmt.Sprintf("panic: %v", p)
		}
	}()
	detail, err := check()
	switch e := err.(type) {
	case nil:
		result.OK, result.Detail = true, detail
	case Skip:
		result.OK, result.Skipped, result.Detail = true, string(e), detail
	case *Failure:
		result.Detail = map[string]interface{}{"error": e.Err.Error(), "seen": e.Detail}
	default:
		result.Detail = map[string]interface{}{"error": err.Error(), "seen": detail}
	}
	return result
}

// TopicName is a topic name unique to this run: prefix-suffix, safe for Kafka.
func TopicName(prefix, suffix string) string {
	name := prefix + "-" + suffix
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, name)
}

// DefaultPrefix names this run's topics when the caller gives no prefix.
func DefaultPrefix(client string) string {
	return fmt.Sprintf("%s-%d-%d", client, os.Getpid(), time.Now().UnixNano()%1000000)
}

// Payload is a record value that compresses well and names its position.
func Payload(label string, index int) []byte {
	return []byte(fmt.Sprintf("%s value %d: %s", label, index, strings.Repeat("fastlog ", 40)))
}

// Poll calls probe every 100ms until it returns true or limit passes.
func Poll(limit time.Duration, probe func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if probe() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ExistingRecords is how many records the caller writes to -existing-topic: key-i and
// "existing value i" at offset i.
const ExistingRecords = 5

// ExpectExisting checks the index-th record read from -existing-topic.
func ExpectExisting(index int, offset int64, key, value []byte) error {
	wantKey, wantValue := fmt.Sprintf("key-%d", index), fmt.Sprintf("existing value %d", index)
	if offset != int64(index) || string(key) != wantKey || string(value) != wantValue {
		return Failf(nil, "record %d: got offset %d key %q value %q, want offset %d key %q value %q",
			index, offset, key, value, index, wantKey, wantValue)
	}
	return nil
}
