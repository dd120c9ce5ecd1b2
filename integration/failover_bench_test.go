package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// BenchmarkFailover measures a failover: a writer writes every 2 ms
// through one handle and the primary is crashed. The promotion is either
// external (the benchmark promotes a replica at once, as Patroni or an
// operator would) or automatic (WithAutoFailover, After 1s), with replicas
// that are caught up or that apply 3 s late (lagging: they receive at
// once and replay late, longer than After). Per server, promotion and
// health interval:
//   - detection: the crash begun → the first write refused with ErrNoPrimary;
//   - promote: the server gone (Crash returned) → the promotion done
//     (external: the call returned; pg_promote waits until the node is out
//     of recovery; automatic: Stats().Promotions seen to count it);
//   - switch: promotion returned → rwsplit's primary is the promoted node
//     (0 when rwsplit had switched before the promotion call returned);
//   - outage: crash → the first write begun after the crash acknowledged;
//   - lost: acknowledged writes missing on the new primary (replication
//     is asynchronous and the writer never pauses).
//
// For the timeline in docs/failover.svg it also reports, as offsets from
// the crash begun in ms: the last write acknowledged before the crash
// (last-write-at-ms, negative), the server gone (down-at-ms), the first
// write refused (detected-at-ms, the same instant as detection), the
// promotion done (promoted-at-ms), rwsplit's primary switched
// (switched-at-ms) and the first write begun after the crash
// acknowledged (first-write-at-ms).
//
// Each case starts its own cluster. Run it with -benchtime=1x:
//
//	go test -run '^$' -bench Failover -benchtime=1x -timeout 10m ./...
func BenchmarkFailover(b *testing.B) {
	var table strings.Builder
	fmt.Fprintf(&table, "%-9s %-17s %-9s %10s %10s %10s %10s %6s %6s\n", "SERVER", "PROMOTION", "INTERVAL", "DETECTION", "PROMOTE", "SWITCH", "OUTAGE", "ACKED", "LOST")
	cases := []struct {
		mode     string
		interval time.Duration
	}{
		{"external", time.Second}, {"external", 200 * time.Millisecond},
		{"auto", time.Second}, {"auto", 200 * time.Millisecond},
		{"auto-lagging", 200 * time.Millisecond},
	}
	for _, kind := range []rwsplittest.Kind{rwsplittest.Postgres, rwsplittest.MariaDB} {
		for _, cs := range cases {
			mode, interval := cs.mode, cs.interval
			b.Run(fmt.Sprintf("%s/%s/interval=%v", kind, mode, interval), func(b *testing.B) {
				r := failoverRun(b, kind, mode, interval)
				b.ReportMetric(float64(r.detection)/1e6, "detection-ms")
				b.ReportMetric(float64(r.switched)/1e6, "switch-ms")
				b.ReportMetric(float64(r.outage)/1e6, "outage-ms")
				b.ReportMetric(float64(r.lost), "lost")
				for _, m := range []struct {
					unit string
					at   time.Duration
				}{
					{"last-write-at-ms", r.lastWriteAt}, {"down-at-ms", r.downAt}, {"detected-at-ms", r.detection},
					{"promoted-at-ms", r.promotedAt}, {"switched-at-ms", r.switchedAt}, {"first-write-at-ms", r.firstWriteAt},
				} {
					b.ReportMetric(float64(m.at)/1e6, m.unit)
				}
				fmt.Fprintf(&table, "%-9s %-17s %-9v %10v %10v %10v %10v %6d %6d\n", kind, mode, interval,
					r.detection.Round(time.Millisecond), r.promote.Round(time.Millisecond), r.switched.Round(time.Millisecond), r.outage.Round(time.Millisecond), r.acked, r.lost)
			})
		}
	}
	fmt.Printf("failover:\n%s", table.String())
}

type failoverFigures struct {
	detection, promote, switched, outage time.Duration
	acked, lost                          int
	// The timeline: offsets from the crash begun.
	lastWriteAt, downAt, promotedAt, switchedAt, firstWriteAt time.Duration
}

