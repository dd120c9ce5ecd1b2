package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest/patroni"
)

// BenchmarkFleetProbeLoad measures what a fleet of N processes, each with
// its own DB (simulated by N DBs in this process), puts on every server
// of a real Patroni cluster (etcd and three members on loopback), in three
// configurations:
//   - probes: today's per-process probing, the default 1s health interval,
//     no discovery: every DB asks every server for its role, liveness and
//     position once a second;
//   - patroni: Patroni discovery every 1s (role and liveness from Patroni's
//     GET /cluster) with the health interval raised to 10s: positions
//     still come from the probes and from the position reads sessions
//     make on demand;
//   - p+wait: the same with WithSessionWait(50ms), measured under sessions
//     only (idle it is the patroni configuration): a session read waits
//     for a replica to catch up, polling the replicas' positions.
//
// Each is measured idle and under light session traffic: per DB one
// client that, every 500ms, writes a row with a new Session and reads it
// back 3 times, 50ms apart (the read must find the row: read-your-writes).
// On every server it counts, from pg_stat_statements (delta over the
// window, database app), the health probes, the position reads and the
// workload's statements; it counts the Patroni REST requests the DBs make
// (a counting http.RoundTripper in NewPatroni's client), and from the DBs'
// Stats the share of session reads served by replicas and the position
// reads. The idle window is 3s with probes, 10s (one health interval)
// with Patroni; the session window is 4s.
//
// It then opens DBs on the leader alone, as the README's Patroni example
// does, and measures how long discovery takes to bring the replicas into
// rotation with a 10s health interval, and with WithHysteresis(0, 1).
//
//	cd integration && go test -run '^$' -bench FleetProbeLoad -benchtime=1x -timeout 10m ./...
func BenchmarkFleetProbeLoad(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c, err := patroni.Start(ctx, patroni.Options{Parameters: map[string]string{
		"shared_preload_libraries": "pg_stat_statements",
		"max_connections":          "300", // 50 DBs open up to 3 connections per server
	}})
	if err != nil {
		b.Fatalf("starting the Patroni cluster: %v", err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			b.Errorf("closing the Patroni cluster: %v", err)
		}
	}()
	l := fleetLoadSetup(b, ctx, c)
	defer l.close()

	var table strings.Builder
	fmt.Fprintf(&table, "%-8s %4s %-8s %9s %7s %9s %8s %8s %9s %9s %9s %9s %8s %6s\n",
		"CONFIG", "DBS", "LOAD", "PROBES/S", "REST/S", "BUSIEST/S", "REST-P50", "REST-MAX", "REST-FAIL", "POS/S-LDR", "POS/S-REP", "APP/S-LDR", "ON-REPL", "STALE")
	for _, cfg := range []fleetLoadConfig{
		{name: "probes", interval: time.Second, idle: 3 * time.Second},
		{name: "patroni", interval: 10 * time.Second, discovery: time.Second, idle: 10 * time.Second},
		{name: "p+wait", interval: 10 * time.Second, discovery: time.Second, sessionWait: 50 * time.Millisecond},
	} {
		for _, n := range []int{1, 10, 50} {
			b.Run(fmt.Sprintf("%s/dbs=%d", cfg.name, n), func(b *testing.B) {
				idle, light := l.run(b, cfg, n)
				for _, w := range []struct {
					load string
					f    fleetLoadFigures
				}{{"idle", idle}, {"sessions", light}} {
					if w.load == "idle" && cfg.idle == 0 {
						continue
					}
					b.ReportMetric(w.f.probes, w.load+"-probes/s/server")
					b.ReportMetric(w.f.rest, w.load+"-rest/s")
					b.ReportMetric(float64(w.f.restMax)/1e6, w.load+"-rest-max-ms")
					b.ReportMetric(float64(w.f.restFailed), w.load+"-rest-failed")
					b.ReportMetric(w.f.posLeader, w.load+"-leader-positions/s")
					b.ReportMetric(w.f.posReplica, w.load+"-replica-positions/s")
					share, stale := "-", "-"
					if w.load == "sessions" {
						share, stale = fmt.Sprintf("%.1f%%", w.f.onReplicas), fmt.Sprint(w.f.stale)
					}
					fmt.Fprintf(&table, "%-8s %4d %-8s %9.1f %7.1f %9.1f %8v %8v %9d %9.1f %9.1f %9.1f %8s %6s\n",
						cfg.name, n, w.load, w.f.probes, w.f.rest, w.f.restBusiest, w.f.restP50.Round(100*time.Microsecond),
						w.f.restMax.Round(time.Millisecond), w.f.restFailed, w.f.posLeader, w.f.posReplica, w.f.appLeader, share, stale)
				}
				b.ReportMetric(light.onReplicas, "session-reads-on-replicas-%")
				b.ReportMetric(light.clientPositions, "client-position-reads/s")
				if light.stale > 0 || light.failed > 0 {
					b.Errorf("%d session reads missed their own write, %d calls failed", light.stale, light.failed)
				}
			})
		}
	}
	fmt.Printf("fleet probe load (per server: mean of the 3 members; positions: leader / mean of the replicas):\n%s", table.String())
	fmt.Printf("%s", l.details.String())

	b.Run("join", func(b *testing.B) {
		joins := l.joinTimes(b)
		for _, j := range joins {
			b.ReportMetric(j.took.Seconds(), j.name+"-s")
		}
	})
}

