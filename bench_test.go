package rwsplit

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit/internal/fakedriver"
)

// The benchmarks compare rwsplit with a raw *sql.DB over the same
// in-memory driver in the same run; the ratio is the library's overhead.
// The raw side is the very handle that rwsplit sends the call to (the
// replica for a read, the primary for a write, in the one-replica
// cluster), so the two sides share the pool, the fake server and their
// places in memory, and differ only by rwsplit's own work.

const benchQuery = "SELECT id, name FROM users WHERE id = $1"

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

type benchTarget struct {
	name string
	q    querier
}

// benchTargets returns raw, then rwsplit with 1, 2 and 4 replicas; raw is
// the primary's handle of the one-replica cluster when write is set, and
// its replica's otherwise.
func benchTargets(b *testing.B, write bool) []benchTarget {
	var targets []benchTarget
	for _, n := range []int{1, 2, 4} {
		c := newCluster(b, n)
		targets = append(targets, benchTarget{fmt.Sprintf("rwsplit/replicas=%d", n), c.db})
	}
	one := targets[0].q.(*DB)
	raw := one.nodeList()[1].db
	if write {
		raw = one.nodeList()[0].db
	}
	return append([]benchTarget{{"raw", raw}}, targets...)
}

func BenchmarkQuery(b *testing.B) {
	for _, tg := range benchTargets(b, false) {
		b.Run(tg.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rows, err := tg.q.QueryContext(ctx, benchQuery, 1)
					if err != nil {
						b.Error(err)
						return
					}
					rows.Close()
				}
			})
		})
	}
}

func BenchmarkExec(b *testing.B) {
	for _, tg := range benchTargets(b, true) {
		b.Run(tg.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := tg.q.ExecContext(ctx, "UPDATE users SET name = $1 WHERE id = $2", "a", 1); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// The serial variants show the CPU cost of routing without the cache-line
// traffic of two cores sharing counters.

func BenchmarkQuerySerial(b *testing.B) {
	for _, tg := range benchTargets(b, false) {
		b.Run(tg.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				rows, err := tg.q.QueryContext(ctx, benchQuery, 1)
				if err != nil {
					b.Fatal(err)
				}
				rows.Close()
			}
		})
	}
}

func BenchmarkExecSerial(b *testing.B) {
	for _, tg := range benchTargets(b, true) {
		b.Run(tg.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tg.q.ExecContext(ctx, "UPDATE users SET name = $1 WHERE id = $2", "a", 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOverhead measures rwsplit against raw *sql.DB in one loop that
// alternates between them, so that both sides see the same machine: on a
// shared host the load of other tenants drifts from second to second, and
// two benchmarks run one after the other can differ by more than the
// overhead they are meant to show. Raw is the handle rwsplit sends the
// call to (the one-replica cluster's replica for Query, its primary for
// Exec). Serial runs alternate blocks of overheadBlock calls; parallel
// runs switch sides together, every overheadPhase of wall time, so both
// goroutines contend on the same pool at once. It reports each side's
// ns/op (for parallel runs, per call across the goroutines, as RunParallel
// reports it) and the overhead in percent.
func BenchmarkOverhead(b *testing.B) {
	c := newCluster(b, 1)
	ctx := context.Background()
	query := func(q querier) error {
		rows, err := q.QueryContext(ctx, benchQuery, 1)
		if err == nil {
			rows.Close()
		}
		return err
	}
	exec := func(q querier) error {
		_, err := q.ExecContext(ctx, "UPDATE users SET name = $1 WHERE id = $2", "a", 1)
		return err
	}
	ops := []struct {
		name string
		do   func(querier) error
		raw  *sql.DB
	}{{"Query", query, c.db.nodeList()[1].db}, {"Exec", exec, c.db.nodeList()[0].db}}
	for _, n := range []int{2, 4} {
		b.Run(fmt.Sprintf("Query/parallel/replicas=%d", n), func(b *testing.B) { overheadReplicas(b, n) })
	}
	for _, op := range ops {
		sides := [2]querier{op.raw, c.db}
		b.Run(op.name+"/serial", func(b *testing.B) { interleave(b, sides, op.do) })
		b.Run(op.name+"/parallel", func(b *testing.B) {
			var mu sync.Mutex
			var total overheadTally
			var goroutines atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				goroutines.Add(1)
				var t overheadTally
				for more := true; more; {
					start := time.Now()
					side := int(start.UnixNano()/int64(overheadPhase)) % 2
					j := 0
					for ; j < overheadBlock; j++ {
						if more = pb.Next(); !more {
							break
						}
						if err := op.do(sides[side]); err != nil {
							b.Error(err)
							return
						}
					}
					t.add(side, time.Since(start), j)
				}
				mu.Lock()
				total.merge(t)
				mu.Unlock()
			})
			total.report(b, int(goroutines.Load()))
		})
	}
}

// roundRobinRouter is the plain router BenchmarkOverhead compares with
// when there are several replicas: reads in turn over the replica handles,
// and nothing else (no classification, health, accounting or fallback),
// as a few-line read/write splitter does it.
type roundRobinRouter struct {
	replicas []*sql.DB
	primary  *sql.DB
	next     atomic.Uint64
}

func (r *roundRobinRouter) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return r.replicas[(r.next.Add(1)-1)%uint64(len(r.replicas))].QueryContext(ctx, query, args...)
}

func (r *roundRobinRouter) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return r.primary.ExecContext(ctx, query, args...)
}

// overheadReplicas is BenchmarkOverhead's parallel read with n replicas:
// raw (the first replica's handle alone), the plain round-robin router
// over the replicas' handles, and rwsplit with its defaults, switching
// sides together every overheadPhase. It reports each side's ns/op and
// rwsplit's against the two others as ratios.
func overheadReplicas(b *testing.B, n int) {
	c := newCluster(b, n)
	var handles []*sql.DB
	for _, r := range c.db.nodeList()[1:] {
		handles = append(handles, r.db)
	}
	sides := [3]querier{handles[0], &roundRobinRouter{replicas: handles, primary: c.db.nodeList()[0].db}, c.db}
	ctx := context.Background()
	var mu sync.Mutex
	var total [3]struct {
		d time.Duration
		n int
	}
	var goroutines atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		goroutines.Add(1)
		var t [3]struct {
			d time.Duration
			n int
		}
		for more := true; more; {
			start := time.Now()
			side := int(start.UnixNano()/int64(overheadPhase)) % 3
			j := 0
			for ; j < overheadBlock; j++ {
				if more = pb.Next(); !more {
					break
				}
				rows, err := sides[side].QueryContext(ctx, benchQuery, 1)
				if err != nil {
					b.Error(err)
					return
				}
				rows.Close()
			}
			t[side].d += time.Since(start)
			t[side].n += j
		}
		mu.Lock()
		for i := range total {
			total[i].d += t[i].d
			total[i].n += t[i].n
		}
		mu.Unlock()
	})
	for i := range total {
		if total[i].n == 0 {
			return // too few calls to have run every side
		}
	}
	var per [3]float64
	for i := range per {
		per[i] = float64(total[i].d) / float64(total[i].n) / float64(goroutines.Load())
	}
	b.ReportMetric(per[0], "raw-ns/op")
	b.ReportMetric(per[1], "roundrobin-ns/op")
	b.ReportMetric(per[2], "rwsplit-ns/op")
	b.ReportMetric(per[2]/per[0], "x-raw")
	b.ReportMetric(per[2]/per[1], "x-roundrobin")
}

