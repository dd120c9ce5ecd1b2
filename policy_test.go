package rwsplit

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func testReplicas(n int, weights ...int) []*Replica {
	rs := make([]*Replica, n)
	for i := range rs {
		rs[i] = &Replica{name: fmt.Sprintf("r%d", i), weight: 1}
		if i < len(weights) {
			rs[i].weight = weights[i]
		}
	}
	return rs
}

// measure gives r the latency estimate d at time now, as its warm-up
// calls would.
func measure(r *Replica, d, now int64) {
	for range warmSamples {
		r.observe(d, now)
	}
}

// seeded returns a deterministic random source for distribution tests.
func seeded() randSource { return rand.New(rand.NewPCG(1, 2)) }

func countPicks(p Picker, rs []*Replica, n int) map[*Replica]int {
	got := map[*Replica]int{}
	for range n {
		got[p.Pick(PickInfo{Ctx: context.Background()})]++
	}
	return got
}

// within reports whether got is within tol (a fraction) of want.
func within(got, want int, tol float64) bool {
	return math.Abs(float64(got-want)) <= tol*float64(want)
}

func TestRoundRobinIsExact(t *testing.T) {
	rs := testReplicas(3)
	p := (&roundRobin{rnd: seeded()}).Build(rs)
	got := countPicks(p, rs, 9000)
	for _, r := range rs {
		if got[r] != 3000 {
			t.Errorf("%s picked %d times of 9000, want 3000", r.name, got[r])
		}
	}
	// Consecutive picks rotate.
	a, b := p.Pick(PickInfo{}), p.Pick(PickInfo{})
	if a == b {
		t.Error("two consecutive round-robin picks chose the same replica")
	}
}

func TestRandomDistribution(t *testing.T) {
	for _, n := range []int{2, 3, 5} {
		rs := testReplicas(n)
		p := (&randomPolicy{rnd: seeded()}).Build(rs)
		const picks = 10000
		got := countPicks(p, rs, picks)
		for _, r := range rs {
			if !within(got[r], picks/n, 0.05) {
				t.Errorf("%d replicas: %s picked %d times, want %d ±5%%", n, r.name, got[r], picks/n)
			}
		}
	}
}

func TestWeightedDistribution(t *testing.T) {
	rs := testReplicas(4, 1, 2, 3, 0)
	p := (&weighted{rnd: seeded()}).Build(rs)
	const picks = 10000
	got := countPicks(p, rs, picks)
	for i, w := range []int{1, 2, 3} {
		want := picks * w / 6
		if !within(got[rs[i]], want, 0.05) {
			t.Errorf("weight %d picked %d times, want %d ±5%%", w, got[rs[i]], want)
		}
	}
	if got[rs[3]] != 0 {
		t.Errorf("weight 0 picked %d times", got[rs[3]])
	}
	// Only zero weights: no replica, the read goes to the primary.
	if r := (&weighted{rnd: seeded()}).Build(testReplicas(2, 0, 0)).Pick(PickInfo{}); r != nil {
		t.Errorf("all-zero weights picked %s", r.name)
	}
}

func TestWeightFollowsItsNode(t *testing.T) {
	// The weights given to New stay with their nodes when the eligible set
	// shrinks: with replica 1 (weight 1) gone, replica 2 and 3 share 2:3.
	rs := testReplicas(3, 1, 2, 3)
	p := (&weighted{rnd: seeded()}).Build(rs[1:])
	got := countPicks(p, rs, 10000)
	if !within(got[rs[1]], 4000, 0.05) || !within(got[rs[2]], 6000, 0.05) {
		t.Errorf("picks %d / %d, want 4000 / 6000 ±5%%", got[rs[1]], got[rs[2]])
	}
}

func TestLeastInFlight(t *testing.T) {
	rs := testReplicas(3)
	rs[1].inFlight.Store(5)
	rs[2].inFlight.Store(5)
	p := (&leastInFlight{rnd: seeded()}).Build(rs)
	const picks = 10000
	got := countPicks(p, rs, picks)
	// r0 wins every pair it is drawn in: 2 of the 3 pairs.
	if !within(got[rs[0]], picks*2/3, 0.05) {
		t.Errorf("idle replica picked %d times, want %d ±5%%", got[rs[0]], picks*2/3)
	}
	// With equal load the choice is uniform.
	rs[1].inFlight.Store(0)
	rs[2].inFlight.Store(0)
	got = countPicks(p, rs, picks)
	for _, r := range rs {
		if !within(got[r], picks/3, 0.05) {
			t.Errorf("equal load: %s picked %d times, want %d ±5%%", r.name, got[r], picks/3)
		}
	}
}

