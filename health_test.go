package rwsplit

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit/internal/fakedriver"
)

// waitFor polls cond until it holds or the (loose) ceiling passes.
func waitFor(t *testing.T, ceiling time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ceiling)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, ceiling)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func nodeStats(db *DB, name string) NodeStats {
	for _, n := range db.Stats().Nodes {
		if n.Name == name {
			return n
		}
	}
	return NodeStats{}
}

// readLoad runs concurrent readers until stop is closed and returns the
// number of reads and of failed reads, and who served them.
func readLoad(db *DB, readers int, stop <-chan struct{}) (reads, failed *atomic.Int64, wait func(), served *sync.Map) {
	reads, failed = new(atomic.Int64), new(atomic.Int64)
	served = new(sync.Map)
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var node string
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err := db.QueryRowContext(ctx, "SELECT 1").Scan(&node)
				cancel()
				reads.Add(1)
				if err != nil {
					failed.Add(1)
					continue
				}
				v, _ := served.LoadOrStore(node, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		})
	}
	return reads, failed, wg.Wait, served
}

func TestReplicaDownUnderLoadCostsNoRead(t *testing.T) {
	c := newCluster(t, 2, WithHealthCheckInterval(20*time.Millisecond), WithSlowStart(0), WithNodeNames("p", "r1", "r2"))
	stop := make(chan struct{})
	reads, failed, wait, _ := readLoad(c.db, 8, stop)
	time.Sleep(100 * time.Millisecond)
	c.replicas[0].SetDown(true)
	waitFor(t, 5*time.Second, "r1 taken out", func() bool { return !nodeStats(c.db, "r1").Up })
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d reads failed while a replica went down", failed.Load(), reads.Load())
	}
	r1 := nodeStats(c.db, "r1")
	if r1.Ejections != 1 || r1.Eligible || !strings.Contains(r1.LastError, "refused") {
		t.Errorf("r1 after going down: %+v", r1)
	}

	// Only r2 serves now.
	for range 50 {
		if got := served(t, context.Background(), c.db, "SELECT 1"); got != "r2" {
			t.Fatalf("read served by %s while r1 is down", got)
		}
	}

	// Back up: reinstated after two good probes, and used again.
	c.replicas[0].SetDown(false)
	waitFor(t, 5*time.Second, "r1 back", func() bool { return nodeStats(c.db, "r1").Eligible })
	waitFor(t, 5*time.Second, "r1 serving reads", func() bool {
		return served(t, context.Background(), c.db, "SELECT 1") == "r1"
	})
}

func TestFailingTrafficTakesReplicaOutBeforeAProbe(t *testing.T) {
	// Probes every hour: only the first round at New runs.
	c := newCluster(t, 2, WithHealthCheckInterval(time.Hour), WithNodeNames("p", "r1", "r2"), WithPolicy(RoundRobin()))
	waitFor(t, 5*time.Second, "first probe round", func() bool { return c.replicas[1].Count(fakedriver.Query) > 0 })
	c.replicas[0].SetDown(true)
	for range 20 {
		if got := served(t, context.Background(), c.db, "SELECT 1"); got != "r2" {
			t.Fatalf("read served by %s", got)
		}
	}
	r1 := nodeStats(c.db, "r1")
	if r1.Up || r1.Retries != 2 || r1.Errors != 2 {
		t.Errorf("r1 after two failed reads: up=%v retries=%d errors=%d; want down after 2", r1.Up, r1.Retries, r1.Errors)
	}
}

func TestSlowStartShare(t *testing.T) {
	rs := testReplicas(2)
	db := &DB{cfg: config{slowStart: 4 * time.Second}}
	for _, r := range rs {
		r.owner = db
	}
	snap := newSnapshot(RoundRobin(), rs)
	// Half-way through its window the returning node keeps half of the
	// reads the policy gives it: a quarter of all.
	rs[0].rampStart.Store(monotime() - int64(2*time.Second))
	const picks = 10000
	got := 0
	for range picks {
		if snap.pick(PickInfo{}) == rs[0] {
			got++
		}
	}
	if !within(got, picks/4, 0.08) {
		t.Errorf("returning node got %d of %d reads half-way through slow start, want about %d", got, picks, picks/4)
	}
	// After the window, its full share, and the ramp is cleared.
	rs[0].rampStart.Store(monotime() - int64(5*time.Second))
	snap.pick(PickInfo{})
	snap.pick(PickInfo{})
	if rs[0].rampStart.Load() != 0 {
		t.Error("ramp not cleared after the window")
	}
}