// interleave runs do on the two sides in alternating blocks of
// overheadBlock calls from one goroutine and reports the overhead of
// sides[1] over sides[0].
func interleave(b *testing.B, sides [2]querier, do func(querier) error) {
	var t overheadTally
	for i := 0; i < b.N; {
		side := (i / overheadBlock) % 2
		start := time.Now()
		j := 0
		for ; j < overheadBlock && i < b.N; j, i = j+1, i+1 {
			if err := do(sides[side]); err != nil {
				b.Fatal(err)
			}
		}
		t.add(side, time.Since(start), j)
	}
	t.report(b, 1)
}

// BenchmarkOverheadParts splits a read's overhead: each part runs one
// piece of rwsplit's work around a query on the replica's own handle,
// interleaved with the raw handle as in BenchmarkOverhead. wrapper is the
// call through the DB and its closed check alone; classify adds the
// classification; route, the whole routing; account, the call's
// accounting without the routing; both, routing and accounting (what
// QueryContext does when nothing fails).
func BenchmarkOverheadParts(b *testing.B) {
	c := newCluster(b, 1)
	ctx := context.Background()
	raw := c.db.nodeList()[1].db
	do := func(q querier) error {
		rows, err := q.QueryContext(ctx, benchQuery, 1)
		if err == nil {
			rows.Close()
		}
		return err
	}
	for _, part := range []string{"wrapper", "classify", "route", "account", "both"} {
		b.Run(part, func(b *testing.B) { interleave(b, [2]querier{raw, overheadPart{c.db, part}}, do) })
	}
}

