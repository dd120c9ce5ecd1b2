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
