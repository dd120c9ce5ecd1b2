package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// DNS discovery against a real DNS server: a tiny authoritative server on
// 127.0.0.1 (UDP), in the test process, whose answers the test changes
// while readers read. Every local server listens on 127.0.0.1, so SRV
// records tell the replicas apart by port; the A/AAAA case names one
// replica by its port. Which server served a read is asked of the server
// (inet_server_port()).

// Timings of the DNS tests: discovery and probes every 200ms, a short
// slow start. The ceilings are loose (two cores, -race).
const (
	fleetInterval  = 200 * time.Millisecond
	fleetSlowStart = 500 * time.Millisecond
	fleetJoinLimit = 10 * time.Second // a listed node → reads served by it
	fleetLeaveCeil = 2 * time.Second  // records changed → the last read on a node no longer listed
)

const fleetPortQuery = "SELECT inet_server_port()"

// TestFleetDNS starts a PostgreSQL primary with three replicas and runs the
// DNS cases on it, each with a DB of its own.
func TestFleetDNS(t *testing.T) {
	c := startOwnCluster(t, rwsplittest.Postgres, rwsplittest.LocalOptions{Replicas: 3})
	dns := startFleetDNS(t)
	t.Run("SRVRecordsChangeUnderLoad", func(t *testing.T) { fleetDNSSRV(t, c, dns) })
	t.Run("AddressRecords", func(t *testing.T) { fleetDNSAddresses(t, c, dns) })
}

