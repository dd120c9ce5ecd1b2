package integration

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// Tail-latency benchmark: a PostgreSQL primary with three replicas, each
// replica behind an in-process Toxiproxy proxy. For every policy and every
// condition (no fault; replica 1 +50ms downstream latency) a fresh rwsplit
// handle is opened, warmed up, and tailReads reads of SELECT
// inet_server_port() are made by tailWorkers goroutines; the per-read
// latencies give p50, p90, p99, p99.9 and the maximum, reported as
// metrics (p50-ms to max-ms; docs/tail-latency.svg plots them). The
// workload is fixed: b.N is ignored, so run it with -benchtime=1x:
//
//	go test -run '^$' -bench TailLatency -benchtime=1x -timeout 10m ./...
const (
	tailWorkers = 16
	tailReads   = 3000
	tailWarmup  = 20 // reads per worker before measuring
	tailSlowMS  = 50
)

type tailResult struct {
	policy, condition string
	p50, p90, p99     time.Duration
	p999, max         time.Duration
	slowShare         float64 // share of reads served by the slow replica
	failed            int
}

func BenchmarkTailLatency(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, err := rwsplittest.StartLocal(ctx, rwsplittest.Postgres, rwsplittest.LocalOptions{Replicas: 3})
	cancel()
	if err != nil {
		b.Fatalf("starting a postgres cluster: %v", err)
	}
	b.Cleanup(func() {
		if err := c.Close(); err != nil {
			b.Errorf("closing the cluster: %v", err)
		}
	})
	ts := newToxiServer(b)
	var proxies []*toxiproxy.Proxy
	for i, n := range c.Replicas() {
		proxies = append(proxies, ts.proxy(b, fmt.Sprintf("replica%d", i+1), n.Addr()))
	}
	slow := proxies[0]
	slowPort := c.Replicas()[0].Port()

	policies := []struct {
		name string
		new  func() rwsplit.Policy
	}{
		{"RoundRobin", rwsplit.RoundRobin},
		{"Random", rwsplit.Random},
		{"LeastInFlight", rwsplit.LeastInFlight},
		{"LeastLatency", rwsplit.LeastLatency},
	}
	conditions := []string{"nofault", "slow50ms"}

	var results []tailResult
	for _, pol := range policies {
		b.Run(pol.name, func(b *testing.B) {
			for _, cond := range conditions {
				b.Run(cond, func(b *testing.B) {
					if cond == "slow50ms" {
						toxiAdd(b, slow, "slow", "latency", "downstream", map[string]any{"latency": tailSlowMS})
						defer toxiRemove(b, slow, "slow")
					}
					r := tailRun(b, c, proxies, pol.new(), slowPort)
					r.policy, r.condition = pol.name, cond
					b.ReportMetric(float64(r.p50)/float64(time.Millisecond), "p50-ms")
					b.ReportMetric(float64(r.p90)/float64(time.Millisecond), "p90-ms")
					b.ReportMetric(float64(r.p99)/float64(time.Millisecond), "p99-ms")
					b.ReportMetric(float64(r.p999)/float64(time.Millisecond), "p999-ms")
					b.ReportMetric(float64(r.max)/float64(time.Millisecond), "max-ms")
					b.ReportMetric(100*r.slowShare, "slow-replica-%")
					if r.failed > 0 {
						b.Errorf("%d of %d reads failed", r.failed, tailReads)
					}
					b.Logf("p50 %s p99 %s p99.9 %s max %s, %.1f%% of reads on the slow replica, %d failed",
						toxiMS(r.p50), toxiMS(r.p99), toxiMS(r.p999), toxiMS(r.max), 100*r.slowShare, r.failed)
					results = append(results, r)
				})
			}
		})
	}

	var t strings.Builder
	fmt.Fprintf(&t, "%d reads by %d goroutines per row; slow50ms = replica1 +%dms downstream latency\n", tailReads, tailWorkers, tailSlowMS)
	fmt.Fprintf(&t, "%-14s %-9s %9s %9s %9s %9s %10s %6s\n", "POLICY", "CONDITION", "P50", "P99", "P99.9", "MAX", "ON-SLOW", "FAILED")
	p99 := map[string]time.Duration{}
	for _, r := range results {
		fmt.Fprintf(&t, "%-14s %-9s %9s %9s %9s %9s %9.1f%% %6d\n", r.policy, r.condition,
			toxiMS(r.p50), toxiMS(r.p99), toxiMS(r.p999), toxiMS(r.max), 100*r.slowShare, r.failed)
		p99[r.policy+"/"+r.condition] = r.p99
	}
	if base, ok := p99["LeastLatency/nofault"]; ok && base > 0 {
		if s, ok := p99["LeastLatency/slow50ms"]; ok {
			ratio := float64(s) / float64(base)
			verdict := "HOLDS"
			if ratio > 1.5 {
				verdict = "DOES NOT HOLD"
			}
			fmt.Fprintf(&t, "target LeastLatency p99(slow50ms) <= 1.5 x p99(nofault): %s / %s = %.2fx: %s\n",
				toxiMS(s), toxiMS(base), ratio, verdict)
		}
	}
	// The parent of sub-benchmarks has no result line of its own, and
	// go test drops its log unless it fails: print the table as well.
	b.Logf("tail latency:\n%s", t.String())
	fmt.Printf("tail latency:\n%s", t.String())
}