type fleetLoadConfig struct {
	name        string
	interval    time.Duration // WithHealthCheckInterval
	discovery   time.Duration // Discovery.Interval; 0: no discovery
	sessionWait time.Duration // WithSessionWait
	idle        time.Duration // the idle window; 0: not measured (as without a wait)
}

// fleetLoadFigures are one window's rates.
type fleetLoadFigures struct {
	probes          float64       // health probes per second per server (mean of the members)
	posLeader       float64       // position reads per second on the leader
	posReplica      float64       // position reads per second per replica (mean)
	appLeader       float64       // the workload's statements per second on the leader
	appReplica      float64       // the workload's statements per second per replica (mean)
	rest            float64       // Patroni REST requests per second, all endpoints
	restBusiest     float64       // the same, on the endpoint asked most
	restP50         time.Duration // median time of one REST request (to the answer's header)
	restMax         time.Duration // the longest
	restFailed      int           // REST requests that failed
	onReplicas      float64       // session reads served by replicas, %
	clientPositions float64       // Stats().PositionReads per second, all DBs
	stale, failed   int           // session reads that missed their write; failed calls

	discoveryFailures  int    // Stats().DiscoveryFailures over the window, all DBs
	lastDiscoveryError string // one DB's last discovery error
}

// fleetLoad is the cluster under measurement.
type fleetLoad struct {
	c       *patroni.Cluster
	leader  int
	dsns    []string  // the leader's first
	admin   []*sql.DB // per member: superuser on database postgres
	rest    *fleetRESTCounter
	details strings.Builder
}

func fleetLoadSetup(b *testing.B, ctx context.Context, c *patroni.Cluster) *fleetLoad {
	leader, err := c.Leader(ctx)
	if err != nil {
		b.Fatal(err)
	}
	l := &fleetLoad{c: c, leader: leader, rest: &fleetRESTCounter{}}
	l.dsns = append(l.dsns, c.DSN(leader))
	for i := range c.Members() {
		if i != leader {
			l.dsns = append(l.dsns, c.DSN(i))
		}
		h, err := sql.Open("pgx", strings.Replace(c.AdminDSN(i), "/"+patroni.AppDatabase+"?", "/postgres?", 1))
		if err != nil {
			b.Fatal(err)
		}
		l.admin = append(l.admin, h)
	}
	if _, err := l.admin[leader].ExecContext(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		l.close()
		b.Fatalf("pg_stat_statements: %v", err)
	}
	app, err := sql.Open("pgx", l.dsns[0])
	if err != nil {
		b.Fatal(err)
	}
	defer app.Close()
	if _, err := app.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS fleet_load (id bigint PRIMARY KEY, v text NOT NULL)"); err != nil {
		l.close()
		b.Fatal(err)
	}
	if _, ok := waitFor(30*time.Second, func() bool {
		for i := range l.admin {
			if _, err := l.counts(ctx, i); err != nil {
				return false
			}
		}
		return true
	}); !ok {
		l.close()
		b.Fatal("pg_stat_statements not readable on every member")
	}
	return l
}

