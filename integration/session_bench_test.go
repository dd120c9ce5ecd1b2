package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// BenchmarkSessionWrite is the cost a session adds to a write on a real
// PostgreSQL primary: the position read after the statement (one round
// trip). Compare the two sub-benchmarks of one run:
//
//	go test -run '^$' -bench SessionWrite -benchmem -count 5 ./...
func BenchmarkSessionWrite(b *testing.B) {
	db := openCluster(b, pgCluster)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS bench_writes (id bigserial PRIMARY KEY, v int)"); err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"no-session", "session"} {
		b.Run(mode, func(b *testing.B) {
			wctx := ctx
			if mode == "session" {
				wctx = rwsplit.WithSession(ctx, rwsplit.NewSession())
			}
			before := db.Stats().PositionReads
			b.ReportAllocs()
			for b.Loop() {
				if _, err := db.ExecContext(wctx, "INSERT INTO bench_writes (v) VALUES (1)"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(db.Stats().PositionReads-before)/float64(b.N), "position-reads/op")
		})
	}
}

// BenchmarkSessionReplicaShare measures which share of session reads
// replicas serve, by replica lag (recovery_min_apply_delay on both
// replicas) and WithSessionWait. Workload: 16 sessions, each writing a row
// and then reading it 10 times, 20 ms apart (a page that posts and then
// polls), 3 rounds each; the default health interval (1 s). The workload
// is fixed: run it with -benchtime=1x:
//
//	go test -run '^$' -bench SessionReplicaShare -benchtime=1x -timeout 10m ./...
func BenchmarkSessionReplicaShare(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, err := rwsplittest.StartLocal(ctx, rwsplittest.Postgres, rwsplittest.LocalOptions{Replicas: 2})
	cancel()
	if err != nil {
		b.Fatalf("starting a postgres cluster: %v", err)
	}
	b.Cleanup(func() { c.Close() })
	setup := openCluster(b, c)
	if _, err := setup.ExecContext(context.Background(), "CREATE TABLE posts (id bigint PRIMARY KEY)"); err != nil {
		b.Fatal(err)
	}
	replicaPorts := map[int]bool{}
	for _, n := range c.Replicas() {
		replicaPorts[n.Port()] = true
	}
	var ids atomic.Int64
	var table strings.Builder
	fmt.Fprintf(&table, "%-8s %-6s %10s %10s %10s %6s\n", "LAG", "WAIT", "ON-REPLICA", "READ-P50", "READ-P99", "STALE")
	for _, delay := range []time.Duration{0, 20 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond, time.Second} {
		for _, n := range c.Replicas() {
			if _, err := n.Exec(context.Background(), fmt.Sprintf("ALTER SYSTEM SET recovery_min_apply_delay = '%dms'", delay.Milliseconds())); err != nil {
				b.Fatal(err)
			}
			if _, err := n.Exec(context.Background(), "SELECT pg_reload_conf()"); err != nil {
				b.Fatal(err)
			}
		}
		for _, wait := range []time.Duration{0, 50 * time.Millisecond} {
			name := fmt.Sprintf("lag=%v/wait=%v", delay, wait)
			b.Run(name, func(b *testing.B) {
				db := openCluster(b, c, rwsplit.WithSessionWait(wait))
				db.SetMaxIdleConns(32)
				if _, ok := waitFor(10*time.Second, func() bool { return db.Stats().Eligible == 2 }); !ok {
					b.Fatalf("replicas not eligible:\n%s", db.Stats())
				}
				var mu sync.Mutex
				var lat []time.Duration
				var reads, onReplica, stale int
				var wg sync.WaitGroup
				for range 16 {
					wg.Go(func() {
						s := rwsplit.NewSession()
						sctx := rwsplit.WithSession(context.Background(), s)
						for range 3 {
							id := ids.Add(1)
							if _, err := db.ExecContext(sctx, "INSERT INTO posts VALUES ($1)", id); err != nil {
								b.Error(err)
								return
							}
							for range 10 {
								start := time.Now()
								var n, port int
								err := db.QueryRowContext(sctx, "SELECT count(*)::int, inet_server_port() FROM posts WHERE id = $1", id).Scan(&n, &port)
								took := time.Since(start)
								if err != nil {
									b.Error(err)
									return
								}
								mu.Lock()
								lat = append(lat, took)
								reads++
								if replicaPorts[port] {
									onReplica++
								}
								if n != 1 {
									stale++
								}
								mu.Unlock()
								time.Sleep(20 * time.Millisecond)
							}
						}
					})
				}
				wg.Wait()
				slices.Sort(lat)
				q := func(f float64) time.Duration { return lat[min(len(lat)-1, int(f*float64(len(lat))))] }
				share := 100 * float64(onReplica) / float64(reads)
				b.ReportMetric(share, "replica-%")
				b.ReportMetric(float64(stale), "stale")
				if stale > 0 {
					b.Errorf("%d stale reads", stale)
				}
				fmt.Fprintf(&table, "%-8v %-6v %9.1f%% %10v %10v %6d\n", delay, wait, share,
					q(.5).Round(10*time.Microsecond), q(.99).Round(10*time.Microsecond), stale)
			})
		}
	}
	fmt.Printf("session reads on replicas (16 sessions x 3 x (write + 10 reads 20ms apart)):\n%s", table.String())
}
