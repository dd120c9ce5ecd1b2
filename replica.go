package rwsplit

import (
	"context"
	"database/sql"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"
	"unsafe"
)

// A Replica is one database node as rwsplit and its policies see it. The
// library, not the policy, keeps its accounting: every call through rwsplit
// updates the node's in-flight count, its latency estimate and its
// counters. The getters are atomic loads, safe for concurrent use and cheap
// enough to call from [Picker.Pick].
//
// The same *Replica stands for a node for the life of the [DB], whatever
// role the node has.
type Replica struct {
	// Read on every call, written rarely: together at the start, and kept
	// apart from the counters below, which every call writes, so that
	// reading them does not miss the cache whenever another core has just
	// counted a call.
	db            *sql.DB
	role          atomic.Int32
	failStreak    atomic.Int32 // consecutive failures, probes and traffic
	rampStart     atomic.Int64 // monotime the node came back (slow start); 0 none
	healthy       atomic.Bool  // in rotation
	probedPrimary atomic.Bool  // the last probe said the node takes writes
	fenced        atomic.Bool  // takes writes on an old timeline: never used
	suspect       atomic.Bool  // its probe is overdue while others answered (see probeWatch)
	// trackGlobal: calls count in inFlight, which the built-in load-aware
	// pickers read, rather than in the shards (set by rebuild).
	trackGlobal atomic.Bool
	measured    atomic.Bool // settled: warmed up and no peak waiting; every call is timed while it is not
	owner       *DB         // nil for replicas built by tests of policies
	name        string
	monitor     *sql.DB // what the health probes use: db, or a WithMonitor handle
	weight      int     // from Weighted; 1 otherwise
	index       int     // numbers the DB's nodes in the order they joined, from 0 (the configured primary); never reused

	// Kept by the health goroutine and the position pollers.
	okStreak  atomic.Int32                 // consecutive successful probes since the last failure; reset by an ejection
	lag       atomic.Int64                 // replication lag in ns; lagUnknown, lagBroken
	lastErr   atomic.Value                 // string: the last failure's message
	pos       atomic.Pointer[nodePosition] // the last probe's position; nil before one
	pollUntil atomic.Int64                 // monotime until which sessions wait for its position
	polling   atomic.Bool                  // a poller reads its position

	// Off the calls' path: read by the health goroutine and by rebuilds
	// of the snapshot.
	removed       atomic.Bool // left the node set (fleet.go): never eligible again
	listedReplica atomic.Bool // the last listing of a discoverer called it a replica (see withoutListedReplicas)
	admin         *sql.DB     // WithAutoFailover's handle that promotes or repoints the node; nil: not a candidate
	addr          string      // host:port, for repointing replicas at it when promoted

	_ [cacheLine]byte

	// The calls that began while trackGlobal was set are counted here,
	// the others in the shards. Shared counters written by every core
	// cost the cache line's trip between cores on every call, so they are
	// kept only where a picker needs the node's total at once. A plain
	// read is counted from begin to end in begunShared and endedShared,
	// whether it succeeds or not (failedShared counts those that did not:
	// no read served); inFlight counts the other calls (see beginSlow).
	inFlight    atomic.Int64
	begunShared atomic.Uint64
	endedShared atomic.Uint64
	_           [cacheLine - 24]byte

	// ewma is the peak-EWMA latency estimate in nanoseconds (float64 bits);
	// 0 means no observation yet. lastObs is when it was last updated
	// (monotonic nanoseconds since clockBase). Written by the sampled calls.
	ewma    atomic.Uint64
	lastObs atomic.Int64
	peak    atomic.Uint64 // a sample peakFactor× the estimate, not counted yet (float64 bits); 0 none
	warm    atomic.Int32  // calls timed during the warm-up (see warmSamples)
	_       [cacheLine - 28]byte

	// shards hold the per-call counters, each on its own cache line; a
	// goroutine counts in the shard of its stack, so cores that serve
	// different goroutines rarely write the same line.
	shards [numShards]counterShard

	// Written on rarer events.
	transactions    atomic.Uint64
	errors          atomic.Uint64
	readOnlyRetries atomic.Uint64
	ejections       atomic.Uint64
	retries         atomic.Uint64 // reads that failed here and were retried elsewhere
	hedges          atomic.Uint64 // reads slow here that were also sent to another replica
	hedgeWins       atomic.Uint64 // hedged reads this node answered first, as the second
	failedShared    atomic.Uint64 // reads counted in endedShared that failed
}

// cacheLine is a padding size that keeps fields on different cache lines
// (two 64-byte lines, for CPUs that fetch lines in pairs).
const cacheLine = 128

