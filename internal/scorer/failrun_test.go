package scorer

import (
	"errors"
	"testing"
)

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
