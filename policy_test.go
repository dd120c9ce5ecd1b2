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
	rs[0].observe(int64(time.Millisecond), now)
	rs[1].observe(int64(50*time.Millisecond), now)
	rs[2].observe(int64(50*time.Millisecond), now)
	p := (&leastLatency{rnd: seeded()}).Build(rs)
	const picks = 10000
	got := countPicks(p, rs, picks)
	if !within(got[rs[0]], picks*2/3, 0.05) {
		t.Errorf("fast replica picked %d times, want %d ±5%%", got[rs[0]], picks*2/3)
	}
	// In-flight calls raise the cost: a fast node with 100 calls waiting
	// loses to a slower idle one.
	rs[0].inFlight.Store(100)
	if r := p.Pick(PickInfo{}); r == rs[0] {
		t.Error("loaded fast replica still preferred")
	}
}

func TestLeastLatencyDoesNotStarve(t *testing.T) {
	rs := testReplicas(2)
	now := monotime()
	// A node without observations costs less than a measured one.
	rs[0].observe(int64(time.Millisecond), now)
	p := (&leastLatency{rnd: seeded()}).Build(rs)
	if r := p.Pick(PickInfo{}); r != rs[1] {
		t.Error("new node not preferred over a measured one")
	}
	// A node measured slow long ago decays below one measured fast now.
	rs[1].observe(int64(50*time.Millisecond), now-int64(20*LatencyDecay))
	rs[0].observe(int64(time.Millisecond), now)
	if got := rs[1].latencyAt(now); got >= float64(time.Millisecond) {
		t.Errorf("idle slow node's estimate %v did not decay", time.Duration(got))
	}
	if r := p.Pick(PickInfo{}); r != rs[1] {
		t.Error("idle node that was slow long ago is starved")
	}
}

func TestPeakEWMA(t *testing.T) {
	r := testReplicas(1)[0]
	now := monotime()
	r.observe(int64(time.Millisecond), now)
	r.observe(int64(40*time.Millisecond), now+1)
	if got := r.latencyAt(now + 1); got < float64(39*time.Millisecond) {
		t.Errorf("a slow sample did not raise the estimate at once: %v", time.Duration(got))
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

// An outlier (a connection's handshake) on a busy node is flushed by the
// fast answers that follow it within milliseconds, not held for seconds.
func TestPeakEWMAFlushesOutlier(t *testing.T) {
	r := testReplicas(1)[0]
	now := monotime()
	r.observe(int64(time.Millisecond), now)
	r.observe(int64(300*time.Millisecond), now+1)
	for range 30 {
		now += int64(time.Millisecond)
		r.observe(int64(time.Millisecond), now)
	}
	if got := r.latencyAt(now); got > float64(2*time.Millisecond) {
		t.Errorf("estimate %v after 30 fast samples in 30ms following one 300ms outlier", time.Duration(got))
	}
	// Jitter near the estimate keeps the time weighting: a sample at 60%
	// of it, 1ms later, hardly moves it.
	before := r.latencyAt(now)
	now += int64(time.Millisecond)
	r.observe(int64(0.6*before), now)
	if got := r.latencyAt(now); got < 0.99*before {
		t.Errorf("one near sample moved the estimate from %v to %v", time.Duration(before), time.Duration(got))
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

func TestPickAllocatesNothing(t *testing.T) {
	rs := testReplicas(4, 1, 2, 3, 4)
	rs[0].observe(1000, monotime())
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