func TestHealthOptionsValidation(t *testing.T) {
	p := fakedriver.NewServer("p").DB()
	r := fakedriver.NewServer("r").DB()
	m := fakedriver.NewServer("m").DB()
	defer m.Close()
	tests := []struct {
		opt  Option
		want string
	}{
		{WithHealthCheckInterval(-time.Second), "negative interval"},
		{WithHealthCheckTimeout(-time.Second), "negative timeout"},
		{WithHysteresis(-1, 2), "negative count"},
		{WithMaxReplicationLag(-time.Second), "negative lag"},
		{WithSlowStart(-time.Second), "negative duration"},
		{WithMonitor(m), "1 handles for 2 nodes"},
		{WithMonitor(m, nil), "handle of replica 1 is nil"},
	}
	for _, tt := range tests {
		db, err := New(p, []*sql.DB{r}, tt.opt)
		if err == nil {
			db.Close()
			t.Errorf("New accepted an option that should fail with %q", tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error %q, want %q", err, tt.want)
		}
	}
	p.Close()
	r.Close()
}

func TestMonitorHandlesProbeAndAreClosed(t *testing.T) {
	ps, rs := fakedriver.NewServer("p"), fakedriver.NewServer("r")
	pm, rm := fakedriver.NewServer("pm"), fakedriver.NewServer("rm")
	db, err := New(ps.DB(), []*sql.DB{rs.DB()}, WithMonitor(pm.DB(), rm.DB()), WithHealthCheckInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "probes through the monitor handles", func() bool {
		return pm.Count(fakedriver.Ping) > 0 && rm.Count(fakedriver.Ping) > 0
	})
	if ps.Count(fakedriver.Ping)+rs.Count(fakedriver.Ping) != 0 {
		t.Error("probes used the traffic handles")
	}
	db.Close()
	if err := db.cfg.monitors[0].Ping(); err == nil {
		t.Error("monitor handle still open after Close")
	}
}

// A replica that real traffic takes out of rotation while its probes keep
// succeeding comes back only after reinstateAfter good probes counted from
// its ejection, not at the next one: the good probes before it do not
// count.
func TestTrafficEjectionKeepsHysteresis(t *testing.T) {
	c := newRoleCluster(t, "postgres", 1, WithHysteresis(2, 3))
	good := []probeResult{pgWritable(100, 1), pgStandby(100, 1)}
	playRounds(t, c.db, 5, good)
	c.replicas[0].SetDown(true)
	for range 2 { // two failed reads in a row take r1 out; each is retried on the primary
		if got := served(t, context.Background(), c.db, "SELECT 1"); got != "p" {
			t.Fatalf("read with r1 down served by %s", got)
		}
	}
	if nodeStats(c.db, "r1").Up {
		t.Fatal("r1 still up after two failed reads")
	}
	c.replicas[0].SetDown(false)
	for i := 1; i <= 3; i++ {
		playRound(t, c.db, good)
		if up := nodeStats(c.db, "r1").Up; up != (i == 3) {
			t.Errorf("after %d good probes since the ejection: up %v, want %v", i, up, i == 3)
		}
	}
}

// Measuring a MariaDB replica's lag compares parsed positions: it
// allocates nothing, however far back in the primary's recorded history
// the replica is.
func TestReplicaLagAllocatesNothing(t *testing.T) {
	c := newRoleCluster(t, "mariadb", 1)
	db := c.db
	now := monotime()
	for i := range historySize {
		pos, _ := newPosition(dialectMariaDB, "0-1-"+strconv.Itoa(100+i)+",1-1-"+strconv.Itoa(50+i))
		db.health.record(pos, now)
	}
	behind := mariaReplica("0-1-1,1-1-1")
	primary, _ := newPosition(dialectMariaDB, "0-1-500,1-1-500")
	if allocs := testing.AllocsPerRun(100, func() { db.replicaLag(db.nodeList()[1], behind, &primary, now) }); allocs != 0 {
		t.Errorf("replicaLag allocates %.0f times per call", allocs)
	}
}