// Name returns the node's name: host:port for a node opened by [Open], the
// name given by [WithNodeNames], or "primary" / "replicaN". It never
// contains a password.
func (r *Replica) Name() string { return r.name }

// Weight returns the node's weight under [Weighted], and 1 under any other
// policy.
func (r *Replica) Weight() int { return r.weight }

// InFlight returns the number of calls rwsplit has sent to the node that
// have not answered yet. A query counts until it returns its first
// response (QueryContext returning), not until its rows are closed.
func (r *Replica) InFlight() int64 {
	n := r.sharedInFlight()
	for i := range r.shards {
		sh := &r.shards[i]
		// The ends first: begun, read after them, is at least the count
		// of calls begun by then, so no shard reads negative.
		ended := sh.done[callOther].Load() + sh.done[callRead].Load() + sh.done[callWrite].Load()
		n += int64(sh.begun.Load() - ended)
	}
	return n
}

// sharedInFlight returns the node's calls in flight that are counted in
// its shared counters, those begun while trackGlobal was set: what the
// load-aware pickers read.
func (r *Replica) sharedInFlight() int64 {
	// The end first, as in InFlight.
	ended := r.endedShared.Load()
	return r.inFlight.Load() + int64(r.begunShared.Load()-ended)
}

// counterShard is one cache line of per-call counters. A call counted in
// the shard is in flight from begun until it ends: as a read or a write
// that succeeded (reads, writes: one increment both ends the call and
// counts it) or otherwise (ended): done, indexed by the call's kind.
// begun also numbers the calls, which chooses the ones whose latency is
// timed. Calls counted in the node's shared inFlight, and hedged reads,
// count their reads and writes apart.
type counterShard struct {
	begun       atomic.Uint64
	done        [4]atomic.Uint64 // [callOther]: ended; [callRead]: reads; [callWrite]: writes; [3] unused
	readsApart  atomic.Uint64
	writesApart atomic.Uint64
	_           [cacheLine - 64]byte
}

const numShards = 16

// shardOf returns the counter shard of the calling goroutine, from the
// address of its stack: goroutines' stacks lie apart (8 KiB at least), so
// concurrent goroutines mostly land in different shards.
func shardOf() uint8 {
	var b byte
	return uint8((uint64(uintptr(unsafe.Pointer(&b))>>13) * 0x9E3779B97F4A7C15) >> 60)
}

// call is what begin hands to end. It has four fields, so it travels in
// registers.
type call struct {
	start int64          // monotime when the call is timed; -1 when not
	ctr   *atomic.Uint64 // what a success counts, when nothing else is to do: set by begin's common case only
	shard uint8
	kind  callKind // what end counts when the call succeeds; callGlobal: counted in inFlight rather than the shard
}

// callKind says what a successful call counts as: a read, a write, or
// nothing (a transaction's begin, a hedged attempt, which count apart).
type callKind uint8

const (
	callOther callKind = iota
	callRead
	callWrite

	callGlobal callKind = 4 // a flag: counted in inFlight rather than the shard
	callShared callKind = 8 // a flag: a read counted in begunShared and endedShared
)

func (r *Replica) reads() uint64 {
	// A failure counts in endedShared before failedShared: read after it,
	// endedShared covers every failure counted by then.
	failed := r.failedShared.Load()
	n := r.endedShared.Load() - failed
	for i := range r.shards {
		n += r.shards[i].done[callRead].Load() + r.shards[i].readsApart.Load()
	}
	return n
}

func (r *Replica) writes() uint64 {
	var n uint64
	for i := range r.shards {
		n += r.shards[i].done[callWrite].Load() + r.shards[i].writesApart.Load()
	}
	return n
}

// Latency returns the node's latency estimate: an exponentially weighted
// moving average of its response times that jumps up on a slow response
// once the next response, timed at once, confirms it (peak EWMA), and
// decays with a time constant of [LatencyDecay] while no new response
// arrives, so an idle node is tried again. A node's first responses after
// it joins are all timed and the estimate is the lowest of them, so that
// opening connections does not count against it. Zero means the node has
// not answered yet.
func (r *Replica) Latency() time.Duration {
	return time.Duration(r.latencyAt(monotime()))
}

// Role returns the node's current role.
func (r *Replica) Role() Role { return Role(r.role.Load()) }

// Role is the role of a node.
type Role int32

const (
	RoleReplica Role = iota // serves reads
	RolePrimary             // serves writes (and reads when no replica is eligible)
)

func (r Role) String() string {
	switch r {
	case RolePrimary:
		return "primary"
	case RoleReplica:
		return "replica"
	}
	return "unknown"
}

// LatencyDecay is the time constant of a node's latency estimate: a sample
// weighs e⁻¹ of its initial weight after this long, and an idle node's
// estimate shrinks by a factor e every LatencyDecay.
const LatencyDecay = 2 * time.Second

