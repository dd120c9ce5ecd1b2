package rwsplit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit/internal/fakedriver"
)

func TestHedgingRescuesReadsFromAFrozenReplica(t *testing.T) {
	c := newCluster(t, 2, WithNodeNames("p", "r1", "r2"), WithPolicy(RoundRobin()),
		WithHealthCheckInterval(time.Hour), WithDialect("generic"),
		WithHedging(Hedging{Floor: 5 * time.Millisecond, Ceiling: 50 * time.Millisecond, Budget: 1}))
	for range 10 { // warm both pools and latency estimates
		served(t, context.Background(), c.db, "SELECT 1")
	}
	release := c.replicas[0].Block() // r1 stops answering, as under SIGSTOP
	defer release()

	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	onPrimary := 0
	for i := range 8 {
		wg.Go(func() {
			for range 10 {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				start := time.Now()
				var node string
				var err error
				if i%2 == 0 {
					err = c.db.QueryRowContext(ctx, "SELECT 1").Scan(&node)
				} else {
					rows, qerr := c.db.QueryContext(ctx, "SELECT 1")
					if err = qerr; err == nil {
						rows.Next()
						err = rows.Scan(&node)
						rows.Close()
					}
				}
				cancel()
				// r2 answers, or the primary when a hedge on r2 was slow
				// too (the last of the hedges), never the frozen r1.
				if err != nil || (node != "r2" && node != "p") {
					t.Errorf("read with r1 frozen: node %q, err %v", node, err)
				}
				mu.Lock()
				if node == "p" {
					onPrimary++
				}
				slowest = max(slowest, time.Since(start))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("slowest read with a frozen replica: %s (hedge ceiling 50ms); %d of 80 answered by the primary", slowest, onPrimary)
	if onPrimary > 8 {
		t.Errorf("%d of 80 reads answered by the primary; want most from r2", onPrimary)
	}
	if slowest > time.Second { // loose: CI is slow under -race; the bound is 50ms
		t.Errorf("slowest read took %s", slowest)
	}
	r1, r2 := nodeStats(c.db, "r1"), nodeStats(c.db, "r2")
	if r1.Hedges == 0 || r2.HedgeWins == 0 {
		t.Errorf("hedges from r1 %d, wins of r2 %d", r1.Hedges, r2.HedgeWins)
	}
	if r1.Errors != 0 {
		t.Errorf("cancelled losing attempts counted as r1's errors: %d", r1.Errors)
	}
	// The losing attempts were cancelled: nothing stays blocked on r1.
	waitFor(t, 5*time.Second, "attempts on r1 released", func() bool { return c.replicas[0].InFlight() == 0 })
}

func TestHedgingBudget(t *testing.T) {
	c := newCluster(t, 2, WithNodeNames("p", "r1", "r2"), WithPolicy(RoundRobin()), WithDialect("generic"),
		WithHealthCheckInterval(time.Hour), WithHedging(Hedging{Floor: time.Millisecond, Ceiling: time.Millisecond, Budget: 0.05}))
	c.replicas[0].SetLatency(20 * time.Millisecond)
	c.replicas[1].SetLatency(20 * time.Millisecond)
	const reads = 100
	for range reads {
		served(t, context.Background(), c.db, "SELECT 1")
	}
	var hedges uint64
	for _, n := range c.db.Stats().Nodes {
		hedges += n.Hedges
	}
	// Every read is slow enough to hedge; the budget allows 5% of them.
	if want := uint64(reads*0.05) + 1; hedges > want || hedges == 0 {
		t.Errorf("%d hedges for %d reads with a 5%% budget", hedges, reads)
	}
}

func TestNoHedgeWhenOff(t *testing.T) {
	c := newCluster(t, 2, WithDialect("generic"), WithHealthCheckInterval(time.Hour))
	for _, r := range c.replicas {
		r.SetLatency(10 * time.Millisecond)
	}
	for range 10 {
		served(t, context.Background(), c.db, "SELECT 1")
	}
	for _, n := range c.db.Stats().Nodes {
		if n.Hedges != 0 {
			t.Errorf("%s hedged %d reads with hedging off", n.Name, n.Hedges)
		}
	}
}

func TestHedgeFallsBackToPrimaryWithOneReplica(t *testing.T) {
	c := newCluster(t, 1, WithNodeNames("p", "r1"), WithDialect("generic"), WithHealthCheckInterval(time.Hour),
		WithHedging(Hedging{Floor: time.Millisecond, Ceiling: time.Millisecond, Budget: 1}))
	served(t, context.Background(), c.db, "SELECT 1")
	// Counted from here: the first read may be hedged too, when a loaded
	// machine makes it outlast the 1ms ceiling.
	hedges0, fallbacks0 := nodeStats(c.db, "r1").Hedges, c.db.Stats().Fallbacks
	release := c.replicas[0].Block()
	defer release()
	for range 5 {
		if got := served(t, context.Background(), c.db, "SELECT 1"); got != "p" {
			t.Errorf("read with the only replica frozen served by %s, want the primary as hedge", got)
		}
	}
	hedges, fallbacks := nodeStats(c.db, "r1").Hedges-hedges0, c.db.Stats().Fallbacks-fallbacks0
	if hedges != 5 || fallbacks != 5 {
		t.Errorf("hedges %d, fallbacks %d; want 5 and 5", hedges, fallbacks)
	}
}

func TestHedgeMovesOnWhenTheHedgeHangs(t *testing.T) {
	// r1 and r2 frozen: the hedge to r2 hangs too, and after the delay the
	// read is also sent to the primary, which answers.
	c := newCluster(t, 2, WithNodeNames("p", "r1", "r2"), WithDialect("generic"), WithHealthCheckInterval(time.Hour),
		WithPolicy(byName("r1")), WithHedging(Hedging{Floor: time.Millisecond, Ceiling: 5 * time.Millisecond, Budget: 1}))
	waitFor(t, 5*time.Second, "first probe round", func() bool {
		return c.replicas[0].Count(fakedriver.Ping) > 0 && c.replicas[1].Count(fakedriver.Ping) > 0
	})
	served(t, context.Background(), c.db, "SELECT 1")
	releases := []func(){c.replicas[0].Block(), c.replicas[1].Block()}
	defer func() {
		for _, r := range releases {
			r()
		}
	}()
	// No deadline: the losing attempts must be cancelled by the winner,
	// not by the caller's context.
	var node string
	if err := c.db.QueryRowContext(context.Background(), "SELECT 1").Scan(&node); err != nil || node != "p" {
		t.Errorf("read: node %q err %v, want the primary after a hung hedge", node, err)
	}
	for _, r := range c.replicas {
		waitFor(t, time.Second, "losing attempts released", func() bool { return r.InFlight() == 0 })
	}
}

func TestHedgeMovesOnWhenTheHedgeFails(t *testing.T) {
	// r1 frozen, r2 down: the hedge to r2 fails at once, and the read moves
	// on to the primary rather than wait on r1.
	c := newCluster(t, 2, WithNodeNames("p", "r1", "r2"), WithDialect("generic"), WithHealthCheckInterval(time.Hour),
		WithPolicy(byName("r1")), WithHedging(Hedging{Floor: time.Millisecond, Ceiling: 5 * time.Millisecond, Budget: 1}))
	served(t, context.Background(), c.db, "SELECT 1")
	release := c.replicas[0].Block()
	defer release()
	c.replicas[1].SetDown(true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var node string
	if err := c.db.QueryRowContext(ctx, "SELECT 1").Scan(&node); err != nil || node != "p" {
		t.Errorf("read: node %q err %v, want the primary after a failed hedge", node, err)
	}
}

func TestHedgedReadHonoursCancellation(t *testing.T) {
	c := newCluster(t, 2, WithDialect("generic"), WithHealthCheckInterval(time.Hour),
		WithHedging(Hedging{Floor: time.Millisecond, Ceiling: 5 * time.Millisecond, Budget: 1}))
	served(t, context.Background(), c.db, "SELECT 1")
	served(t, context.Background(), c.db, "SELECT 1")
	// Every node frozen: the hedges reach the primary and hang there too.
	releases := []func(){c.replicas[0].Block(), c.replicas[1].Block(), c.primary.Block()}
	defer func() {
		for _, r := range releases {
			r()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.db.QueryContext(ctx, "SELECT 1")
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		t.Fatalf("read with every node frozen: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancelled hedged read returned after %s", d)
	}
	for _, r := range append(c.replicas, c.primary) {
		waitFor(t, 5*time.Second, "attempts released", func() bool { return r.InFlight() == 0 })
	}
}

func TestHedgingValidation(t *testing.T) {
	p, r := fakedriver.NewServer("p").DB(), fakedriver.NewServer("r").DB()
	defer p.Close()
	defer r.Close()
	for _, h := range []Hedging{{Floor: time.Second, Ceiling: time.Millisecond}, {Budget: -1}} {
		if db, err := New(p, nil, WithHedging(h)); err == nil {
			db.Close()
			t.Errorf("New accepted %+v", h)
		}
	}
}

func BenchmarkQueryHedgingArmed(b *testing.B) {
	c := newCluster(b, 2, WithDialect("generic"), WithHealthCheckInterval(time.Hour), WithHedging(Hedging{}))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		rows, err := c.db.QueryContext(ctx, benchQuery, 1)
		if err != nil {
			b.Fatal(err)
		}
		rows.Close()
	}
}

// A hedged read that failed everywhere it was sent is retried only on a
// node it was not sent to: the hedge's nodes count as tried.
func TestFailedHedgedReadRetriesOnlyUntriedNodes(t *testing.T) {
	// No probes (the health loop is stopped): only the read asks r2.
	c := newRoleCluster(t, "generic", 2, WithPolicy(byName("r1")), WithFallbackLimit(0), WithHysteresis(100, 0),
		WithHedging(Hedging{Floor: time.Millisecond, Ceiling: time.Millisecond, Budget: 1}))
	served(t, context.Background(), c.db, "SELECT 1")
	// r1 answers late, with a connection error; the hedge to r2 fails at
	// once (r2 is down); the primary is out of reach (no fallback).
	c.replicas[0].SetLatency(30 * time.Millisecond)
	c.replicas[0].SetQueryError(errRefused)
	c.replicas[1].SetDown(true)
	c.db.nodeList()[2].db.Ping() // drops r2's pooled connection: each ask is one refused connect
	c.replicas[1].ResetCounts()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var node string
	if err := c.db.QueryRowContext(ctx, "SELECT 1").Scan(&node); err == nil {
		t.Fatalf("read served by %s with every node failing", node)
	}
	if n := c.replicas[1].Count(fakedriver.Refused); n != 1 {
		t.Errorf("r2, where the hedge failed, was asked %d times; want once", n)
	}
}

// The hedging budget is spent only on hedges that are sent: a timer that
// fires after the read was decided costs nothing.
func TestHedgeBudgetNotSpentOnDecidedRead(t *testing.T) {
	c := newCluster(t, 2, WithDialect("generic"), WithHealthCheckInterval(time.Hour),
		WithHedging(Hedging{Floor: time.Millisecond, Ceiling: time.Millisecond, Budget: 0.1}))
	db := c.db
	db.hedgeTokens.v.Store(1000) // one hedge in the bank
	h := &hedged{db: db, ctx: context.Background(), decided: true}
	h.first = &attempt{r: db.nodeList()[1]}
	h.hedge()
	if v := db.hedgeTokens.v.Load(); v != 1000 {
		t.Errorf("a hedge of a decided read spent the budget: %d thousandths left, want 1000", v)
	}
}
