package rwsplit

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A call ends exactly once whatever its outcome: failed reads and writes
// are not counted as served and leave nothing in flight.
func TestAccountingAfterFailures(t *testing.T) {
	c := newCluster(t, 1, WithHysteresis(100, 1))
	ctx := context.Background()
	boom := errors.New("syntax error")
	c.replicas[0].SetQueryError(boom)
	c.primary.SetExecError(boom)
	for range 3 {
		if _, err := c.db.QueryContext(ctx, "SELECT 1"); !errors.Is(err, boom) {
			t.Fatalf("query: %v", err)
		}
		if _, err := c.db.ExecContext(ctx, "UPDATE t SET a = 1"); !errors.Is(err, boom) {
			t.Fatalf("exec: %v", err)
		}
	}
	c.replicas[0].SetQueryError(nil)
	c.primary.SetExecError(nil)
	served(t, ctx, c.db, "SELECT 1")
	if _, err := c.db.ExecContext(ctx, "UPDATE t SET a = 1"); err != nil {
		t.Fatal(err)
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	for _, n := range c.db.Stats().Nodes {
		if n.InFlight != 0 {
			t.Errorf("%s: %d calls in flight after every call returned", n.Name, n.InFlight)
		}
		if n.Role == RoleReplica && n.Reads != 1 {
			t.Errorf("%s counted %d reads, want 1", n.Name, n.Reads)
		}
		if n.Role == RolePrimary && (n.Writes != 1 || n.Reads != 0) {
			t.Errorf("%s counted %d writes and %d reads, want 1 and 0", n.Name, n.Writes, n.Reads)
		}
	}
}

func TestPeakEWMA(t *testing.T) {
	r := testReplicas(1)[0]
	now := monotime()
	measure(r, int64(time.Millisecond), now)
	// A slow answer raises the estimate once the next call, timed at
	// once, confirms it.
	r.observe(int64(40*time.Millisecond), now+1)
	if r.measured.Load() {
		t.Error("after a slow answer the next call is not timed")
	}
	r.observe(int64(45*time.Millisecond), now+2)
	if got := r.latencyAt(now + 2); got < float64(39*time.Millisecond) {
		t.Errorf("two slow answers did not raise the estimate: %v", time.Duration(got))
	}
	// Fast samples bring it down over about LatencyDecay.
	for i := int64(1); i <= 40; i++ {
		now += int64(LatencyDecay / 10)
		r.observe(int64(time.Millisecond), now)
	}
	if got := r.latencyAt(now); got > float64(2*time.Millisecond) {
		t.Errorf("estimate %v after 4 decay times of 1ms samples", time.Duration(got))
	}
}

// One slow answer followed by a fast one is noise (a pause, a connection's
// handshake): the estimate does not move, and sampling resumes.
func TestPeakEWMAIgnoresALoneOutlier(t *testing.T) {
	r := testReplicas(1)[0]
	now := monotime()
	measure(r, int64(100*time.Microsecond), now)
	r.observe(int64(5*time.Millisecond), now+1)
	r.observe(int64(110*time.Microsecond), now+2)
	if got := r.latencyAt(now + 2); got > float64(120*time.Microsecond) {
		t.Errorf("a lone 5ms outlier moved a 100µs estimate to %v", time.Duration(got))
	}
	if !r.measured.Load() {
		t.Error("every call still timed after the outlier was dropped")
	}
}

// An outlier (a connection's handshake) on a busy node is flushed by the
// fast answers that follow it within milliseconds, not held for seconds.
func TestPeakEWMAFlushesOutlier(t *testing.T) {
	r := testReplicas(1)[0]
	now := monotime()
	measure(r, int64(time.Millisecond), now)
	r.observe(int64(300*time.Millisecond), now+1)
	r.observe(int64(300*time.Millisecond), now+1) // confirmed
	for range 30 {
		now += int64(time.Millisecond)
		r.observe(int64(time.Millisecond), now)
	}
	if got := r.latencyAt(now); got > float64(2*time.Millisecond) {
		t.Errorf("estimate %v after 30 fast samples in 30ms following one 300ms outlier", time.Duration(got))
	}
	// A lower sample weighs at least minSampleWeight, however soon it
	// comes: one at 60% of the estimate, 1ms later, takes a fifth of the
	// way down.
	before := r.latencyAt(now)
	now += int64(time.Millisecond)
	r.observe(int64(0.6*before), now)
	if got, want := r.latencyAt(now), before*(1-0.4*minSampleWeight); got > want*1.001 || got < 0.6*before {
		t.Errorf("a sample at 60%% moved the estimate from %v to %v, want about %v", time.Duration(before), time.Duration(got), time.Duration(want))
	}
}

// A node the policy avoids is judged on its latest probe.
func TestObserveIdle(t *testing.T) {
	r := testReplicas(1)[0]
	now := monotime()
	r.observe(int64(400*time.Millisecond), now)
	r.observeIdle(int64(time.Millisecond), now+int64(time.Second))
	if got := r.latencyAt(now + int64(time.Second)); got != float64(time.Millisecond) {
		t.Errorf("estimate %v after an idle probe of 1ms", time.Duration(got))
	}
	r.observeIdle(int64(50*time.Millisecond), now+int64(2*time.Second))
	if got := r.latencyAt(now + int64(2*time.Second)); got != float64(50*time.Millisecond) {
		t.Errorf("estimate %v after an idle probe of 50ms", time.Duration(got))
	}
}