// failurePenalty is the latency sample recorded for a call that failed
// because of the node, so that a node failing fast does not look fast.
const failurePenalty = time.Second

var clockBase = time.Now()

// monotime returns monotonic nanoseconds since clockBase.
func monotime() int64 { return int64(time.Since(clockBase)) }

// latencyAt returns the latency estimate in nanoseconds at time now,
// decayed for the time since the last observation. Pickers pass as now
// the freshest observation time among the candidates rather than read the
// clock: while traffic flows that is close to the present, and it decays an
// idle node's estimate relative to a busy one's.
func (r *Replica) latencyAt(now int64) float64 {
	est := math.Float64frombits(r.ewma.Load())
	if est == 0 {
		return 0
	}
	idle := now - r.lastObs.Load()
	if idle <= int64(LatencyDecay)/256 {
		return est // decayed by less than 0.4%: not worth an exp
	}
	return est * math.Exp(-float64(idle)/float64(LatencyDecay))
}

// observe folds one response time (ns) measured at time now into the
// estimate. During the warm-up the estimate is the lowest answer. After
// it, a sample more than peakFactor times the estimate waits for the next
// call, timed at once: a second slow answer confirms it and replaces the
// estimate at once (peak sensitivity: a node that turns slow is avoided
// after two calls), a fast one shows it was noise (a pause, a connection's
// handshake) and it is dropped. Any other sample is averaged in with a
// weight that grows with the time since the previous sample, and is at
// least minSampleWeight: the jitter of a node's answers moves its estimate
// a little, up or down, and one high answer does not hold it up.
func (r *Replica) observe(sample, now int64) {
	if sample <= 0 {
		sample = 1
	}
	s := float64(sample)
	if w := r.warm.Load(); w < warmSamples {
		// The lowest answer of the warm-up: the first calls may pay for
		// opening connections.
		if old := math.Float64frombits(r.ewma.Load()); w == 0 || old == 0 || s < old {
			r.ewma.Store(math.Float64bits(s))
		}
		r.lastObs.Store(now)
		if r.warm.Add(1) >= warmSamples {
			r.measured.Store(true)
		}
		return
	}
	old := math.Float64frombits(r.ewma.Load())
	if pb := r.peak.Load(); pb != 0 && r.peak.CompareAndSwap(pb, 0) {
		r.measured.Store(true)
		if s > peakFactor*old {
			// Confirmed: the lower of the two slow answers.
			r.ewma.Store(math.Float64bits(min(s, math.Float64frombits(pb))))
			r.lastObs.Store(now)
			return
		}
	} else if old != 0 && s > peakFactor*old {
		r.peak.Store(math.Float64bits(s))
		r.measured.Store(false) // time the next calls
		return
	}
	if !r.measured.Load() && r.peak.Load() == 0 {
		r.measured.Store(true) // a timed call that retime asked for
	}
	for {
		oldBits := r.ewma.Load()
		old := math.Float64frombits(oldBits)
		next := s
		if old != 0 {
			w := math.Exp(-float64(now-r.lastObs.Load()) / float64(LatencyDecay))
			if w > 1 {
				w = 1
			}
			if w > 1-minSampleWeight {
				w = 1 - minSampleWeight
			}
			next = old*w + s*(1-w)
		}
		if r.ewma.CompareAndSwap(oldBits, math.Float64bits(next)) {
			r.lastObs.Store(now)
			return
		}
	}
}

// observeIdle sets the estimate of a node that no call has been timed on
// for a while from one sample (a health probe's round trip): nothing
// fresher says otherwise. The health loop asks it only of a node that has
// warmed up: a first probe's round trip includes opening a connection,
// which a read does not pay.
func (r *Replica) observeIdle(sample, now int64) {
	r.ewma.Store(math.Float64bits(float64(max(sample, 1))))
	r.lastObs.Store(now)
}

// retime has the node's next call timed.
func (r *Replica) retime() {
	if r.measured.Load() {
		r.measured.Store(false)
	}
}

// warmSamples is how many calls a node that joins (at New, or back in
// rotation) has timed, every one of them, before only one call in
// latencySampleEvery is. The estimate is the lowest of their answers, and
// until they have answered the latency policy counts the node as new: the
// first calls on a node open its pool's connections, whose handshake, and
// the first queries of a new server session (PostgreSQL fills its caches
// per backend), would otherwise hold the estimate up and keep reads off
// the node until a sampled call corrected it.
const warmSamples = 8

// peakFactor: a sample more than this many times the estimate counts only
// once the next call confirms it (see observe).
const peakFactor = 2