func failoverRun(b *testing.B, kind rwsplittest.Kind, mode string, interval time.Duration) failoverFigures {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	copts := rwsplittest.LocalOptions{Replicas: 2}
	if mode == "auto-lagging" {
		copts.ApplyDelay = []time.Duration{3 * time.Second, 3 * time.Second}
	}
	c, err := rwsplittest.StartLocal(ctx, kind, copts)
	if err != nil {
		b.Fatalf("starting a cluster: %v", err)
	}
	defer c.Close()
	q := pgSessionSQL
	if kind == rwsplittest.MariaDB {
		q = mariaSessionSQL
	}
	opts := []rwsplit.Option{rwsplit.WithHealthCheckInterval(interval)}
	if mode != "external" {
		opts = append(opts, rwsplit.WithAutoFailover(rwsplit.AutoFailover{Admin: adminHandles(b, c), After: autoFailoverAfter}))
	}
	db := openCluster(b, c, opts...)
	if _, err := db.ExecContext(ctx, q.create); err != nil {
		b.Fatal(err)
	}
	if err := c.WaitCaughtUp(ctx, c.Primary()); err != nil {
		b.Fatal(err)
	}
	type write struct {
		id        int64
		start, at time.Time
		err       error
	}
	var mu sync.Mutex
	var log []write
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			id := sessionIDs.Add(1)
			start := time.Now()
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := db.ExecContext(wctx, q.insert, id, fmt.Sprint("v", id))
			cancel()
			mu.Lock()
			log = append(log, write{id, start, time.Now(), err})
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	})
	time.Sleep(time.Second)
	promoted := c.Replicas()[0]
	crashBegun := time.Now()
	if err := c.Primary().Crash(); err != nil {
		b.Fatal(err)
	}
	crashAt := time.Now() // Crash returns once the server is gone and its port closed
	if mode == "external" {
		if err := promoted.Promote(ctx); err != nil {
			b.Fatal(err)
		}
	} else if _, ok := waitFor(30*time.Second, func() bool { return db.Stats().Promotions == 1 }); !ok {
		b.Fatalf("rwsplit promoted no replica:\n%s", db.Stats())
	}
	promotedAt := time.Now()
	var f failoverFigures
	if _, ok := waitFor(20*time.Second, func() bool { return db.Stats().PrimaryChanges == 1 }); !ok {
		b.Fatalf("rwsplit did not follow the promotion:\n%s", db.Stats())
	}
	f.promote = promotedAt.Sub(crashAt)
	f.switched = time.Since(promotedAt)
	f.downAt, f.promotedAt = crashAt.Sub(crashBegun), promotedAt.Sub(crashBegun)
	f.switchedAt = f.promotedAt + f.switched
	for _, n := range db.Stats().Nodes {
		for _, r := range c.Replicas() {
			if n.Role == rwsplit.RolePrimary && n.Name == r.Addr() {
				promoted = r
			}
		}
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	var lastBefore, firstAfter, firstRefused time.Time
	var acked []int64
	for _, w := range log {
		switch {
		case w.err == nil && w.at.Before(crashAt):
			lastBefore = w.at
		case w.err == nil && firstAfter.IsZero() && w.start.After(crashAt):
			firstAfter = w.at
		case errors.Is(w.err, rwsplit.ErrNoPrimary) && firstRefused.IsZero():
			firstRefused = w.at
		}
		if w.err == nil {
			acked = append(acked, w.id)
		}
	}
	if !firstRefused.IsZero() {
		f.detection = firstRefused.Sub(crashBegun)
	}
	f.outage = firstAfter.Sub(lastBefore)
	f.lastWriteAt, f.firstWriteAt = lastBefore.Sub(crashBegun), firstAfter.Sub(crashBegun)
	f.acked = len(acked)
	check, err := sql.Open(c.DriverName(), promoted.DSN())
	if err != nil {
		b.Fatal(err)
	}
	defer check.Close()
	for _, id := range acked {
		var v string
		if err := check.QueryRowContext(ctx, q.value, id).Scan(&v); err != nil {
			f.lost++
		}
	}
	return f
}
