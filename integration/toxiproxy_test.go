package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// Network faults injected between rwsplit and a replica by Toxiproxy, run
// in-process: each replica's DSN points at a proxy listening on a free
// 127.0.0.1 port whose upstream is the replica's own 127.0.0.1:port. The
// primary is reached directly. Toxiproxy's HTTP API is not used (its
// ApiServer.Listen cannot be stopped); proxies and toxics are driven through
// the server's ProxyCollection and each proxy's ToxicCollection.

// toxiQuery returns the serving server's real port (not the proxy's).
const toxiQuery = "SELECT inet_server_port()"

// toxiServer is an in-process Toxiproxy server whose proxies are all
// stopped when the test or benchmark that created it ends.
type toxiServer struct {
	srv *toxiproxy.ApiServer
}

func newToxiServer(tb testing.TB) *toxiServer {
	tb.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	tb.Cleanup(func() {
		// Stops every proxy: closes its listener and every connection,
		// which ends the link goroutines.
		if err := srv.Collection.Clear(); err != nil {
			tb.Errorf("stopping the toxiproxy proxies: %v", err)
		}
	})
	return &toxiServer{srv: srv}
}

// proxy starts a proxy named name on a free 127.0.0.1 port in front of
// upstream (host:port).
func (s *toxiServer) proxy(tb testing.TB, name, upstream string) *toxiproxy.Proxy {
	tb.Helper()
	p := toxiproxy.NewProxy(s.srv, name, "127.0.0.1:0", upstream)
	if err := s.srv.Collection.Add(p, true); err != nil {
		tb.Fatalf("starting proxy %s: %v", name, err)
	}
	return p
}

// toxiAdd adds a toxic to p (toxicity 1).
func toxiAdd(tb testing.TB, p *toxiproxy.Proxy, name, typ, stream string, attrs map[string]any) {
	tb.Helper()
	body, err := json.Marshal(map[string]any{
		"name": name, "type": typ, "stream": stream, "toxicity": 1.0, "attributes": attrs,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(string(body))); err != nil {
		tb.Fatalf("adding toxic %s to %s: %v", name, p.Name, err)
	}
}

// toxiRemove removes a toxic from p.
func toxiRemove(tb testing.TB, p *toxiproxy.Proxy, name string) {
	tb.Helper()
	if err := p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		tb.Errorf("removing toxic %s from %s: %v", name, p.Name, err)
	}
}

// toxiHealOnCleanup removes every toxic of the proxies when the calling
// (sub)test ends, so that the next one starts on clean links.
func toxiHealOnCleanup(tb testing.TB, proxies ...*toxiproxy.Proxy) {
	tb.Cleanup(func() {
		for _, p := range proxies {
			p.Toxics.ResetToxics(context.Background())
		}
	})
}

// viaProxy is n's DSN with the host:port replaced by the proxy's address.
func viaProxy(tb testing.TB, n *rwsplittest.LocalNode, p *toxiproxy.Proxy) string {
	tb.Helper()
	u, err := url.Parse(n.DSN())
	if err != nil {
		tb.Fatalf("parsing %s's DSN: %v", n.Name(), err)
	}
	if u.Port() != fmt.Sprint(n.Port()) {
		tb.Fatalf("%s's DSN does not carry its port %d", n.Name(), n.Port())
	}
	u.Host = p.Listen
	return u.String()
}

// openProxied opens rwsplit over c's primary (direct) and the replicas
// through the given proxies, and closes it when tb ends.
func openProxied(tb testing.TB, c *rwsplittest.LocalCluster, proxies []*toxiproxy.Proxy, opts ...rwsplit.Option) *rwsplit.DB {
	tb.Helper()
	var dsns []string
	for i, n := range c.Replicas() {
		dsns = append(dsns, viaProxy(tb, n, proxies[i]))
	}
	db, err := rwsplit.Open(c.DriverName(), c.Primary().DSN(), dsns, opts...)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db
}

// proxiedStats is the Stats entry of the replica reached through p (Open
// names it after the DSN's host:port, i.e. the proxy's address).
func proxiedStats(tb testing.TB, db *rwsplit.DB, p *toxiproxy.Proxy) rwsplit.NodeStats {
	tb.Helper()
	for _, s := range db.Stats().Nodes {
		if s.Name == p.Listen {
			return s
		}
	}
	tb.Fatalf("Stats has no node named %s:\n%s", p.Listen, db.Stats())
	return rwsplit.NodeStats{}
}

// toxiSample is one read: when it started, how long it took, which server
// port answered, and its error.
type toxiSample struct {
	start time.Time
	took  time.Duration
	port  int
	err   error
}

// toxiReaders runs workers goroutines reading query in a loop, each read
// under deadline, until the returned stop function is called; stop waits
// for them and returns every read's sample.
func toxiReaders(db *rwsplit.DB, query string, workers int, deadline time.Duration) (stop func() []toxiSample) {
	var mu sync.Mutex
	var samples []toxiSample
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				start := time.Now()
				port, err := readPort(db, query, (w+i)%2 == 1, deadline)
				took := time.Since(start)
				mu.Lock()
				samples = append(samples, toxiSample{start, took, port, err})
				mu.Unlock()
			}
		})
	}
	var once sync.Once
	return func() []toxiSample {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(samples)
	}
}