// minSampleWeight is the least weight a sample gets, however soon it
// follows the previous one. Weighting by time alone, a busy node's
// samples, milliseconds apart, would each weigh almost nothing, and one
// high answer would hold its estimate up for seconds while hundreds of
// fast answers said otherwise. (The estimate then follows the jitter of a
// node's answers; LeastLatency counts estimates within twice each other
// as equal, so two equal nodes whose estimates twitch still share.)
const minSampleWeight = 0.2

// latencySampleEvery: one call in this many is timed. Reading the clock
// twice per call, and writing the shared estimate, would cost more than
// the rest of the accounting; a sample of the calls keeps the estimate
// fresh under load, the health probes refresh an idle node's, and the
// first warmSamples calls to a node are always timed.
const latencySampleEvery = 64

// begin marks the start of a call on the node; a successful call of kind
// read or write counts as one when it ends. The common case (not timed,
// and counted in the goroutine's shard, or for a read while trackGlobal
// is set, in the shared pair) takes one atomic increment and hands end
// the counter that ends the call.
func (r *Replica) begin(kind callKind) call {
	shard := shardOf()
	var n uint64
	if r.measured.Load() {
		if !r.trackGlobal.Load() {
			sh := &r.shards[shard]
			if n = sh.begun.Add(1); n%latencySampleEvery != 0 && r.failStreak.Load() == 0 {
				return call{start: -1, ctr: &sh.done[kind&3], shard: shard, kind: kind}
			}
		} else if kind == callRead {
			if n = r.begunShared.Add(1); n%latencySampleEvery != 0 && r.failStreak.Load() == 0 {
				return call{start: -1, ctr: &r.endedShared, shard: shard, kind: callRead | callShared}
			}
			kind |= callShared
		}
	}
	return r.beginSlow(kind, shard, n)
}

// beginSlow is begin for a call that is timed, counted in the shared
// inFlight, made on a node without a latency estimate (whose calls are
// all timed until one answers), or made on a node with failures in a row
// (whose next success resets their count). n is the call's number in its
// shard or in begunShared if begin counted it there already, and 0 if
// not. A call that begin did not count while trackGlobal is set (not a
// plain read, such as a hedged attempt or a transaction's begin, or a read
// on a node not settled) counts in inFlight, and one in
// latencySampleEvery of them, drawn at random, is timed.
func (r *Replica) beginSlow(kind callKind, shard uint8, n uint64) call {
	c := call{start: -1, shard: shard, kind: kind}
	switch {
	case n != 0:
	case r.trackGlobal.Load():
		c.kind |= callGlobal
		r.inFlight.Add(1)
		n = uint64(rand.Uint32())
	default:
		n = r.shards[shard].begun.Add(1)
	}
	if n%latencySampleEvery == 0 || !r.measured.Load() {
		c.start = monotime()
	}
	return c
}

// count records a read or write served by r that its call's end did not
// count (a hedged read, a call counted in the shared inFlight).
func (r *Replica) count(shard uint8, read bool) {
	sh := &r.shards[shard]
	if read {
		sh.readsApart.Add(1)
	} else {
		sh.writesApart.Add(1)
	}
}

// end marks the end of a call that begin started. A caller's cancellation
// records nothing against the node: it says nothing about it. A failure
// that is the node's fault always records the failure penalty, so that a
// node failing fast does not look fast. In the common case, a success
// that begin gave a counter, one increment ends and counts the call.
func (r *Replica) end(ctx context.Context, c call, err error) {
	if c.ctr != nil && err == nil {
		c.ctr.Add(1)
		return
	}
	r.endSlow(ctx, c, err)
}

func (r *Replica) endSlow(ctx context.Context, c call, err error) {
	if c.kind&callShared != 0 {
		r.endedShared.Add(1)
		if err != nil {
			r.failedShared.Add(1) // after endedShared: see reads
		}
	} else if c.kind&callGlobal != 0 {
		r.inFlight.Add(-1)
		if kind := c.kind &^ callGlobal; err == nil && kind != callOther {
			r.count(c.shard, kind == callRead)
		}
	} else {
		sh := &r.shards[c.shard]
		if err != nil {
			sh.done[callOther].Add(1)
		} else {
			sh.done[c.kind&3].Add(1)
		}
	}
	if err != nil {
		if isCallerDone(ctx, err) {
			return
		}
		if isNodeFault(ctx, err) {
			r.errors.Add(1)
			r.observe(int64(failurePenalty), monotime())
			if r.owner != nil {
				r.owner.nodeFailed(r, err)
			}
			return
		}
	}
	if r.failStreak.Load() != 0 {
		r.failStreak.Store(0)
	}
	if c.start >= 0 {
		now := monotime()
		r.observe(now-c.start, now)
	}
}