// overheadPart is a querier that does one part of DB.QueryContext's work.
type overheadPart struct {
	db   *DB
	part string
}

func (p overheadPart) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	db := p.db
	if db.closed.Load() {
		return nil, ErrClosed
	}
	r := db.nodeList()[1]
	switch p.part {
	case "classify":
		if !db.classes.isRead(db.dialect.class, query) {
			return nil, fmt.Errorf("%q classified as a write", query)
		}
	case "route", "both":
		rt, _, err := db.routeRead(ctx, query)
		if err != nil {
			return nil, err
		}
		r = rt.r
	}
	if p.part == "account" || p.part == "both" {
		c := r.begin(callRead)
		rows, err := r.db.QueryContext(ctx, query, args...)
		r.end(ctx, c, err)
		return rows, err
	}
	return r.db.QueryContext(ctx, query, args...)
}

func (p overheadPart) ExecContext(context.Context, string, ...any) (sql.Result, error) {
	return nil, fmt.Errorf("overheadPart reads only")
}

const (
	overheadBlock = 64
	overheadPhase = time.Millisecond
)

// overheadTally sums the time and calls of each side: 0 raw, 1 rwsplit.
type overheadTally struct {
	d [2]time.Duration
	n [2]int
}

func (t *overheadTally) add(side int, d time.Duration, n int) {
	t.d[side] += d
	t.n[side] += n
}

func (t *overheadTally) merge(o overheadTally) {
	for i := range t.d {
		t.add(i, o.d[i], o.n[i])
	}
}

// report divides each side's time per call by the goroutines that shared
// the wall clock.
func (t *overheadTally) report(b *testing.B, goroutines int) {
	if t.n[0] == 0 || t.n[1] == 0 {
		return // too few calls to have run both sides
	}
	var per [2]float64
	for i := range per {
		per[i] = float64(t.d[i]) / float64(t.n[i]) / float64(goroutines)
	}
	b.ReportMetric(per[0], "raw-ns/op")
	b.ReportMetric(per[1], "rwsplit-ns/op")
	b.ReportMetric(100*(per[1]/per[0]-1), "overhead-%")
}

// BenchmarkRouting measures rwsplit's own work per call, without the
// driver: for a read, classify, route, account and note it as served; for
// a write, check the primary, account and note it.
func BenchmarkRouting(b *testing.B) {
	db := newCluster(b, 1).db
	ctx := context.Background()
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rt, _, err := db.routeRead(ctx, benchQuery)
			if err != nil || !rt.read {
				b.Fatalf("routed to %v (read %v): %v", rt.r, rt.read, err)
			}
			db.sent(rt)
			c := rt.r.begin(rt.kind())
			rt.r.end(ctx, c, nil)
			db.done(rt)
			db.served(ctx, rt)
		}
	})
	b.Run("write", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, err := db.writer(ctx)
			if err != nil {
				b.Fatal(err)
			}
			c := r.begin(callWrite)
			r.end(ctx, c, nil)
			db.wrote()
			if o := optionsOf(ctx); o != nil {
				b.Fatal("options on a plain context")
			}
		}
	})
}

// BenchmarkPoolStats measures what LeastInFlight would pay per pick to also
// weigh sql.DBStats.InUse: (*sql.DB).Stats takes the pool's mutex, which
// every query and every returned connection also takes.
func BenchmarkPoolStats(b *testing.B) {
	db := fakedriver.NewServer("s").DB()
	b.Cleanup(func() { db.Close() })
	b.Run("Stats", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = db.Stats().InUse
			}
		})
	})
	b.Run("StatsUnderQueries", func(b *testing.B) {
		// Half the goroutines query, half read Stats: the cost a picker
		// would add to a busy pool.
		ctx := context.Background()
		var n atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			querier := n.Add(1)%2 == 0
			for pb.Next() {
				if querier {
					rows, err := db.QueryContext(ctx, benchQuery, 1)
					if err == nil {
						rows.Close()
					}
				} else {
					_ = db.Stats().InUse
				}
			}
		})
	})
}