// toxiFailures reports the failed reads among samples.
func toxiFailures(t *testing.T, what string, samples []toxiSample, begin time.Time) {
	t.Helper()
	var failed []string
	for _, s := range samples {
		if s.err != nil {
			failed = append(failed, fmt.Sprintf("t+%v: %v", s.start.Sub(begin).Round(time.Millisecond), s.err))
		}
	}
	if len(failed) > 0 {
		t.Errorf("%s: %d of %d reads failed, first ones:\n  %s", what, len(failed), len(samples), strings.Join(failed[:min(len(failed), 10)], "\n  "))
	}
}

// byPort counts the successful reads of samples per serving port.
func toxiByPort(samples []toxiSample) map[int]int {
	m := map[int]int{}
	for _, s := range samples {
		if s.err == nil {
			m[s.port]++
		}
	}
	return m
}

// quantile returns the q-quantile (nearest rank) of sorted durations.
func toxiQuantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// latencies returns the durations of samples, sorted.
func toxiLatencies(samples []toxiSample) []time.Duration {
	d := make([]time.Duration, 0, len(samples))
	for _, s := range samples {
		d = append(d, s.took)
	}
	slices.Sort(d)
	return d
}

func toxiMS(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// TestToxiproxyFaults injects network faults on the link to one replica of
// a PostgreSQL cluster (primary and two replicas, both replicas behind an
// in-process Toxiproxy) while concurrent readers run through rwsplit.
func TestToxiproxyFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of its own")
	}
	c := startOwnCluster(t, rwsplittest.Postgres, rwsplittest.LocalOptions{Replicas: 2})
	ts := newToxiServer(t)
	r1, r2 := c.Replicas()[0], c.Replicas()[1]
	p1 := ts.proxy(t, "replica1", r1.Addr())
	p2 := ts.proxy(t, "replica2", r2.Addr())
	proxies := []*toxiproxy.Proxy{p1, p2}
	t.Logf("replica1 %s via proxy %s; replica2 %s via proxy %s", r1.Addr(), p1.Listen, r2.Addr(), p2.Listen)

	t.Run("latency", func(t *testing.T) {
		toxiHealOnCleanup(t, proxies...)
		toxiAdd(t, p1, "slow", "latency", "downstream", map[string]any{"latency": 50})
		db := openProxied(t, c, proxies, rwsplit.WithPolicy(rwsplit.LeastLatency()),
			rwsplit.WithHealthCheckInterval(fastInterval))
		begin := time.Now()
		stop := toxiReaders(db, toxiQuery, 8, readDeadline)
		time.Sleep(2 * time.Second)
		samples := stop()
		toxiFailures(t, "8 readers, replica1 +50ms", samples, begin)

		var late []toxiSample
		for _, s := range samples {
			if s.start.Sub(begin) >= 500*time.Millisecond {
				late = append(late, s)
			}
		}
		all, after := toxiByPort(samples), toxiByPort(late)
		ok := after[r1.Port()] + after[r2.Port()] + after[c.Primary().Port()]
		share := 0.0
		if ok > 0 {
			share = float64(after[r2.Port()]) / float64(ok)
		}
		lat := toxiLatencies(samples)
		t.Logf("measured: %d reads (all: replica1=%d replica2=%d primary=%d); after 0.5s: %d reads, replica2 (fast) %.1f%%, replica1 (slow) %d; p50 %s p99 %s max %s",
			len(samples), all[r1.Port()], all[r2.Port()], all[c.Primary().Port()], ok, 100*share, after[r1.Port()],
			toxiMS(toxiQuantile(lat, .5)), toxiMS(toxiQuantile(lat, .99)), toxiMS(toxiQuantile(lat, 1)))
		t.Logf("stats:\n%s", statsDump(db))
		if share <= 0.8 {
			t.Errorf("after 0.5s only %.1f%% of reads went to the fast replica (want > 80%%): %v", 100*share, after)
		}
	})

	t.Run("reset", func(t *testing.T) {
		toxiHealOnCleanup(t, proxies...)
		db := openProxied(t, c, proxies, rwsplit.WithPolicy(rwsplit.RoundRobin()),
			rwsplit.WithHealthCheckInterval(fastInterval))
		begin := time.Now()
		stop := toxiReaders(db, toxiQuery, 8, readDeadline)
		defer stop()
		time.Sleep(time.Second)
		faulted := time.Now()
		toxiAdd(t, p1, "reset", "reset_peer", "downstream", map[string]any{"timeout": 0})
		took, ok := waitFor(ejectCeiling, func() bool { return !proxiedStats(t, db, p1).Up })
		if !ok {
			stop()
			t.Fatalf("replica1 still in rotation %v after reset_peer:\n%s", ejectCeiling, statsDump(db))
		}
		t.Logf("measured: replica1 out of rotation %v after the reset_peer toxic", took.Round(time.Millisecond))
		time.Sleep(500 * time.Millisecond)
		toxiRemove(t, p1, "reset")
		healed := time.Now()
		took, ok = waitFor(rejoinCeiling, func() bool {
			s := proxiedStats(t, db, p1)
			return s.Up && s.Eligible
		})
		if !ok {
			stop()
			t.Fatalf("replica1 not back %v after the toxic was removed:\n%s", rejoinCeiling, statsDump(db))
		}
		t.Logf("measured: replica1 Up and Eligible again %v after the toxic was removed", took.Round(time.Millisecond))
		time.Sleep(time.Second)
		samples := stop()
		toxiFailures(t, "8 readers across reset_peer on replica1", samples, begin)

		var before, during, back []toxiSample
		for _, s := range samples {
			switch {
			case s.start.Before(faulted):
				before = append(before, s)
			case s.start.Before(healed):
				during = append(during, s)
			default:
				back = append(back, s)
			}
		}
		t.Logf("measured: before %v, during %v, after heal %v (replica1=%d replica2=%d primary=%d)",
			toxiByPort(before), toxiByPort(during), toxiByPort(back), r1.Port(), r2.Port(), c.Primary().Port())
		s := proxiedStats(t, db, p1)
		t.Logf("replica1 stats: Up=%v Ejections=%d Errors=%d Retries=%d LastError=%q", s.Up, s.Ejections, s.Errors, s.Retries, s.LastError)
		if toxiByPort(before)[r1.Port()] == 0 {
			t.Errorf("replica1 served no reads before the fault: the test proves nothing")
		}
		if toxiByPort(back)[r1.Port()] == 0 {
			t.Errorf("replica1 served no reads after it came back: %v", toxiByPort(back))
		}
		if s.Ejections < 1 {
			t.Errorf("replica1 Ejections = %d, want ≥ 1", s.Ejections)
		}
	})

	t.Run("blackhole", func(t *testing.T) {
		toxiHealOnCleanup(t, proxies...)
		db := openProxied(t, c, proxies, rwsplit.WithPolicy(rwsplit.RoundRobin()),
			rwsplit.WithHealthCheckInterval(fastInterval),
			rwsplit.WithHealthCheckTimeout(300*time.Millisecond),
			rwsplit.WithHedging(rwsplit.Hedging{Floor: 20 * time.Millisecond, Ceiling: 200 * time.Millisecond, Budget: 1}))
		for i := range 20 { // warm both pools and latency estimates
			if _, err := readPort(db, toxiQuery, i%2 == 1, readDeadline); err != nil {
				t.Fatalf("read before the fault: %v", err)
			}
		}
		begin := time.Now()
		stop := toxiReaders(db, toxiQuery, 8, readDeadline)
		defer stop()
		time.Sleep(500 * time.Millisecond)
		faulted := time.Now()
		// timeout 0: the data from the replica is dropped and the
		// connection held open for as long as the toxic stays.
		toxiAdd(t, p1, "blackhole", "timeout", "downstream", map[string]any{"timeout": 0})
		time.Sleep(3 * time.Second)
		samples := stop()
		out := !proxiedStats(t, db, p1).Up
		toxiFailures(t, "8 readers across a black hole on replica1", samples, begin)

		var during, settled []toxiSample
		for _, s := range samples {
			if !s.start.Before(faulted) {
				during = append(during, s)
			}
			if !s.start.Before(faulted.Add(time.Second)) {
				settled = append(settled, s)
			}
		}
		ld, ls := toxiLatencies(during), toxiLatencies(settled)
		t.Logf("measured: from the toxic on: %d reads, p50 %s p99 %s max %s; from 1s after it: %d reads, p50 %s p99 %s max %s; by port %v",
			len(ld), toxiMS(toxiQuantile(ld, .5)), toxiMS(toxiQuantile(ld, .99)), toxiMS(toxiQuantile(ld, 1)),
			len(ls), toxiMS(toxiQuantile(ls, .5)), toxiMS(toxiQuantile(ls, .99)), toxiMS(toxiQuantile(ls, 1)), toxiByPort(during))
		s := proxiedStats(t, db, p1)
		t.Logf("replica1 stats: Up=%v Ejections=%d Errors=%d Hedges=%d Retries=%d LastError=%q", s.Up, s.Ejections, s.Errors, s.Hedges, s.Retries, s.LastError)
		t.Logf("stats:\n%s", statsDump(db))
		if len(ls) == 0 {
			t.Fatalf("no read started 1s after the toxic")
		}
		if m := toxiQuantile(ls, 1); m > time.Second {
			t.Errorf("a read started ≥1s after the black hole took %v, want ≤ 1s", m)
		}
		if !out {
			t.Errorf("black-holed replica1 still in rotation after 3s")
		}

		toxiRemove(t, p1, "blackhole")
		took, ok := waitFor(rejoinCeiling, func() bool {
			s := proxiedStats(t, db, p1)
			return s.Up && s.Eligible
		})
		if !ok {
			t.Fatalf("replica1 not back %v after the toxic was removed:\n%s", rejoinCeiling, statsDump(db))
		}
		t.Logf("measured: replica1 Up and Eligible again %v after the toxic was removed", took.Round(time.Millisecond))
	})
}