// fleetDNSSRV: an SRV name lists replicas 1 and 2, then 2 and 3, then does
// not resolve, then resolves to nothing, while 4 readers read. The reads
// follow the records (the server's word), none fails, and a listing that
// fails leaves the routing as it was and is counted. Round robin, so that
// "spread" means about half each (the default policy favours the faster
// replica).
func fleetDNSSRV(t *testing.T, c *rwsplittest.LocalCluster, dns *fleetDNS) {
	const name = "_postgresql._tcp.replicas.fleet.test."
	r1, r2, r3 := c.Replicas()[0], c.Replicas()[1], c.Replicas()[2]
	srv := func(ns ...*rwsplittest.LocalNode) fleetRecords {
		var rec fleetRecords
		for _, n := range ns {
			rec.srv = append(rec.srv, net.SRV{Target: "localhost.", Port: uint16(n.Port()), Priority: 10, Weight: 10})
		}
		return rec
	}
	dns.set(name, srv(r1, r2))
	source, err := rwsplit.NewDNS(name, 0, fleetTemplate(c), dns.resolver())
	require.NoError(t, err)
	db := openDNSFleet(t, c, source)

	reads := startFleetReaders(db, 4)
	defer reads.stop()

	// Replicas 1 and 2 listed: both serve reads, replica 3 none.
	start := time.Now()
	for _, n := range []*rwsplittest.LocalNode{r1, r2} {
		_, ok := waitFor(fleetJoinLimit, func() bool { return reads.servedSince(n.Port(), start) })
		require.True(t, ok, "%s listed but served no read in %v:\n%s", n.Name(), fleetJoinLimit, db.Stats())
		t.Logf("measured: %s listed → first read served by it after %v", n.Name(), time.Since(start).Round(time.Millisecond))
	}
	time.Sleep(fleetSlowStart) // the ramp of the later one
	w := reads.window(time.Second)
	t.Logf("listing 1 and 2, 1 s: %v", w)
	assert.Greater(t, w[r1.Port()], w.total()/5, "replica 1's share, listed with replica 2")
	assert.Greater(t, w[r2.Port()], w.total()/5, "replica 2's share, listed with replica 1")
	assert.Zero(t, w[r3.Port()], "reads on replica 3, not listed")
	assert.Zero(t, w[c.Primary().Port()], "reads on the primary with two replicas listed")
	// DNS lists replicas only; the primary, not listed, stays. The core
	// counts that as a discovery failure at every listing (reported, not
	// asserted: the cases below tell a DNS failure by Listings standing
	// still and by the error's text).
	st := db.Stats()
	t.Logf("while the name resolved: %d listings, %d discovery failures, last error %q", st.Listings, st.DiscoveryFailures, st.LastDiscoveryError)

	// The records change to replicas 2 and 3: replica 3 takes reads,
	// replica 1 gets none about one interval later.
	changed := time.Now()
	dns.set(name, srv(r2, r3))
	took, ok := waitFor(fleetJoinLimit, func() bool { return reads.servedSince(r3.Port(), changed) })
	require.True(t, ok, "%s listed but served no read in %v:\n%s", r3.Name(), fleetJoinLimit, db.Stats())
	_, ok = waitFor(fleetJoinLimit, func() bool { return !fleetHasNode(db, "localhost:"+fmt.Sprint(r1.Port())) })
	require.True(t, ok, "%s still in the node set %v after it was no longer listed:\n%s", r1.Name(), fleetJoinLimit, db.Stats())
	time.Sleep(fleetSlowStart)
	w = reads.window(time.Second)
	last := reads.lastOn(r1.Port()).Sub(changed)
	t.Logf("measured: records changed → first read on %s after %v, last read on %s after %v (interval %v)",
		r3.Name(), took.Round(time.Millisecond), r1.Name(), last.Round(time.Millisecond), fleetInterval)
	t.Logf("listing 2 and 3, 1 s: %v", w)
	assert.Less(t, last, fleetLeaveCeil, "records changed → last read on the replica no longer listed")
	assert.Zero(t, w[r1.Port()], "reads on replica 1, no longer listed")
	assert.Greater(t, w[r2.Port()], w.total()/5, "replica 2's share, listed with replica 3")
	assert.Greater(t, w[r3.Port()], w.total()/5, "replica 3's share, listed with replica 2")

	// The name stops resolving (NXDOMAIN), then resolves to no record: the
	// node set and the routing stay as they are, the failures are counted.
	for _, tc := range []struct {
		what string
		rec  fleetRecords
	}{
		{"NXDOMAIN", fleetRecords{nxdomain: true}},
		{"an empty answer", fleetRecords{}},
	} {
		before := db.Stats()
		dns.set(name, tc.rec)
		time.Sleep(5 * fleetInterval)
		w = reads.window(time.Second)
		after := db.Stats()
		t.Logf("%s, 1 s: %v; listings %d → %d, discovery failures %d → %d, last error %q", tc.what, w,
			before.Listings, after.Listings, before.DiscoveryFailures, after.DiscoveryFailures, after.LastDiscoveryError)
		assert.LessOrEqual(t, after.Listings, before.Listings+1, "%s: listings applied (one may have been on its way)", tc.what)
		assert.GreaterOrEqual(t, after.DiscoveryFailures, before.DiscoveryFailures+5, "%s: discovery failures counted", tc.what)
		assert.Contains(t, after.LastDiscoveryError, "no such host", "%s: the last discovery error", tc.what)
		assert.Equal(t, fleetNodeNames(before), fleetNodeNames(after), "%s: the node set", tc.what)
		assert.Zero(t, w[r1.Port()], "%s: reads on replica 1", tc.what)
		assert.Greater(t, w[r2.Port()], w.total()/5, "%s: replica 2's share", tc.what)
		assert.Greater(t, w[r3.Port()], w.total()/5, "%s: replica 3's share", tc.what)
		assert.Zero(t, w[c.Primary().Port()], "%s: reads on the primary", tc.what)
	}

	res := reads.stop()
	t.Logf("readers: %d reads, %d failed; DNS server answered %d queries", res.reads, len(res.failures), dns.queries.Load())
	assert.Empty(t, res.failures, "failed reads")
	st = db.Stats()
	for _, secret := range []string{rwsplittest.AppPassword, "postgres://"} {
		assert.NotContains(t, st.LastDiscoveryError, secret)
	}
}