// template is the application DSN with {host}:{port} where a member's
// address goes.
func (l *fleetLoad) template() string {
	m := l.c.Members()[l.leader]
	return strings.Replace(l.dsns[0], net.JoinHostPort(m.Host, strconv.Itoa(m.Port)), "{host}:{port}", 1)
}

func (l *fleetLoad) close() {
	for _, h := range l.admin {
		h.Close()
	}
}

// fleetCounters are a server's statement counts in database app.
type fleetCounters struct{ probes, positions, app int64 }

// counts reads member i's pg_stat_statements: health probes (the probe's
// one query), position reads (the primary's and a replica's position
// queries), and the rest (the workload).
func (l *fleetLoad) counts(ctx context.Context, i int) (fleetCounters, error) {
	const q = `SELECT
	COALESCE(SUM(calls) FILTER (WHERE query LIKE '%pg_last_xact_replay_timestamp%'), 0)::int8,
	COALESCE(SUM(calls) FILTER (WHERE query NOT LIKE '%pg_last_xact_replay_timestamp%'
		AND (query LIKE '%pg_current_wal_insert_lsn%' OR query LIKE '%pg_last_wal_replay_lsn()::text%')), 0)::int8,
	COALESCE(SUM(calls) FILTER (WHERE query NOT LIKE '%pg_last_xact_replay_timestamp%'
		AND query NOT LIKE '%pg_current_wal_insert_lsn%' AND query NOT LIKE '%pg_last_wal_replay_lsn()::text%'), 0)::int8
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '` + patroni.AppDatabase + `'`
	var n fleetCounters
	err := l.admin[i].QueryRowContext(ctx, q).Scan(&n.probes, &n.positions, &n.app)
	return n, err
}

// run opens n DBs in configuration cfg, lets them settle, and measures an
// idle window and a window of light session traffic.
func (l *fleetLoad) run(b *testing.B, cfg fleetLoadConfig, n int) (idle, light fleetLoadFigures) {
	begin := l.rest.mark()
	var dbs []*rwsplit.DB
	var transports []*http.Transport
	defer func() {
		for _, db := range dbs {
			if err := db.Close(); err != nil {
				b.Errorf("Close: %v", err)
			}
		}
		for _, t := range transports {
			t.CloseIdleConnections()
		}
	}()
	for range n {
		opts := []rwsplit.Option{rwsplit.WithHealthCheckInterval(cfg.interval), rwsplit.WithSessionWait(cfg.sessionWait)}
		if cfg.discovery > 0 {
			t := &http.Transport{Proxy: nil}
			transports = append(transports, t)
			src, err := rwsplit.NewPatroni(l.template(),
				&http.Client{Timeout: 2 * time.Second, Transport: &fleetCountingTransport{base: t, c: l.rest}}, l.c.Endpoints()...)
			if err != nil {
				b.Fatal(err)
			}
			opts = append(opts, rwsplit.WithDiscovery(rwsplit.Discovery{Source: src, Interval: cfg.discovery}))
		}
		db, err := rwsplit.Open("pgx", l.dsns[0], l.dsns[1:], opts...)
		if err != nil {
			b.Fatal(err)
		}
		dbs = append(dbs, db)
	}
	time.Sleep(time.Second) // connections opened, the first rounds and listings done
	if cfg.idle > 0 {
		idle = l.window(b, dbs, cfg.idle)
	}
	w := startFleetSessions(dbs)
	time.Sleep(time.Second)
	light = l.window(b, dbs, 4*time.Second)
	light.stale, light.failed = w.stop()
	fmt.Fprintf(&l.details, "%s/dbs=%d: REST requests %v; discovery failures idle %d, sessions %d (last: %q); sessions: workload statements/s leader %.1f, each replica %.1f; position reads/s counted by the DBs %.1f\n",
		cfg.name, n, l.rest.since(begin), idle.discoveryFailures, light.discoveryFailures, light.lastDiscoveryError, light.appLeader, light.appReplica, light.clientPositions)
	return idle, light
}