// BenchmarkSessionQuery is the cost of a session read whose replica is
// proven caught up (no round trip): routing checks the session's position
// against the replica's cached one. The fake nodes have no positions, so
// the benchmark sets them as a probe would.
func BenchmarkSessionQuery(b *testing.B) {
	c := newCluster(b, 2)
	for _, r := range c.db.nodeList() {
		r.pos.Store(&nodePosition{pos: position{lsn: 1 << 40}, epoch: epoch{n: 1}, epochKnown: true, at: monotime()})
	}
	for _, mode := range []string{"no-session", "session"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			if mode == "session" {
				s := NewSession()
				s.kind, s.need, s.hasNeed, s.ep, s.epKnown = dialectPostgres, position{lsn: 1 << 30}, true, epoch{n: 1}, true
				ctx = WithSession(ctx, s)
			}
			b.ReportAllocs()
			for b.Loop() {
				rows, err := c.db.QueryContext(ctx, benchQuery, 1)
				if err != nil {
					b.Fatal(err)
				}
				rows.Close()
			}
			b.StopTimer()
			if mode == "session" && c.db.counts.sessionPrimaryReads.Load() != 0 {
				b.Fatalf("%d session reads went to the primary", c.db.counts.sessionPrimaryReads.Load())
			}
		})
	}
}

// countingObserver is what a metrics adapter does per call, without its
// library: a counter per operation and reason, and a latency sum.
type countingObserver struct {
	calls   [8][16]atomic.Uint64
	latency atomic.Int64
}

func (o *countingObserver) ObserveCall(e CallEvent) {
	o.calls[e.Op&7][e.Reason&15].Add(1)
	o.latency.Add(int64(e.Latency))
}

func (o *countingObserver) ObserveEvent(Event) {}

// BenchmarkObserver measures what observing costs: raw *sql.DB, rwsplit
// without an observer and rwsplit with countingObserver, over the same
// node handles (one replica), alternating in one loop as BenchmarkOverhead
// does. It reports each side's ns/op and the observed DB's against the
// plain one; allocations are checked by TestObserverAllocatesNothing.
func BenchmarkObserver(b *testing.B) {
	c := newCluster(b, 1)
	obs := &countingObserver{}
	observed, err := New(c.db.nodeList()[0].db, []*sql.DB{c.db.nodeList()[1].db}, WithDialect("postgres"), WithObserver(obs))
	if err != nil {
		b.Fatal(err)
	}
	defer observed.Close()
	ctx := context.Background()
	sides := []querier{c.db.nodeList()[1].db, c.db, observed}
	do := func(q querier) error {
		rows, err := q.QueryContext(ctx, benchQuery, 1)
		if err == nil {
			rows.Close()
		}
		return err
	}
	for _, parallel := range []bool{false, true} {
		name := "Query/serial"
		if parallel {
			name = "Query/parallel"
		}
		b.Run(name, func(b *testing.B) {
			per := alternate(b, sides, parallel, do)
			if per == nil {
				return
			}
			b.ReportMetric(per[0], "raw-ns/op")
			b.ReportMetric(per[1], "rwsplit-ns/op")
			b.ReportMetric(per[2], "observed-ns/op")
			b.ReportMetric(per[1]/per[0], "x-raw")
			b.ReportMetric(per[2]/per[1], "x-unobserved")
		})
	}
}

// alternate runs do on each side in turn, in blocks of overheadBlock
// calls: from one goroutine, or from RunParallel's, which switch sides
// together every overheadPhase. It returns each side's ns per call (per
// call across the goroutines when parallel), or nil when a run was too
// short to reach every side.
func alternate(b *testing.B, sides []querier, parallel bool, do func(querier) error) []float64 {
	d := make([]time.Duration, len(sides))
	n := make([]int, len(sides))
	goroutines := 1
	if !parallel {
		for i := 0; i < b.N; {
			side := (i / overheadBlock) % len(sides)
			start := time.Now()
			j := 0
			for ; j < overheadBlock && i < b.N; j, i = j+1, i+1 {
				if err := do(sides[side]); err != nil {
					b.Fatal(err)
				}
			}
			d[side] += time.Since(start)
			n[side] += j
		}
	} else {
		var mu sync.Mutex
		var g atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			g.Add(1)
			td := make([]time.Duration, len(sides))
			tn := make([]int, len(sides))
			for more := true; more; {
				start := time.Now()
				side := int(start.UnixNano()/int64(overheadPhase)) % len(sides)
				j := 0
				for ; j < overheadBlock; j++ {
					if more = pb.Next(); !more {
						break
					}
					if err := do(sides[side]); err != nil {
						b.Error(err)
						return
					}
				}
				td[side] += time.Since(start)
				tn[side] += j
			}
			mu.Lock()
			for i := range sides {
				d[i] += td[i]
				n[i] += tn[i]
			}
			mu.Unlock()
		})
		goroutines = int(g.Load())
	}
	per := make([]float64, len(sides))
	for i := range sides {
		if n[i] == 0 {
			return nil
		}
		per[i] = float64(d[i]) / float64(n[i]) / float64(goroutines)
	}
	return per
}