func TestLeastLatencyPrefersFastNode(t *testing.T) {
	rs := testReplicas(3)
	now := monotime()
	measure(rs[0], int64(time.Millisecond), now)
	measure(rs[1], int64(50*time.Millisecond), now)
	measure(rs[2], int64(50*time.Millisecond), now)
	p := (&leastLatency{rnd: seeded()}).Build(rs)
	const picks = 10000
	got := countPicks(p, rs, picks)
	if !within(got[rs[0]], picks*2/3, 0.05) {
		t.Errorf("fast replica picked %d times, want %d ±5%%", got[rs[0]], picks*2/3)
	}
	// In-flight calls raise the cost: a fast node with 100 calls waiting
	// costs twice a slower idle one, and gets less than an even share.
	rs[0].inFlight.Store(100)
	got = countPicks(p, rs, picks)
	if got[rs[0]] >= picks/3 {
		t.Errorf("loaded fast replica picked %d times of %d, more than an even share", got[rs[0]], picks)
	}
}

// Two replicas whose estimates differ by noise share reads evenly; one
// really slower gets few. Beyond the noise band (latencyNoise), the share
// of the dearer node b is ca^1.5/(ca^1.5+cb^1.5), ca the faster's cost and
// cb the dearer's divided by the band.
func TestLeastLatencyShares(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fast, slow time.Duration
		want       float64 // share of the slower node
	}{
		{"30% apart", 264 * time.Microsecond, 344 * time.Microsecond, 0.5},
		{"equal", 300 * time.Microsecond, 300 * time.Microsecond, 0.5},
		{"twice", 300 * time.Microsecond, 600 * time.Microsecond, 0.5},
		{"three times", 300 * time.Microsecond, 900 * time.Microsecond, 0.3525},
		{"ten times", 300 * time.Microsecond, 3 * time.Millisecond, 0.0821},
		{"a hundred times", 300 * time.Microsecond, 30 * time.Millisecond, 0.0028},
		{"50ms slower", 300 * time.Microsecond, 50 * time.Millisecond, 0.0013},
	} {
		rs := testReplicas(2)
		now := monotime()
		measure(rs[0], int64(tc.fast), now)
		measure(rs[1], int64(tc.slow), now)
		p := (&leastLatency{rnd: seeded()}).Build(rs)
		const picks = 100000
		got := float64(countPicks(p, rs, picks)[rs[1]]) / picks
		if d := got - tc.want; d > 0.01 || d < -0.01 {
			t.Errorf("%s: slower node's share %.4f, want %.4f ±0.01", tc.name, got, tc.want)
		}
	}
}

// Calls queued weigh more than latency noise. In the shares, worked out
// every 64 reads, one call more in flight than the other node is only who
// asked last, and weighs nothing; two or three more shrink the node's
// share. While the shares are even, a read goes to the next replica when
// that one has fewer calls in flight at the moment, so one call more
// takes all of a caller's reads off the node.
func TestLeastLatencyWeighsCallsInFlight(t *testing.T) {
	for _, tc := range []struct {
		busier int64
		want   float64 // share of the node with busier calls more in flight
	}{{1, 0}, {2, 1.0 / 9}, {3, 1.0 / 28}} {
		rs := testReplicas(2)
		now := monotime()
		measure(rs[0], int64(300*time.Microsecond), now)
		measure(rs[1], int64(300*time.Microsecond), now)
		rs[1].inFlight.Store(tc.busier)
		p := (&leastLatency{rnd: seeded()}).Build(rs)
		const picks = 100000
		got := float64(countPicks(p, rs, picks)[rs[1]]) / picks
		if d := got - tc.want; d > 0.01 || d < -0.01 {
			t.Errorf("%d more in flight: share %.4f, want %.4f ±0.01", tc.busier, got, tc.want)
		}
	}
}

