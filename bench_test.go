package rwsplit

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/rwsplit/rwsplit/internal/fakedriver"
)

// The benchmarks compare rwsplit with a raw *sql.DB over the same
// in-memory driver in the same run; the ratio is the library's overhead.

const benchQuery = "SELECT id, name FROM users WHERE id = $1"

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func benchTargets(b *testing.B) []struct {
	name string
	q    querier
} {
	raw := fakedriver.NewServer("raw").DB()
	b.Cleanup(func() { raw.Close() })
	targets := []struct {
		name string
		q    querier
	}{{"raw", raw}}
	for _, n := range []int{1, 2, 4} {
		c := newCluster(b, n)
		targets = append(targets, struct {
			name string
			q    querier
		}{fmt.Sprintf("rwsplit/replicas=%d", n), c.db})
	}
	return targets
}

func BenchmarkQuery(b *testing.B) {
	for _, tg := range benchTargets(b) {
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
	for _, tg := range benchTargets(b) {
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
	for _, tg := range benchTargets(b) {
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
	for _, tg := range benchTargets(b) {
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

// BenchmarkRouting measures rwsplit's own work per call, without the
// driver: for a read, classify, route, account and note it as served; for
// a write, check the primary, account and note it.
func BenchmarkRouting(b *testing.B) {
	db := newCluster(b, 1).db
	ctx := context.Background()
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rt, err := db.routeRead(ctx, benchQuery)
			if err != nil || !rt.read {
				b.Fatalf("routed to %v (read %v): %v", rt.r, rt.read, err)
			}
			db.sent(rt)
			c := rt.r.begin(callKindOf(rt))
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
	for _, r := range c.db.nodes {
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
			if mode == "session" && c.db.sessionPrimaryReads.Load() != 0 {
				b.Fatalf("%d session reads went to the primary", c.db.sessionPrimaryReads.Load())
			}
		})
	}
}