// fleetDNSAddresses: a name with one A record (127.0.0.1) and the port of
// replica 3 makes replica 3 join; its AAAA query is answered with no
// record.
func fleetDNSAddresses(t *testing.T, c *rwsplittest.LocalCluster, dns *fleetDNS) {
	const name = "one.replicas.fleet.test."
	r3 := c.Replicas()[2]
	dns.set(name, fleetRecords{a: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	source, err := rwsplit.NewDNS(name, r3.Port(), fleetTemplate(c), dns.resolver())
	require.NoError(t, err)
	db := openDNSFleet(t, c, source)

	start := time.Now()
	reads := startFleetReaders(db, 2)
	defer reads.stop()
	_, ok := waitFor(fleetJoinLimit, func() bool { return reads.servedSince(r3.Port(), start) })
	require.True(t, ok, "%s listed by its A record but served no read in %v:\n%s", r3.Name(), fleetJoinLimit, db.Stats())
	t.Logf("measured: A record → first read served by %s after %v", r3.Name(), time.Since(start).Round(time.Millisecond))
	time.Sleep(fleetSlowStart)
	w := reads.window(500 * time.Millisecond)
	t.Logf("one A record, 500 ms: %v", w)
	assert.Equal(t, w.total(), w[r3.Port()], "every read on replica 3, the only one listed")
	assert.Equal(t, []string{c.Primary().Addr(), r3.Addr()}, fleetNodeNames(db.Stats()), "the node set")
	res := reads.stop()
	assert.Empty(t, res.failures, "failed reads")
}

// TestFleetDNSBadInput checks NewDNS's validation: a template without
// {host}, an empty name, a port out of range; no error repeats the
// template (it holds the password).
func TestFleetDNSBadInput(t *testing.T) {
	const secret = "s3cret-pw"
	for _, tc := range []struct {
		what, name, dsn string
		port            int
	}{
		{"no {host}", "replicas.fleet.test", "postgres://app:" + secret + "@127.0.0.1:{port}/app", 0},
		{"no {host}, with a port", "replicas.fleet.test", "postgres://app:" + secret + "@db:5432/app", 5432},
		{"empty name", "", "postgres://app:" + secret + "@{host}:{port}/app", 5432},
		{"port out of range", "replicas.fleet.test", "postgres://app:" + secret + "@{host}:{port}/app", 65536},
		{"negative port", "replicas.fleet.test", "postgres://app:" + secret + "@{host}:{port}/app", -1},
	} {
		d, err := rwsplit.NewDNS(tc.name, tc.port, tc.dsn, nil)
		if assert.Error(t, err, tc.what) {
			assert.NotContains(t, err.Error(), secret, tc.what)
		}
		assert.Nil(t, d, tc.what)
	}
	d, err := rwsplit.NewDNS("replicas.fleet.test", 5432, "host={host} port={port} password="+secret, nil)
	assert.NoError(t, err, "a key=value template")
	assert.NotNil(t, d)
}

// fleetTemplate is the application DSN of c's nodes with {host}:{port}
// where the node's address goes.
func fleetTemplate(c *rwsplittest.LocalCluster) string {
	p := c.Primary()
	return strings.Replace(p.DSN(), p.Addr(), "{host}:{port}", 1)
}

func fleetHasNode(db *rwsplit.DB, name string) bool {
	for _, n := range db.Stats().Nodes {
		if n.Name == name {
			return true
		}
	}
	return false
}

func fleetNodeNames(s rwsplit.Stats) []string {
	var names []string
	for _, n := range s.Nodes {
		names = append(names, n.Name)
	}
	return names
}

// ---- readers that note when each server served them ----

// fleetReaders read the serving server's port in a loop until stopped,
// each read under its own deadline (a read never fails because the test
// stops), and note per port how many reads it served and when it served
// the first and last one.
type fleetReaders struct {
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	mu       sync.Mutex // guards the fields below
	reads    int
	failures []string
	count    fleetCounts       // reads per port since the last window
	first    map[int]time.Time // per port: first read served
	last     map[int]time.Time // per port: last read served
}

type fleetResult struct {
	reads    int
	failures []string
}

// fleetCounts counts reads by the port of the server that served them.
type fleetCounts map[int]int

func (c fleetCounts) total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

func (c fleetCounts) String() string {
	var ports []int
	for p := range c {
		ports = append(ports, p)
	}
	sort.Ints(ports)
	var b strings.Builder
	fmt.Fprintf(&b, "%d reads:", c.total())
	for _, p := range ports {
		fmt.Fprintf(&b, " port %d %d", p, c[p])
	}
	return b.String()
}

func startFleetReaders(db *rwsplit.DB, workers int) *fleetReaders {
	r := &fleetReaders{done: make(chan struct{}), count: fleetCounts{}, first: map[int]time.Time{}, last: map[int]time.Time{}}
	begin := time.Now()
	for range workers {
		r.wg.Go(func() {
			for {
				select {
				case <-r.done:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), readDeadline)
				var port int
				err := db.QueryRowContext(ctx, fleetPortQuery).Scan(&port)
				cancel()
				now := time.Now()
				r.mu.Lock()
				r.reads++
				if err != nil {
					r.failures = append(r.failures, fmt.Sprintf("t+%v: %v", now.Sub(begin).Round(time.Millisecond), err))
				} else {
					r.count[port]++
					if r.first[port].IsZero() {
						r.first[port] = now
					}
					r.last[port] = now
				}
				r.mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		})
	}
	return r
}

// servedSince reports whether the server on port served a read after t.
func (r *fleetReaders) servedSince(port int, t time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[port].After(t)
}

// lastOn returns when the server on port last served a read.
func (r *fleetReaders) lastOn(port int) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[port]
}

// window returns the reads per port served over the next d.
func (r *fleetReaders) window(d time.Duration) fleetCounts {
	r.mu.Lock()
	r.count = fleetCounts{}
	r.mu.Unlock()
	time.Sleep(d)
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.count
	r.count = fleetCounts{}
	return w
}

// stop stops the readers and returns what they saw; it is idempotent.
func (r *fleetReaders) stop() fleetResult {
	r.once.Do(func() { close(r.done) })
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return fleetResult{reads: r.reads, failures: append([]string(nil), r.failures...)}
}

// ---- the DNS server ----

// fleetDNS is an authoritative DNS server on 127.0.0.1 (UDP) for the
// names the test sets; any other name does not exist (NXDOMAIN).
type fleetDNS struct {
	conn    net.PacketConn
	done    chan struct{}
	queries atomic.Int64

	mu   sync.Mutex              // guards zone
	zone map[string]fleetRecords // by lower-case fully qualified name
}

// fleetRecords are a name's records: its A and AAAA addresses and its SRV
// records; with nxdomain set, the name does not exist.
type fleetRecords struct {
	a        []netip.Addr
	srv      []net.SRV
	nxdomain bool
}

// startFleetDNS starts the server; it stops when the test ends.
func startFleetDNS(t *testing.T) *fleetDNS {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &fleetDNS{conn: conn, done: make(chan struct{}), zone: map[string]fleetRecords{}}
	go s.serve()
	t.Cleanup(func() {
		conn.Close()
		<-s.done
	})
	return s
}

// set replaces the records of name (fully qualified, with the final dot).
func (s *fleetDNS) set(name string, rec fleetRecords) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zone[strings.ToLower(name)] = rec
}