// window measures the rates over d.
func (l *fleetLoad) window(b *testing.B, dbs []*rwsplit.DB, d time.Duration) fleetLoadFigures {
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	snap := func() ([]fleetCounters, int, rwsplit.Stats) {
		var servers []fleetCounters
		for i := range l.admin {
			n, err := l.counts(ctx, i)
			if err != nil {
				b.Fatalf("reading pg_stat_statements on member %d: %v", i, err)
			}
			servers = append(servers, n)
		}
		var sum rwsplit.Stats
		for _, db := range dbs {
			s := db.Stats()
			sum.SessionReplicaReads += s.SessionReplicaReads
			sum.SessionPrimaryReads += s.SessionPrimaryReads
			sum.PositionReads += s.PositionReads
			sum.DiscoveryFailures += s.DiscoveryFailures
			if s.LastDiscoveryError != "" {
				sum.LastDiscoveryError = s.LastDiscoveryError
			}
		}
		return servers, l.rest.mark(), sum
	}
	s0, r0, st0 := snap()
	start := time.Now()
	time.Sleep(d)
	s1, _, st1 := snap()
	secs := time.Since(start).Seconds()
	var f fleetLoadFigures
	replicas := float64(len(s0) - 1)
	for i := range s0 {
		f.probes += float64(s1[i].probes-s0[i].probes) / secs / float64(len(s0))
		pos, app := float64(s1[i].positions-s0[i].positions)/secs, float64(s1[i].app-s0[i].app)/secs
		if i == l.leader {
			f.posLeader, f.appLeader = pos, app
		} else {
			f.posReplica += pos / replicas
			f.appReplica += app / replicas
		}
	}
	reqs := l.rest.since(r0)
	f.rest, f.restBusiest = float64(len(reqs))/secs, float64(reqs.busiest())/secs
	f.restP50, f.restMax, f.restFailed = reqs.quantile(0.5), reqs.quantile(1), reqs.failed()
	onRep, onPrim := st1.SessionReplicaReads-st0.SessionReplicaReads, st1.SessionPrimaryReads-st0.SessionPrimaryReads
	if onRep+onPrim > 0 {
		f.onReplicas = 100 * float64(onRep) / float64(onRep+onPrim)
	}
	f.clientPositions = float64(st1.PositionReads-st0.PositionReads) / secs
	f.discoveryFailures, f.lastDiscoveryError = int(st1.DiscoveryFailures-st0.DiscoveryFailures), st1.LastDiscoveryError
	return f
}

// joinTime is how long discovery took to bring the replicas into rotation.
type joinTime struct {
	name string
	took time.Duration
}

// joinTimes opens DBs on the leader alone with Patroni discovery every 1s
// and measures how long each takes until both replicas are eligible.
func (l *fleetLoad) joinTimes(b *testing.B) []joinTime {
	cases := []struct {
		name string
		opts []rwsplit.Option
	}{
		{"interval-1s", []rwsplit.Option{rwsplit.WithHealthCheckInterval(time.Second)}},
		{"interval-10s", []rwsplit.Option{rwsplit.WithHealthCheckInterval(10 * time.Second)}},
		{"interval-10s-reinstate-1", []rwsplit.Option{rwsplit.WithHealthCheckInterval(10 * time.Second), rwsplit.WithHysteresis(0, 1)}},
	}
	out := make([]joinTime, len(cases))
	var wg sync.WaitGroup
	t := &http.Transport{Proxy: nil}
	defer t.CloseIdleConnections()
	for i, cs := range cases {
		src, err := rwsplit.NewPatroni(l.template(), &http.Client{Timeout: 2 * time.Second, Transport: t}, l.c.Endpoints()...)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		db, err := rwsplit.Open("pgx", l.dsns[0], nil, append(cs.opts, rwsplit.WithDiscovery(rwsplit.Discovery{Source: src, Interval: time.Second}))...)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer db.Close()
			took, ok := waitFor(30*time.Second, func() bool { return db.Stats().Eligible == 2 })
			if !ok {
				b.Errorf("%s: replicas not eligible after %v:\n%s", cs.name, took, db.Stats())
			}
			out[i] = joinTime{cs.name, time.Since(start)}
		})
	}
	wg.Wait()
	for _, j := range out {
		fmt.Printf("join: %s: both replicas eligible %v after Open\n", j.name, j.took.Round(10*time.Millisecond))
	}
	return out
}

// ---- the session workload ----

var fleetLoadIDs atomic.Int64

type fleetSessions struct {
	done          chan struct{}
	wg            sync.WaitGroup
	stale, failed atomic.Int64
}

