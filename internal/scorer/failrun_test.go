package scorer

import (
	"errors"
	"fmt"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/produce"
)

// TestMissingTopicIsARefusal: each way kafka-go reports a topic that is
// not there is a refusal (told to the user as one), not a transient
// failure: the broker's error code, and the client's own metadata miss,
// bare or wrapped as Client.Produce wraps it.
func TestMissingTopicIsARefusal(t *testing.T) {
	for _, err := range []error{
		kafka.UnknownTopicOrPartition,
		fmt.Errorf("write 200 records to scores: %w", kafka.UnknownTopicOrPartition),
		fmt.Errorf("kafka.(*Client).Produce: %w", produce.NewError(protocol.NewErrNoTopic("scores"))),
		fmt.Errorf("kafka.(*Client).Produce: %w", protocol.ErrNoTopic),
		kafka.TopicAuthorizationFailed,
	} {
		if got := classifyWrite(err); got != writeConfig {
			t.Errorf("classifyWrite(%v) = %v, want a refusal", err, got)
		}
	}
	if got := classifyWrite(errors.New("i/o timeout")); got != writeTransient {
		t.Errorf("a timeout is classified %v", got)
	}
}

// TestAFailureOfAnotherKindIsWarnedAtOnce: within a run, warnings are
// spaced out, except that a failure of another kind than the last one
// warned about is warned at once.
func TestAFailureOfAnotherKindIsWarnedAtOnce(t *testing.T) {
	var f failureRun
	err := errors.New("x")
	if _, warn := f.fail(err, "transient"); !warn {
		t.Fatal("the first failure of a run is not warned")
	}
	if _, warn := f.fail(err, "transient"); warn {
		t.Error("a second failure of the same kind is warned at once")
	}
	if _, warn := f.fail(err, "refused"); !warn {
		t.Error("a failure of another kind is not warned at once")
	}
	if _, warn := f.fail(err, "refused"); warn {
		t.Error("the same kind is warned twice in a row")
	}
	f.ok()
	if _, warn := f.fail(err, "refused"); !warn {
		t.Error("the first failure of a new run is not warned")
	}
}