// resolver returns a resolver that asks this server alone.
func (s *fleetDNS) resolver() *net.Resolver {
	addr := s.conn.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}
}

func (s *fleetDNS) serve() {
	defer close(s.done)
	buf := make([]byte, 4096)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		if out, err := s.answer(buf[:n]); err == nil {
			s.conn.WriteTo(out, from)
		}
	}
}

// answer builds the answer to one query.
func (s *fleetDNS) answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	s.queries.Add(1)
	s.mu.Lock()
	rec, ok := s.zone[strings.ToLower(q.Name.String())]
	s.mu.Unlock()
	head := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !ok || rec.nxdomain {
		head.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, head)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0}
	var errs []error
	switch q.Type {
	case dnsmessage.TypeA:
		for _, a := range rec.a {
			if a.Is4() {
				errs = append(errs, b.AResource(rh, dnsmessage.AResource{A: a.As4()}))
			}
		}
	case dnsmessage.TypeAAAA:
		for _, a := range rec.a {
			if a.Is6() && !a.Is4In6() {
				errs = append(errs, b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()}))
			}
		}
	case dnsmessage.TypeSRV:
		for _, r := range rec.srv {
			target, err := dnsmessage.NewName(r.Target)
			if err != nil {
				return nil, err
			}
			errs = append(errs, b.SRVResource(rh, dnsmessage.SRVResource{Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: target}))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return b.Finish()
}

// openDNSFleet opens a DB on c's primary whose replicas source lists,
// with the fleet tests' cadence and round robin (so that every listed
// replica takes reads at once).
func openDNSFleet(t *testing.T, c *rwsplittest.LocalCluster, source rwsplit.Discoverer) *rwsplit.DB {
	t.Helper()
	db, err := rwsplit.Open(c.DriverName(), c.Primary().DSN(), nil,
		rwsplit.WithDiscovery(rwsplit.Discovery{Source: source, Interval: fleetInterval}),
		rwsplit.WithHealthCheckInterval(fleetInterval),
		rwsplit.WithSlowStart(fleetSlowStart),
		rwsplit.WithPolicy(rwsplit.RoundRobin()))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) })
	return db
}