// startFleetSessions starts one client per DB: every 500ms a new session
// writes a row and reads it back 3 times, 50ms apart.
func startFleetSessions(dbs []*rwsplit.DB) *fleetSessions {
	w := &fleetSessions{done: make(chan struct{})}
	for i, db := range dbs {
		w.wg.Go(func() {
			// Spread the clients over the period.
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			select {
			case <-w.done:
				return
			case <-time.After(time.Duration(i) * 500 * time.Millisecond / time.Duration(len(dbs))):
			}
			for {
				w.cycle(db)
				select {
				case <-w.done:
					return
				case <-t.C:
				}
			}
		})
	}
	return w
}

func (w *fleetSessions) cycle(db *rwsplit.DB) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = rwsplit.WithSession(ctx, rwsplit.NewSession())
	id := fleetLoadIDs.Add(1)
	if _, err := db.ExecContext(ctx, "INSERT INTO fleet_load (id, v) VALUES ($1, $2)", id, "v"); err != nil {
		w.failed.Add(1)
		return
	}
	for k := range 3 {
		if k > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		var v string
		err := db.QueryRowContext(ctx, "SELECT v FROM fleet_load WHERE id = $1", id).Scan(&v)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			w.stale.Add(1)
		case err != nil:
			w.failed.Add(1)
		}
	}
}

func (w *fleetSessions) stop() (stale, failed int) {
	close(w.done)
	w.wg.Wait()
	return int(w.stale.Load()), int(w.failed.Load())
}

// ---- counting Patroni REST requests ----

// fleetRESTCounter records every request: its endpoint (host:port), the
// time to its answer's header, and what failed (an error, a status other
// than 200), if anything.
type fleetRESTCounter struct {
	mu   sync.Mutex // guards reqs
	reqs []fleetRequest
}

type fleetRequest struct {
	host    string
	took    time.Duration
	failure string
}

func (c *fleetRESTCounter) add(r fleetRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, r)
}

// mark returns a mark to pass to since.
func (c *fleetRESTCounter) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reqs)
}

// since returns the requests recorded after mark.
func (c *fleetRESTCounter) since(mark int) fleetRESTRequests {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(fleetRESTRequests(nil), c.reqs[mark:]...)
}

type fleetRESTRequests []fleetRequest

// busiest returns the number of requests to the endpoint asked most.
func (rs fleetRESTRequests) busiest() int {
	by := map[string]int{}
	most := 0
	for _, r := range rs {
		by[r.host]++
		most = max(most, by[r.host])
	}
	return most
}

// quantile returns the q-quantile of the requests' times.
func (rs fleetRESTRequests) quantile(q float64) time.Duration {
	if len(rs) == 0 {
		return 0
	}
	ts := make([]time.Duration, len(rs))
	for i, r := range rs {
		ts[i] = r.took
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts[min(len(ts)-1, int(q*float64(len(ts))))]
}

func (rs fleetRESTRequests) failed() int {
	n := 0
	for _, r := range rs {
		if r.failure != "" {
			n++
		}
	}
	return n
}

// String sums the requests up per endpoint and per failure.
func (rs fleetRESTRequests) String() string {
	if len(rs) == 0 {
		return "none"
	}
	count := func(key func(fleetRequest) string) string {
		by := map[string]int{}
		for _, r := range rs {
			if k := key(r); k != "" {
				by[k]++
			}
		}
		var parts []string
		for k, n := range by {
			parts = append(parts, fmt.Sprintf("%s: %d", k, n))
		}
		sort.Strings(parts)
		if len(parts) == 0 {
			return "none"
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprintf("%d (%s; failed: %s)", len(rs), count(func(r fleetRequest) string { return r.host }),
		count(func(r fleetRequest) string { return r.failure }))
}

// fleetCountingTransport records the requests it carries.
type fleetCountingTransport struct {
	base http.RoundTripper
	c    *fleetRESTCounter
}

func (t *fleetCountingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	r := fleetRequest{host: req.URL.Host, took: time.Since(start)}
	switch {
	case err != nil:
		r.failure = err.Error()
	case resp.StatusCode != http.StatusOK:
		r.failure = resp.Status
	}
	t.c.add(r)
	return resp, err
}
