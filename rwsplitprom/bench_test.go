package rwsplitprom_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit"
)

// BenchmarkObserveCall is the observer's own cost per call, from many
// goroutines on the same series.
func BenchmarkObserveCall(b *testing.B) {
	c, _ := newRegistry(b)
	o := c.Observer("app")
	e := rwsplit.CallEvent{Context: context.Background(), Op: rwsplit.OpQuery, Node: "127.0.0.1:5433", Role: rwsplit.RoleReplica, Reason: rwsplit.ReasonPolicy, Attempt: 1, Latency: time.Millisecond}
	o.ObserveCall(e)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o.ObserveCall(e)
		}
	})
}

// BenchmarkQuery compares a read through a raw *sql.DB (the replica's
// handle), through rwsplit, and through rwsplit with the collector's
// observer, on the in-memory driver; rwsplit+noop-observer is the cost of
// being observed at all (the core times the call and builds its event),
// so the difference between the last two is what the metrics cost.
func BenchmarkQuery(b *testing.B) {
	c, _ := newRegistry(b)
	plain := newMemCluster(b, 1)
	observed := newMemCluster(b, 1, rwsplit.WithObserver(c.Observer("app")))
	c.Track("app", observed.db)
	noop := newMemCluster(b, 1, rwsplit.WithObserver(rwsplit.ObserverFuncs{}))
	for _, tg := range []struct {
		name string
		q    interface {
			QueryContext(context.Context, string, ...any) (*sql.Rows, error)
		}
	}{
		{"raw", plain.db.Replicas()[0]},
		{"rwsplit", plain.db},
		{"rwsplit+noop-observer", noop.db},
		{"rwsplit+prom", observed.db},
	} {
		b.Run(tg.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rows, err := tg.q.QueryContext(ctx, "SELECT name FROM users WHERE id = $1", 1)
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
