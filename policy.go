package rwsplit

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// A Policy decides how reads are spread over the eligible replicas.
//
// rwsplit calls Build whenever the set of eligible replicas changes (at
// [New], and later from its health goroutine), never on the path of a
// query, and publishes the new [Picker] atomically. The library keeps the
// per-node accounting a policy may weigh (see [Replica]); a policy only
// chooses.
//
// Implement Policy to plug in your own choice. rwsplit may grow through
// optional interfaces that a Policy or Picker can implement, found by type
// assertion; it never adds methods to these two.
type Policy interface {
	// Build returns a Picker over replicas, which holds at least one
	// replica and must not be modified.
	Build(replicas []*Replica) Picker
}

// A Picker chooses a replica for one read. Pick is called concurrently on
// every read routed to a replica: it must not block, do I/O or allocate.
// It returns one of the replicas it was built with, or nil to send the read
// to the primary.
type Picker interface {
	Pick(info PickInfo) *Replica
}

// PickInfo describes the read being routed.
type PickInfo struct {
	Ctx   context.Context // the caller's context
	Query string          // the statement; empty for a read-only transaction
}

// What the library needs to know of a built-in policy comes through these
// optional interfaces, found by type assertion, never by a switch on the
// policy's type. (fmt.Stringer names a policy in Stats.)

// loadAware is a policy whose pickers read each replica's shared
// in-flight counters (Replica.sharedInFlight): while two replicas or more
// are eligible, the calls on them count there rather than in their
// shards.
type loadAware interface{ readsInFlight() }

// picksOnly is a policy whose picker, built over one replica, always
// returns it: the snapshot then skips the call.
type picksOnly interface{ picksTheOnlyReplica() }

// replicaWeights is a policy that gives each replica handle given to New
// a weight: checkReplicas validates it against their number, and
// weightOf(i) is the weight of the i-th (from 0).
type replicaWeights interface {
	checkReplicas(n int) error
	weightOf(i int) int
}

// randSource is where policies draw random numbers: the runtime's
// lock-free generator in production, a seeded one in tests.
type randSource interface {
	Uint64N(n uint64) uint64
}

type runtimeRand struct{}

func (runtimeRand) Uint64N(n uint64) uint64 { return rand.Uint64N(n) }

var (
	_ Policy = (*roundRobin)(nil)
	_ Policy = (*randomPolicy)(nil)
	_ Policy = (*weighted)(nil)
	_ Policy = (*leastInFlight)(nil)
	_ Policy = (*leastLatency)(nil)

	_ picksOnly = (*roundRobin)(nil)
	_ picksOnly = (*randomPolicy)(nil)
	_ picksOnly = (*leastInFlight)(nil)
	_ picksOnly = (*leastLatency)(nil)
	_ loadAware = (*leastInFlight)(nil)
	_ loadAware = (*leastLatency)(nil)

	_ replicaWeights = (*weighted)(nil)
)

// RoundRobin returns a policy that sends reads to the eligible replicas in
// turn.
func RoundRobin() Policy { return &roundRobin{rnd: runtimeRand{}} }

type roundRobin struct{ rnd randSource }

func (*roundRobin) String() string       { return "RoundRobin" }
func (*roundRobin) picksTheOnlyReplica() {}

func (p *roundRobin) Build(replicas []*Replica) Picker {
	pk := &roundRobinPicker{replicas: replicas}
	// Start at a random offset so that many handles built at once do not
	// all send their first read to the same replica.
	pk.next.Store(p.rnd.Uint64N(uint64(len(replicas))))
	return pk
}

type roundRobinPicker struct {
	replicas []*Replica
	next     atomic.Uint64
}

func (p *roundRobinPicker) Pick(PickInfo) *Replica {
	i := p.next.Add(1) - 1
	return p.replicas[i%uint64(len(p.replicas))]
}

// Random returns a policy that sends each read to an eligible replica
// chosen uniformly at random.
func Random() Policy { return &randomPolicy{rnd: runtimeRand{}} }

type randomPolicy struct{ rnd randSource }

func (*randomPolicy) String() string       { return "Random" }
func (*randomPolicy) picksTheOnlyReplica() {}

func (p *randomPolicy) Build(replicas []*Replica) Picker {
	return &randomPicker{replicas: replicas, rnd: p.rnd}
}

