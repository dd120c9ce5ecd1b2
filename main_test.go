package rwsplit

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: the
// health loop, a poller, a hedge or a probe that Close did not stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