// tailRun opens a fresh handle with policy over c (replicas through
// proxies), warms it up, and measures tailReads reads.
func tailRun(b *testing.B, c *rwsplittest.LocalCluster, proxies []*toxiproxy.Proxy, policy rwsplit.Policy, slowPort int) tailResult {
	b.Helper()
	db := openProxied(b, c, proxies, rwsplit.WithPolicy(policy), rwsplit.WithHealthCheckInterval(fastInterval))
	// database/sql keeps 2 idle connections by default: with 16 readers
	// the pools would open and close a PostgreSQL connection (a fork and
	// a SCRAM handshake) for most reads, and that churn, not the policy,
	// would make the tail.
	db.SetMaxIdleConns(tailWorkers)
	if _, ok := waitFor(10*time.Second, func() bool { return db.Stats().Eligible == len(proxies) }); !ok {
		b.Fatalf("not every replica eligible:\n%s", statsDump(db))
	}
	// Open every replica's connections before measuring: a policy that
	// moves load between nodes would otherwise time the connections a
	// node's pool opens when its share grows (a fork and a handshake),
	// which is the pool's warm-up, not the routing's tail.
	for _, h := range db.Replicas() {
		primePool(b, h, tailWorkers)
	}
	var wg sync.WaitGroup
	for w := range tailWorkers {
		wg.Go(func() {
			for i := range tailWarmup {
				if _, err := readPort(db, toxiQuery, (w+i)%2 == 1, readDeadline); err != nil {
					b.Errorf("warm-up read: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()

	samples := make([]toxiSample, tailReads)
	var next atomic.Int64
	b.ResetTimer()
	for w := range tailWorkers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= tailReads {
					return
				}
				start := time.Now()
				port, err := readPort(db, toxiQuery, (w+int(i))%2 == 1, readDeadline)
				samples[i] = toxiSample{start, time.Since(start), port, err}
			}
		})
	}
	wg.Wait()
	b.StopTimer()

	var r tailResult
	onSlow := 0
	for _, s := range samples {
		if s.err != nil {
			r.failed++
		} else if s.port == slowPort {
			onSlow++
		}
	}
	lat := toxiLatencies(samples)
	r.p50, r.p90 = toxiQuantile(lat, .5), toxiQuantile(lat, .9)
	r.p99, r.p999, r.max = toxiQuantile(lat, .99), toxiQuantile(lat, .999), toxiQuantile(lat, 1)
	r.slowShare = float64(onSlow) / float64(tailReads)
	return r
}

// primePool opens n connections in h's pool and returns them to it idle.
func primePool(b *testing.B, h *sql.DB, n int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conns := make([]*sql.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := h.Conn(ctx)
		if err != nil {
			b.Fatalf("opening a connection: %v", err)
		}
		conns = append(conns, c)
	}
}