type randomPicker struct {
	replicas []*Replica
	rnd      randSource
}

func (p *randomPicker) Pick(PickInfo) *Replica {
	return p.replicas[p.rnd.Uint64N(uint64(len(p.replicas)))]
}

// Weighted returns a policy that sends each read to an eligible replica
// chosen at random in proportion to its weight. It takes one weight per
// replica handle given to [New] or DSN given to [Open], in the same order;
// a weight stays with its node when the eligible set changes. A weight of
// zero keeps the node out of reads (its reads go to the other replicas, or
// to the primary if no weighted replica is eligible). New returns an
// error if the number of weights differs from the number of replicas, or
// if a weight is negative.
func Weighted(weights ...int) Policy {
	return &weighted{weights: append([]int(nil), weights...), rnd: runtimeRand{}}
}

type weighted struct {
	weights []int
	rnd     randSource
}

func (*weighted) String() string { return "Weighted" }

func (p *weighted) weightOf(i int) int { return p.weights[i] }

// checkReplicas checks the weights against the replica count given to New.
func (p *weighted) checkReplicas(replicas int) error {
	if len(p.weights) != replicas {
		return fmt.Errorf("Weighted: %d weights for %d replicas", len(p.weights), replicas)
	}
	for i, w := range p.weights {
		if w < 0 {
			return fmt.Errorf("Weighted: weight %d of replica %d is negative", w, i+1)
		}
	}
	return nil
}

func (p *weighted) Build(replicas []*Replica) Picker {
	pk := &weightedPicker{rnd: p.rnd}
	var total uint64
	for _, r := range replicas {
		if r.weight <= 0 {
			continue
		}
		total += uint64(r.weight)
		pk.replicas = append(pk.replicas, r)
		pk.cumulative = append(pk.cumulative, total)
	}
	pk.total = total
	return pk
}

type weightedPicker struct {
	replicas   []*Replica
	cumulative []uint64 // running sum of weights, ascending
	total      uint64
	rnd        randSource
}

