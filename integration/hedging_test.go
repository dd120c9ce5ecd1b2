package integration

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// The hedge bounds of these tests: a read left unanswered for three times
// its node's latency estimate, at least 20ms and at most 200ms, is sent to
// the other replica too. The budget lets every read hedge, because half of
// the reads meet the frozen replica until it is taken out.
var testHedging = rwsplit.Hedging{Floor: 20 * time.Millisecond, Ceiling: 200 * time.Millisecond, Budget: 1}

// frozenReplicaUnderLoadHedged: 8 readers with 2s deadlines; one replica is
// frozen (SIGSTOP on all its processes) mid-load. No read may fail: the
// reads caught on it are hedged to the other replica. Reads that start a
// second after the freeze return within the hedge bound (a loose ceiling
// here; the distribution is logged). After a thaw the replica rejoins.
func frozenReplicaUnderLoadHedged(t *testing.T, c *rwsplittest.LocalCluster, victim *rwsplittest.LocalNode, query string) {
	healOnCleanup(t, c)
	db := openCluster(t, c, rwsplit.WithHealthCheckInterval(fastInterval),
		rwsplit.WithHealthCheckTimeout(300*time.Millisecond),
		rwsplit.WithPolicy(rwsplit.RoundRobin()), rwsplit.WithHedging(testHedging))
	for i := range 20 { // warm both pools and latency estimates
		if _, err := readPort(db, query, i%2 == 1, readDeadline); err != nil {
			t.Fatalf("read before the freeze: %v", err)
		}
	}

	type sample struct {
		start time.Time
		took  time.Duration
		err   error
	}
	var mu sync.Mutex
	var samples []sample
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				_, err := readPort(db, query, (w+i)%2 == 1, readDeadline)
				mu.Lock()
				samples = append(samples, sample{start, time.Since(start), err})
				mu.Unlock()
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	if err := victim.Freeze(); err != nil {
		close(stop)
		wg.Wait()
		t.Fatalf("freeze %s: %v", victim.Name(), err)
	}
	frozen := time.Now()
	defer victim.Thaw()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	var failed int
	var late []time.Duration
	for _, s := range samples {
		if s.err != nil {
			failed++
			if failed <= 5 {
				t.Errorf("read at t%+v of the freeze failed: %v", s.start.Sub(frozen).Round(time.Millisecond), s.err)
			}
		}
		if s.start.After(frozen.Add(time.Second)) {
			late = append(late, s.took)
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d reads failed with a frozen replica and hedging on", failed, len(samples))
	}
	slices.Sort(late)
	if len(late) == 0 {
		t.Fatal("no read started a second after the freeze")
	}
	p := func(q float64) time.Duration { return late[int(q*float64(len(late)-1))].Round(time.Millisecond) }
	t.Logf("measured: %d reads; reads starting ≥1s after the freeze: %d, p50 %v p99 %v max %v (hedge ceiling %v)",
		len(samples), len(late), p(0.5), p(0.99), late[len(late)-1].Round(time.Millisecond), testHedging.Ceiling)
	if max := late[len(late)-1]; max > time.Second { // loose: 2 cores under -race
		t.Errorf("slowest read starting a second after the freeze took %v", max)
	}
	var hedges uint64
	for _, n := range db.Stats().Nodes {
		hedges += n.Hedges
	}
	t.Logf("measured: %d hedged reads; %s", hedges, statsDump(db))

	if err := victim.Thaw(); err != nil {
		t.Fatalf("thaw: %v", err)
	}
	eligible, served := waitRejoin(t, db, victim, query, time.Now(), 10*time.Second)
	t.Logf("measured: %s eligible %v after Thaw, serving after %v", victim.Name(), eligible.Round(time.Millisecond), served.Round(time.Millisecond))
}