// Replicas of one speed take a caller's reads strictly in turn:
// LeastLatency deals its shares rather than drawing them.
func TestLeastLatencyDealsInTurn(t *testing.T) {
	for _, n := range []int{2, 4} {
		rs := testReplicas(n)
		now := monotime()
		for _, r := range rs {
			measure(r, int64(300*time.Microsecond), now)
		}
		p := (&leastLatency{rnd: seeded()}).Build(rs)
		for run := range 100 {
			seen := map[*Replica]bool{}
			for range n {
				seen[p.Pick(PickInfo{})] = true
			}
			if len(seen) != n {
				t.Fatalf("%d replicas: run %d of %d consecutive reads went to %d of them", n, run, n, len(seen))
			}
		}
	}
}

// Concurrent callers settle on different replicas of one speed and stay
// there; a caller alone again goes back to taking them in turn. The
// callers here are two callerTurns whose calls overlap: each picks while
// the other's call is in flight.
func TestLeastLatencyCallersSettleApart(t *testing.T) {
	for _, n := range []int{2, 3, 4} {
		rs := testReplicas(n)
		now := monotime()
		for _, r := range rs {
			measure(r, int64(300*time.Microsecond), now)
		}
		p := (&leastLatency{rnd: seeded()}).Build(rs).(*latencyPicker)
		if !p.even.Load() {
			t.Fatalf("%d replicas of one speed: shares not even", n)
		}
		var a, b callerTurn
		a.turn.Store(7)
		b.turn.Store(7) // in step: both are dealt the same replica
		pick := func(c *callerTurn) *Replica {
			r := p.dealEven(c)
			r.inFlight.Add(1)
			return r
		}
		const rounds = 20 * stayRun
		ra := pick(&a)
		var met, moves int
		var prev *Replica
		seen := map[*Replica]int{}
		for i := range rounds {
			rb := pick(&b) // while a's call is in flight
			ra.inFlight.Add(-1)
			ra = pick(&a) // while b's call is in flight
			if i >= 10 {
				if ra == rb {
					met++
				}
				if rb != prev {
					moves++
				}
				seen[rb]++
			}
			prev = rb
			rb.inFlight.Add(-1)
		}
		ra.inFlight.Add(-1)
		if met != 0 {
			t.Errorf("%d replicas: the callers were on one replica in %d of %d rounds after settling", n, met, rounds-10)
		}
		// Runs end at random, about every stayRun reads; moving at every
		// read would be rounds moves.
		if limit := 3 * rounds / stayRun; moves > limit {
			t.Errorf("%d replicas: the second caller moved %d times in %d reads, want at most %d", n, moves, rounds-10, limit)
		}
		// With more replicas than callers, the runs take each caller to
		// every replica in time.
		if n > 2 && len(seen) != n {
			t.Errorf("%d replicas: the second caller read from %d of them in %d reads", n, len(seen), rounds-10)
		}
		// Alone, a caller goes back to taking the replicas in turn once
		// its runs are over.
		for i := 0; a.turn.Load() < a.crowdedUntil.Load(); i++ {
			if i > 100*crowdedRuns*stayRun {
				t.Fatalf("%d replicas: a caller alone still deals in runs after %d reads", n, i)
			}
			pick(&a).inFlight.Add(-1)
		}
		got := map[*Replica]bool{}
		for range n {
			r := pick(&a)
			r.inFlight.Add(-1)
			got[r] = true
		}
		if len(got) != n {
			t.Errorf("%d replicas: alone again, %d consecutive reads went to %d of them", n, n, len(got))
		}
	}
}