func (p *weightedPicker) Pick(PickInfo) *Replica {
	if p.total == 0 {
		return nil
	}
	x := p.rnd.Uint64N(p.total)
	// The first replica whose running sum exceeds x.
	lo, hi := 0, len(p.cumulative)-1
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if p.cumulative[mid] > x {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return p.replicas[lo]
}

// LeastInFlight returns a policy that picks two eligible replicas at random
// and sends the read to the one with fewer calls in flight through this
// handle (power of two choices).
//
// A call is in flight until the node answers (QueryContext returns), not
// until its rows are closed: the count measures how long a node takes to
// answer, which is what a slow or overloaded node inflates. The pool's
// connections in use (sql.DBStats.InUse) would also count rows the caller
// is still reading, but reading them costs two calls of (*sql.DB).Stats
// per pick, each taking the mutex that every query on that pool takes:
// about 100ns against 15ns for the whole pick (see BENCHMARKS.md).
func LeastInFlight() Policy { return &leastInFlight{rnd: runtimeRand{}} }

type leastInFlight struct{ rnd randSource }

func (*leastInFlight) String() string       { return "LeastInFlight" }
func (*leastInFlight) picksTheOnlyReplica() {}
func (*leastInFlight) readsInFlight()       {}

func (p *leastInFlight) Build(replicas []*Replica) Picker {
	return &p2cPicker{replicas: replicas, rnd: p.rnd, cost: inFlightCost}
}

func inFlightCost(r *Replica, _ int64) float64 { return float64(r.sharedInFlight()) }

// LeastLatency returns the default policy. Each replica gets a share of
// the reads that falls with its latency estimate to the power 1.5 and with
// its calls queued: the share it would win in power of two choices on
// peak EWMA latency, where two replicas drawn at random each take the read
// with a probability inversely proportional to their cost, lat^1.5 ×
// (queued+1)^3.
//
// Estimates within twice the fastest replica's count as equal, as a
// single answer within twice the estimate counts as jitter (see
// [Replica.Latency]): two replicas of one speed show estimates 30% apart on
// loopback, and up to 1.8 times apart when the client's own CPUs are
// contended, so they share reads evenly. Estimates under 100µs count as
// 100µs: no network round trip to a server is faster, and below it they
// measure the client's own scheduling. Beyond the band the cost grows
// from its edge: three times the latency gives a replica 35% of the reads
// against one other, ten times 8%, a hundred times 0.3%; so a replica
// really slower is avoided. Calls queued weigh more, since they are not
// noise: a replica's calls in flight beyond the least busy one's, less one
// (with several callers, one call more is only the timing of who asked
// last), so two calls more than the other leaves a node 11% of the reads,
// three 4%; calls stuck on a hung node keep new reads off it. A replica k
// times slower than the fastest counts as busy with k-1 calls, since it
// takes as long to answer one: a slow replica idle because it is slow does
// not draw the reads of fast ones that are all busy. A node still warming
// up (its first few calls, see [Replica.Latency]) counts as fast as the
// fastest other, so a new node gets traffic at once; an idle node's
// estimate decays against the time of the latest answer of any replica,
// so a node once slow is tried again and not starved.
//
// The shares are dealt, not drawn: each caller (told apart by its
// goroutine's stack) takes the replicas in turn, in a low-discrepancy
// order (the bit-reversed count of its reads) that gives each its share
// over any run of consecutive reads, and the shares are worked out again
// about every 64 reads (more with over eight replicas), never from a
// clock. A caller alone takes replicas of one speed strictly in turn, as
// RoundRobin would. When the shares are even, a read goes instead to the
// next replica if that one has fewer calls in flight at the moment, and
// a caller that meets another on its replica this way keeps to the one it
// moved to, for a run of about 256 reads before it moves on to the next
// (the runs end at random, so that keeping to a replica writes no count
// per read): concurrent callers settle on different replicas, each
// replica's connection pool serving its own callers, which is what lets
// several replicas serve parallel reads faster than one pool. Drawing at
// random instead sends two concurrent reads to the same pool half the
// time, and a turn shared by all callers moves each of them from pool to
// pool at every read.
//
// Always taking the cheaper replica would send every read of a quiet
// service to whichever replica answered a little faster once, and leave
// the other cold.
func LeastLatency() Policy { return &leastLatency{rnd: runtimeRand{}} }

type leastLatency struct{ rnd randSource }

func (*leastLatency) String() string       { return "LeastLatency" }
func (*leastLatency) picksTheOnlyReplica() {}
func (*leastLatency) readsInFlight()       {}

func (p *leastLatency) Build(replicas []*Replica) Picker {
	n := len(replicas)
	pk := &latencyPicker{
		replicas: replicas,
		every:    reshareTick,
		bound:    padded(n),
		callers:  new([numShards]callerTurn),
		lat:      make([]float64, n),
		inFlight: make([]int64, n),
	}
	for pk.every < 8*uint64(n) {
		pk.every *= 2
	}
	// Start every caller at a random count, so that callers, and many
	// handles built at once, do not deal their reads alike.
	for i := range pk.callers {
		pk.callers[i].turn.Store(p.rnd.Uint64N(1 << 62))
	}
	if n > 1 {
		pk.reshare()
	}
	return pk
}

// padded returns n counters with a cache line of padding on either side:
// every pick reads them, and a small allocation of its own would share its
// line with whatever else the allocator put there, written by other cores.
func padded(n int) []atomic.Uint64 {
	const pad = cacheLine / 8
	return make([]atomic.Uint64, pad+n+pad)[pad : pad+n]
}

// latencyParts returns what LeastLatency weighs of a node: its latency
// estimate in nanoseconds plus one (0 while it warms up, see warmSamples),
// and its calls in flight.
func latencyParts(r *Replica, now int64) (lat float64, inFlight int64) {
	inFlight = r.InFlight()
	if r.warm.Load() < warmSamples {
		return 0, inFlight
	}
	return r.latencyAt(now) + 1, inFlight
}

// latencyPicker deals reads over its replicas by shares that it works out
// again about every `every` reads (a power of two: each aligned run of
// that many of a caller's reads then covers the shares evenly).
//
// Each caller deals from a count of its own: callers are told apart as
// the in-flight counters do (shardOf, the address of the goroutine's
// stack), so that concurrent callers do not write one shared counter on
// every read, and so that a caller can keep to one replica while others
// keep to theirs (see dealEven).
type latencyPicker struct {
	replicas []*Replica
	every    uint64
	// bound holds the cumulative shares on a 64-bit scale: a read whose
	// bit-reversed turn is below bound[i], and not below bound[i-1], goes
	// to replica i. A pick that reads them while they are rewritten may
	// see old and new bounds mixed, and deal one read a little off.
	bound []atomic.Uint64
	// even: every share is equal, and reads are dealt by dealEven.
	// Written by reshare only when it changes.
	even    atomic.Bool
	callers *[numShards]callerTurn
	_       [cacheLine]byte

	ticks    atomic.Uint64 // reads counted towards the next reshare (see tick)
	mu       sync.Mutex    // held by reshare, which alone uses the rest
	lat      []float64
	inFlight []int64
}

// callerTurn is one caller's count of reads (see latencyPicker), and the
// count until which it deals in runs (see dealEven); alone on its cache
// line.
type callerTurn struct {
	turn         atomic.Uint64
	crowdedUntil atomic.Uint64
	_            [cacheLine - 16]byte
}

const (
	// reshareTick: a caller dealing in turn counts its reads towards the
	// next reshare this many at a time, so that the shared count is
	// written once every reshareTick reads of a caller.
	reshareTick = 64
	// stayRun: a caller that has met another on its replica keeps to one
	// replica for runs of about this many reads (see dealEven).
	stayRun = 256
	// crowdedRuns: a caller deals in runs for about this many runs after
	// it last met another on its replica.
	crowdedRuns = 4
)

func (p *latencyPicker) Pick(PickInfo) *Replica {
	last := len(p.replicas) - 1
	if last == 0 {
		return p.replicas[0]
	}
	c := &p.callers[shardOf()]
	if p.even.Load() {
		return p.dealEven(c)
	}
	t := c.turn.Add(1)
	if t%reshareTick == 0 {
		p.tick(reshareTick)
	}
	u := bits.Reverse64(t)
	for i := range last {
		if u < p.bound[i].Load() {
			return p.replicas[i]
		}
	}
	return p.replicas[last]
}

// tick counts k reads towards the next reshare, and reshares when they
// complete a round of p.every.
func (p *latencyPicker) tick(k uint64) {
	if n := p.ticks.Add(k); n/p.every != (n-k)/p.every {
		p.reshare()
	}
}

// dealEven picks the replica for a caller's read when every share is
// equal. A caller alone takes the replicas in turn, read by read. A
// caller whose replica has more calls in flight than the next one, as
// when another caller is on it, takes the next one, and from then on, for
// about crowdedRuns runs, keeps to one replica for a run of about stayRun
// reads before it moves on to the next, starting with the one it took.
// Concurrent callers thus settle on different replicas and stay there,
// each replica's connection pool serving one of them, rather than cross
// over at every read as a turn shared by all would have them do; the runs
// still give every replica its share over time. A run ends at random, with
// a chance of one in stayRun per read, so that a caller keeping to its
// replica writes no count of its own per read (an atomic increment costs
// the caller more than the rest of its pick). A replica whose calls hang
// keeps more in flight than the next, and loses its reads at once.
func (p *latencyPicker) dealEven(c *callerTurn) *Replica {
	n := uint64(len(p.replicas))
	var i uint64
	t := c.turn.Load()
	if t < c.crowdedUntil.Load() {
		if rand.Uint32()%stayRun == 0 {
			t = c.turn.Add(stayRun)
			p.tick(stayRun)
		}
		i = t / stayRun % n
	} else {
		t = c.turn.Add(1)
		if t%reshareTick == 0 {
			p.tick(reshareTick)
		}
		i = t % n
	}
	r := p.replicas[i]
	busy := r.sharedInFlight()
	if busy == 0 {
		return r
	}
	j := (i + 1) % n
	o := p.replicas[j]
	if o.sharedInFlight() >= busy {
		return r
	}
	// Keep to o: skip the count ahead to o's run.
	c.turn.Add((j + n - t/stayRun%n) % n * stayRun)
	c.crowdedUntil.Store(t + crowdedRuns*stayRun)
	return o
}

// reshare works out the replicas' shares from their costs. A pick that
// finds another reshare under way keeps dealing by the shares before.
func (p *latencyPicker) reshare() {
	if !p.mu.TryLock() {
		return
	}
	defer p.mu.Unlock()
	var now int64
	for _, r := range p.replicas {
		now = max(now, r.lastObs.Load())
	}
	fastest := 0.0
	for i, r := range p.replicas {
		p.lat[i], p.inFlight[i] = latencyParts(r, now)
		if p.lat[i] != 0 && (fastest == 0 || p.lat[i] < fastest) {
			fastest = p.lat[i]
		}
	}
	if fastest == 0 {
		fastest = 1
	}
	// Below latencyFloor, estimates differ by the client's own noise.
	ref := max(fastest, float64(latencyFloor))
	// From here on p.lat holds each replica's latency in the band's terms,
	// then its cost.
	for i, r := range p.replicas {
		lat := p.lat[i]
		if lat == 0 {
			lat = fastest // warming up: as fast as the fastest
		}
		dearer := lat > retimeRatio*ref
		// Estimates within the noise band of the fastest count as equal;
		// beyond it, the cost grows from the band's edge.
		p.lat[i] = ref * max(1, lat/(ref*latencyNoise))
		if dearer && now-r.lastObs.Load() > int64(retimeAfter) {
			// The estimates call this node slower and its estimate is
			// old: time its next read, so that a node judged on a stale
			// or unlucky sample is judged again soon rather than after
			// latencySampleEvery of its few calls.
			r.retime()
		}
	}
	// Calls queued are counted beyond the least busy replica's, where a
	// replica k times slower than the fastest counts as busy with k-1
	// calls: it takes as long to answer one. A slow replica left idle
	// because it is slow is no sign of a queue on the fast ones, and so
	// does not draw their reads when they are all busy.
	least := math.Inf(1)
	for i := range p.replicas {
		least = min(least, float64(p.inFlight[i])+p.lat[i]/ref-1)
	}
	for i := range p.replicas {
		lat := p.lat[i]
		q := max(float64(p.inFlight[i])-least-1, 0) + 1
		p.lat[i] = lat * math.Sqrt(lat) * q * q * q
	}
	// Replica i's share in power of two choices: the pair {i, j} is drawn
	// with probability 2/(n(n-1)), and i takes it with probability
	// cost[j]/(cost[i]+cost[j]).
	n := len(p.replicas)
	pair := 2 / float64(n*(n-1))
	cost := p.lat
	even := true
	for _, c := range cost {
		even = even && c == cost[0]
	}
	if p.even.Load() != even {
		p.even.Store(even)
	}
	var cum float64
	for i := range cost {
		for j := range cost {
			if j != i {
				cum += pair * cost[j] / (cost[i] + cost[j])
			}
		}
		b := uint64(math.MaxUint64)
		if cum < 1 {
			b = uint64(cum * (1 << 64))
		}
		p.bound[i].Store(b)
	}
}

// drawTwo returns two distinct replicas drawn at random, or the only one
// and nil.
func drawTwo(replicas []*Replica, rnd randSource) (a, b *Replica) {
	n := uint64(len(replicas))
	if n == 1 {
		return replicas[0], nil
	}
	i := rnd.Uint64N(n)
	j := rnd.Uint64N(n - 1)
	if j >= i {
		j++
	}
	return replicas[i], replicas[j]
}

// p2cPicker draws two distinct replicas at random and keeps the cheaper;
// ties go to the first draw, which is itself random.
type p2cPicker struct {
	replicas []*Replica
	rnd      randSource
	cost     func(r *Replica, now int64) float64
}

func (p *p2cPicker) Pick(PickInfo) *Replica {
	a, b := drawTwo(p.replicas, p.rnd)
	if b == nil {
		return a
	}
	now := max(a.lastObs.Load(), b.lastObs.Load())
	if p.cost(b, now) < p.cost(a, now) {
		return b
	}
	return a
}

// latencyNoise: latency estimates within this factor of the fastest
// replica's count as equal under LeastLatency (peakFactor, for one
// answer against an estimate). Estimates of two equal replicas differ by
// 30% on loopback, and by up to 1.8 times when the client's CPUs are busy.
const latencyNoise = peakFactor

// latencyFloor: LeastLatency counts latency estimates below this as equal
// to it. A round trip to a database server over any network takes longer,
// and under it the estimates measure the client's own scheduling (an
// in-memory driver's answers, timed on a busy client, differ by several
// times from one moment to the next).
const latencyFloor = 100 * time.Microsecond

// retimeRatio and retimeAfter: a read sent to a node whose latency
// estimate is this many times the other candidate's, and older than this
// than the other's, is timed.
const (
	retimeRatio = 1.5
	retimeAfter = 20 * time.Millisecond
)