// A slower replica idle because it is slow is no sign of a queue on the
// fast ones: with the fast replicas all busy (16 readers on two), the
// slow one still gets a slow one's share, not the reads of the moment.
func TestLeastLatencySlowIdleReplicaDrawsNoBurst(t *testing.T) {
	rs := testReplicas(3)
	now := monotime()
	measure(rs[0], int64(400*time.Microsecond), now)
	measure(rs[1], int64(400*time.Microsecond), now)
	measure(rs[2], int64(50*time.Millisecond), now)
	rs[0].inFlight.Store(8)
	rs[1].inFlight.Store(8)
	p := (&leastLatency{rnd: seeded()}).Build(rs)
	const picks = 100000
	if got := float64(countPicks(p, rs, picks)[rs[2]]) / picks; got > 0.01 {
		t.Errorf("slow idle replica took %.2f%% of the reads while the fast ones were busy, want at most 1%%", 100*got)
	}
	// A fast replica with calls stuck on it still loses its reads to an
	// idle fast one (in the pairs it forms with the slow one, eight calls
	// queued cost about as much as the slow one's latency).
	rs[0].inFlight.Store(8)
	rs[1].inFlight.Store(0)
	got := countPicks(p, rs, picks)
	if got[rs[0]]*3 > got[rs[1]] {
		t.Errorf("fast replica with 8 calls stuck took %d reads, the idle fast one %d: want at most a third", got[rs[0]], got[rs[1]])
	}
}

func TestLeastLatencyDoesNotStarve(t *testing.T) {
	rs := testReplicas(2)
	now := monotime()
	// A node still warming up counts as fast as the other: it gets
	// reads at once, whatever its first answers cost.
	measure(rs[0], int64(time.Millisecond), now)
	rs[1].observe(int64(40*time.Millisecond), now) // one slow first answer (a connection's handshake)
	p := (&leastLatency{rnd: seeded()}).Build(rs)
	const picks = 10000
	if got := countPicks(p, rs, picks)[rs[1]]; !within(got, picks/2, 0.05) {
		t.Errorf("node warming up picked %d of %d times, want half ±5%%", got, picks)
	}
	// A node measured slow long ago decays below one measured fast now.
	rs[1] = testReplicas(2)[1]
	measure(rs[1], int64(50*time.Millisecond), now-int64(20*LatencyDecay))
	measure(rs[0], int64(time.Millisecond), now)
	if got := rs[1].latencyAt(now); got >= float64(time.Millisecond) {
		t.Errorf("idle slow node's estimate %v did not decay", time.Duration(got))
	}
	p = (&leastLatency{rnd: seeded()}).Build(rs)
	if got := countPicks(p, rs, picks)[rs[1]]; got <= picks/2 {
		t.Errorf("idle node that was slow long ago picked %d of %d times; it is now the faster", got, picks)
	}
}

func TestPickAllocatesNothing(t *testing.T) {
	rs := testReplicas(4, 1, 2, 3, 4)
	measure(rs[0], 1000, monotime())
	info := PickInfo{Ctx: context.Background(), Query: "SELECT 1"}
	for _, p := range []Policy{RoundRobin(), Random(), Weighted(1, 2, 3, 4), LeastInFlight(), LeastLatency()} {
		pk := p.Build(rs)
		if n := testing.AllocsPerRun(1000, func() { pk.Pick(info) }); n != 0 {
			t.Errorf("%s: Pick allocates %v times", policyName(p), n)
		}
	}
}

func TestCustomPolicy(t *testing.T) {
	// A user policy that always reads from the replica named "r2".
	c := newCluster(t, 2, WithPolicy(byName("r2")), WithNodeNames("p", "r1", "r2"))
	for range 20 {
		if got := served(t, context.Background(), c.db, "SELECT 1"); got != "r2" {
			t.Fatalf("custom policy read served by %s", got)
		}
	}
}

type byName string

func (n byName) Build(rs []*Replica) Picker {
	for _, r := range rs {
		if r.Name() == string(n) {
			return fixedPicker{r}
		}
	}
	return fixedPicker{}
}

type fixedPicker struct{ r *Replica }

func (p fixedPicker) Pick(PickInfo) *Replica { return p.r }

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{1, 2, 4, 8} {
		rs := testReplicas(n)
		for _, p := range []Policy{RoundRobin(), Random(), Weighted(make([]int, n)...), LeastInFlight(), LeastLatency()} {
			if w, ok := p.(*weighted); ok {
				for i := range w.weights {
					w.weights[i] = i + 1
				}
			}
			pk := p.Build(rs)
			b.Run(fmt.Sprintf("%s/replicas=%d", policyName(p), n), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						pk.Pick(PickInfo{})
					}
				})
			})
		}
	}
}
