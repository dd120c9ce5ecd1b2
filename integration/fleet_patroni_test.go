package integration

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest/patroni"
)

// Discovery from Patroni, against real Patroni clusters on loopback (etcd,
// Patroni 3.0 and PostgreSQL, from rwsplittest/patroni): one
// cluster per test function, since the tests switch over, kill, add and
// remove members. Every DB is opened on one seed DSN (the leader's) and
// takes the rest of its node set from Patroni's REST API. Which server
// served a call is asked of the server (inet_server_port(),
// pg_stat_activity), never of rwsplit's counters. The tests log their
// figures as "measured: ..."; the ceilings are loose (two cores, -race).

const (
	patroniInterval  = 200 * time.Millisecond // discovery and probes
	patroniSlowStart = 500 * time.Millisecond
	patroniPortQuery = "SELECT inet_server_port()"
	patroniCreate    = "CREATE TABLE IF NOT EXISTS patroni_writes (id bigint PRIMARY KEY)"
	patroniInsert    = "INSERT INTO patroni_writes (id) VALUES ($1) RETURNING inet_server_port()"

	// patroniFollowCeiling bounds the time from the new leader taking a
	// commit to rwsplit's first write on it (the target: 1 s).
	patroniFollowCeiling = time.Second
	// patroniJoinRounds bounds the health rounds from a new member being
	// listed and accepting connections to its first read (the target:
	// two; one more for a late round on a loaded machine).
	patroniJoinRounds = 3.0
	// patroniLeaveCeiling bounds the time from Patroni no longer listing a
	// member to the last call that reaches it (the target: one discovery
	// interval, ±10% jitter; the rest for a slow round).
	patroniLeaveCeiling = patroniInterval*11/10 + 150*time.Millisecond
)

// patroniIDs numbers the rows the tests write, across tests.
var patroniIDs atomic.Int64

// startPatroni starts a Patroni cluster for one test and closes it when the
// test ends (after the DBs opened later, which are closed first).
func startPatroni(t *testing.T, ctx context.Context, opts patroni.Options) *patroni.Cluster {
	t.Helper()
	opts.Logf = t.Logf
	begin := time.Now()
	c, err := patroni.Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	t.Logf("measured: Patroni cluster of %d members ready in %v", len(c.Members()), time.Since(begin).Round(time.Millisecond))
	return c
}

// patroniName is member i's node name as Open and discovery give it.
func patroniName(c *patroni.Cluster, i int) string {
	m := c.Members()[i]
	return net.JoinHostPort(m.Host, strconv.Itoa(m.Port))
}

// patroniTemplate is the application account's DSN template, with extra
// URL parameters.
func patroniTemplate(extra string) string {
	tmpl := "postgres://" + patroni.AppUser + ":" + patroni.AppPassword + "@{host}:{port}/" + patroni.AppDatabase + "?sslmode=disable&connect_timeout=2"
	if extra != "" {
		tmpl += "&" + extra
	}
	return tmpl
}

// patroniClient is the HTTP client of a test's discoverers: a second per
// request. Its idle connections are closed when the test ends, after the
// DBs (opened later, closed first) have stopped asking.
func patroniClient(t *testing.T) *http.Client {
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: time.Second, Transport: tr}
}

func newPatroniSource(t *testing.T, template string, endpoints ...string) *rwsplit.Patroni {
	t.Helper()
	p, err := rwsplit.NewPatroni(template, patroniClient(t), endpoints...)
	require.NoError(t, err)
	return p
}

// patroniDB is a DB that discovers its nodes from Patroni, with what it
// logged and the node events it emitted.
type patroniDB struct {
	*rwsplit.DB
	log    *patroniLog
	events *patroniEvents
}

// openPatroniDB opens a DB on seed that takes its node set from src, with
// discovery and probes every patroniInterval. It is closed when the test
// ends, and must not have logged a password.
func openPatroniDB(t *testing.T, seed string, src rwsplit.Discoverer, opts ...rwsplit.Option) *patroniDB {
	t.Helper()
	d := &patroniDB{log: &patroniLog{}, events: &patroniEvents{}}
	base := []rwsplit.Option{
		rwsplit.WithDiscovery(rwsplit.Discovery{Source: src, Interval: patroniInterval}),
		rwsplit.WithHealthCheckInterval(patroniInterval),
		rwsplit.WithSlowStart(patroniSlowStart),
		rwsplit.WithLogger(slog.New(slog.NewTextHandler(d.log, nil))),
		rwsplit.WithObserver(rwsplit.ObserverFuncs{Event: d.events.add}),
	}
	db, err := rwsplit.Open("pgx", seed, nil, append(base, opts...)...)
	require.NoError(t, err)
	d.DB = db
	t.Cleanup(func() {
		assert.NoError(t, db.Close())
		assert.NotContains(t, d.log.String(), patroni.AppPassword, "the DB logged a password")
	})
	return d
}

// has reports whether the node set has the named node.
func (d *patroniDB) has(name string) bool {
	_, ok := d.node(name)
	return ok
}

func (d *patroniDB) node(name string) (rwsplit.NodeStats, bool) {
	for _, n := range d.Stats().Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return rwsplit.NodeStats{}, false
}

// names returns the node set, sorted.
func (d *patroniDB) names() []string {
	var out []string
	for _, n := range d.Stats().Nodes {
		out = append(out, n.Name)
	}
	sort.Strings(out)
	return out
}

// waitPatroniFleet waits until db's node set is exactly the given members,
// the leader its primary and every other member eligible for reads, and
// returns how long that took.
func waitPatroniFleet(t *testing.T, db *patroniDB, c *patroni.Cluster, leader int, members []int, limit time.Duration) time.Duration {
	t.Helper()
	want := map[string]bool{}
	for _, i := range members {
		want[patroniName(c, i)] = true
	}
	leaderName := patroniName(c, leader)
	took, ok := waitFor(limit, func() bool {
		st := db.Stats()
		if len(st.Nodes) != len(want) {
			return false
		}
		for _, n := range st.Nodes {
			switch {
			case !want[n.Name]:
				return false
			case n.Name == leaderName && (n.Role != rwsplit.RolePrimary || !n.Up):
				return false
			case n.Name != leaderName && !n.Eligible:
				return false
			}
		}
		return true
	})
	require.True(t, ok, "node set not the members %v with %s primary after %v:\n%s", members, leaderName, limit, db.Stats())
	return took
}

// patroniWrite inserts a row through db and returns the port of the server
// that acknowledged it.
func patroniWrite(ctx context.Context, db *rwsplit.DB) (int, int64, error) {
	id := patroniIDs.Add(1)
	var port int
	err := db.QueryRowContext(ctx, patroniInsert, id).Scan(&port)
	return port, id, err
}

func mustPatroniWrite(t *testing.T, ctx context.Context, db *rwsplit.DB) int {
	t.Helper()
	port, _, err := patroniWrite(ctx, db)
	require.NoError(t, err)
	return port
}

// patroniLog is what a DB logged.
type patroniLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *patroniLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *patroniLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// patroniEvents records a DB's node events with their times.
type patroniEvents struct {
	mu   sync.Mutex
	list []patroniEvent
}

type patroniEvent struct {
	at time.Time
	rwsplit.NodeEvent
}

func (e *patroniEvents) add(ev rwsplit.Event) {
	if n, ok := ev.(rwsplit.NodeEvent); ok {
		e.mu.Lock()
		e.list = append(e.list, patroniEvent{time.Now(), n})
		e.mu.Unlock()
	}
}

// first returns when the node first reached state at or after since.
func (e *patroniEvents) first(node string, state rwsplit.NodeState, since time.Time) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.list {
		if ev.Node == node && ev.State == state && !ev.at.Before(since) {
			return ev.at, true
		}
	}
	return time.Time{}, false
}

// patroniLoad reads (and, with a writer, writes) through a DB until
// stopped, recording which server answered each call.
type patroniLoad struct {
	stopc   chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup

	mu        sync.Mutex
	reads     int
	served    map[int]*patroniServed // by server port
	readErrs  []patroniFailure
	acked     []patroniAck
	writeErrs int
}

type patroniServed struct {
	n           int
	first, last time.Time   // when the first and the last read it served returned
	at          []time.Time // when each returned
}

type patroniFailure struct {
	at  time.Time
	err string
}

type patroniAck struct {
	id   int64
	port int
	at   time.Time // when the write returned
}

// startPatroniLoad starts readers goroutines reading the serving port in a
// loop (each read under readDeadline, QueryRow and Query alternately) and,
// if writer, one goroutine inserting rows one after another (each under 1
// s).
func startPatroniLoad(db *rwsplit.DB, readers int, writer bool) *patroniLoad {
	l := &patroniLoad{stopc: make(chan struct{}), served: map[int]*patroniServed{}}
	for w := range readers {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stopc:
					return
				default:
				}
				port, err := readPort(db, patroniPortQuery, (w+i)%2 == 1, readDeadline)
				now := time.Now()
				l.mu.Lock()
				l.reads++
				if err != nil {
					l.readErrs = append(l.readErrs, patroniFailure{now, err.Error()})
				} else {
					s := l.served[port]
					if s == nil {
						s = &patroniServed{first: now}
						l.served[port] = s
					}
					s.n++
					s.last = now
					s.at = append(s.at, now)
				}
				l.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	if writer {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stopc:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				port, id, err := patroniWrite(ctx, db)
				cancel()
				now := time.Now()
				l.mu.Lock()
				if err == nil {
					l.acked = append(l.acked, patroniAck{id, port, now})
				} else {
					l.writeErrs++
				}
				l.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	return l
}

func (l *patroniLoad) stop() {
	l.stopped.Do(func() { close(l.stopc) })
	l.wg.Wait()
}

// servedSince reports whether the server on port answered a read that
// returned after since.
func (l *patroniLoad) servedSince(port int, since time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.served[port]
	return s != nil && s.last.After(since)
}

// firstSince returns when the first read served by the server on port
// after since returned.
func (l *patroniLoad) firstSince(port int, since time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.served[port]; s != nil {
		for _, at := range s.at {
			if at.After(since) {
				return at, true
			}
		}
	}
	return time.Time{}, false
}

// servedBy returns what the server on port served.
func (l *patroniLoad) servedBy(port int) patroniServed {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.served[port]; s != nil {
		return *s
	}
	return patroniServed{}
}

func (l *patroniLoad) counts() map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int]int{}
	for port, s := range l.served {
		out[port] = s.n
	}
	return out
}

// window returns the reads served by port during the next d.
func (l *patroniLoad) window(d time.Duration) map[int]int {
	before := l.counts()
	time.Sleep(d)
	after := l.counts()
	for port, n := range before {
		after[port] -= n
	}
	return after
}

// readStats returns the number of reads made and the failures that
// happened after since.
func (l *patroniLoad) readStats(since time.Time) (reads int, failed []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.readErrs {
		if f.at.After(since) {
			failed = append(failed, fmt.Sprintf("+%v: %s", f.at.Sub(since).Round(time.Millisecond), f.err))
		}
	}
	return l.reads, failed
}

func (l *patroniLoad) acks() []patroniAck {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]patroniAck(nil), l.acked...)
}

// firstAckOn returns when the first write acknowledged by the server on
// port after since returned.
func (l *patroniLoad) firstAckOn(port int, since time.Time) (time.Time, bool) {
	for _, a := range l.acks() {
		if a.port == port && a.at.After(since) {
			return a.at, true
		}
	}
	return time.Time{}, false
}

// pollPatroniWritable commits a transaction that writes (txid_current) on
// dsn every 10ms, straight to the server, and sends the time the first
// commit returned.
func pollPatroniWritable(ctx context.Context, dsn string) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		defer close(ch)
		h, err := sql.Open("pgx", dsn)
		if err != nil {
			return
		}
		defer h.Close()
		h.SetMaxOpenConns(1)
		for ctx.Err() == nil {
			qctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := h.ExecContext(qctx, "SELECT pg_catalog.txid_current()")
			cancel()
			if err == nil {
				ch <- time.Now()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return ch
}

func receive(t *testing.T, ch <-chan time.Time, limit time.Duration, what string) time.Time {
	t.Helper()
	select {
	case at, ok := <-ch:
		require.True(t, ok, "%s: the poller gave up", what)
		return at
	case <-time.After(limit):
		t.Fatalf("%s: not within %v", what, limit)
		return time.Time{}
	}
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// TestPatroniSwitchover: with Patroni's synchronous_mode, reads spread over
// the replicas Patroni reports and writes go to its leader; then, under 4
// readers and a writer, `patronictl switchover` to the synchronous standby:
// the writes follow within a second of the new leader taking a commit, no
// read fails (until the old leader serves reads again as a replica), and no
// write lands on the old leader once one landed on the new.
func TestPatroniSwitchover(t *testing.T) {
	ctx := ctxTimeout(t, 3*time.Minute)
	c := startPatroni(t, ctx, patroni.Options{Synchronous: true})
	leader, err := c.Leader(ctx)
	require.NoError(t, err)
	cand, err := c.SyncStandby(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, cand, 0, "no synchronous standby")
	leaderPort, candPort := c.Members()[leader].Port, c.Members()[cand].Port

	db := openPatroniDB(t, c.DSN(leader), newPatroniSource(t, patroniTemplate(""), c.Endpoints()...))
	took := waitPatroniFleet(t, db, c, leader, []int{0, 1, 2}, 20*time.Second)
	t.Logf("measured: Open on the leader's DSN → the 3 members in the node set, both replicas eligible: %v", ms(took))
	time.Sleep(patroniSlowStart)

	// Reads on the replicas Patroni reports, writes on its leader.
	st, err := c.Status(ctx)
	require.NoError(t, err)
	var replicas []int
	for _, m := range st.Members {
		if m.Role != "leader" {
			replicas = append(replicas, m.Port)
		}
	}
	require.Len(t, replicas, 2, "replicas in /cluster: %+v", st.Members)
	seen := map[int]int{}
	for range 200 {
		seen[pgPort(t, ctx, db, patroniPortQuery)]++
	}
	t.Logf("measured: 200 serial reads by server port: %v (leader %d)", seen, leaderPort)
	assert.Zero(t, seen[leaderPort], "reads served by the leader")
	for _, port := range replicas {
		assert.GreaterOrEqual(t, seen[port], 40, "reads served by replica %d", port)
	}
	mustExec(t, ctx, db.DB, patroniCreate)
	for range 20 {
		assert.Equal(t, leaderPort, mustPatroniWrite(t, ctx, db.DB), "a write not on the leader")
	}

	// The switchover, under load.
	load := startPatroniLoad(db.DB, 4, true)
	defer load.stop()
	_, ok := waitFor(10*time.Second, func() bool { return len(load.acks()) >= 20 })
	require.True(t, ok, "the writer made no progress:\n%s", db.Stats())
	accepted := pollPatroniWritable(ctx, c.DSN(cand))
	begin := time.Now()
	out, err := c.Patronictl(ctx, "switchover", "--leader", c.Members()[leader].Name, "--candidate", c.Members()[cand].Name, "--force")
	require.NoError(t, err, out)
	ctl := time.Since(begin)
	acceptedAt := receive(t, accepted, 20*time.Second, "the new leader taking a commit")
	_, ok = waitFor(10*time.Second, func() bool { _, ok := load.firstAckOn(candPort, begin); return ok })
	require.True(t, ok, "no write on the new leader %v after it took a commit:\n%s", 10*time.Second, db.Stats())
	followedAt, _ := load.firstAckOn(candPort, begin)
	follow := followedAt.Sub(acceptedAt)

	// The old leader comes back as a replica (Patroni restarts it) and
	// serves reads again.
	require.NoError(t, c.WaitHealthy(ctx))
	healthy := time.Since(begin)
	_, ok = waitFor(10*time.Second, func() bool { return load.servedSince(leaderPort, followedAt) })
	assert.True(t, ok, "the old leader serves no read as a replica:\n%s", db.Stats())
	rejoinedAt, _ := load.firstSince(leaderPort, followedAt)
	time.Sleep(300 * time.Millisecond)
	load.stop()

	t.Logf("measured: switchover: patronictl returned after %v; the new leader took a direct commit at +%v, rwsplit's first write on it %v later (+%v)",
		ms(ctl), ms(acceptedAt.Sub(begin)), ms(follow), ms(followedAt.Sub(begin)))
	t.Logf("measured: switchover: the old leader served its first read as a replica at +%v; cluster healthy again (a synchronous standby chosen) at +%v", ms(rejoinedAt.Sub(begin)), ms(healthy))
	assert.Less(t, follow, patroniFollowCeiling, "new leader taking commits → rwsplit's first write on it")
	reads, failed := load.readStats(begin)
	t.Logf("measured: switchover: %d reads, %d failed; %d writes acknowledged, %d failed; reads by port %v", reads, len(failed), len(load.acks()), load.writeErrs, load.counts())
	assert.Empty(t, failed, "reads failed during the switchover")
	for _, a := range load.acks() {
		switch {
		case a.port != leaderPort && a.port != candPort:
			t.Errorf("write %d acknowledged by port %d, neither the old nor the new leader", a.id, a.port)
		case a.port == leaderPort && a.at.After(followedAt):
			t.Errorf("write %d acknowledged by the old leader after a write on the new one", a.id)
		}
	}
	l, err := c.Leader(ctx)
	require.NoError(t, err)
	assert.Equal(t, cand, l, "Patroni's leader")
	n, _ := db.node(patroniName(c, cand))
	assert.Equal(t, rwsplit.RolePrimary, n.Role, "the new leader's role in rwsplit")
	assert.Equal(t, candPort, mustPatroniWrite(t, ctx, db.DB), "a write after the switchover")
}

// TestPatroniFailover: with synchronous_mode, the leader is killed under a
// writer and 2 readers: Patroni promotes the synchronous standby and
// rwsplit's writes follow; every write acknowledged (before the kill or
// after the failover) is on the new leader; no read fails; the dead leader
// leaves the node set once Patroni stops listing it.
func TestPatroniFailover(t *testing.T) {
	ctx := ctxTimeout(t, 3*time.Minute)
	c := startPatroni(t, ctx, patroni.Options{Synchronous: true})
	leader, err := c.Leader(ctx)
	require.NoError(t, err)
	standby, err := c.SyncStandby(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, standby, 0, "no synchronous standby")
	leaderPort, syncPort := c.Members()[leader].Port, c.Members()[standby].Port
	leaderName := patroniName(c, leader)

	db := openPatroniDB(t, c.DSN(leader), newPatroniSource(t, patroniTemplate(""), c.Endpoints()...))
	waitPatroniFleet(t, db, c, leader, []int{0, 1, 2}, 20*time.Second)
	mustExec(t, ctx, db.DB, patroniCreate)

	load := startPatroniLoad(db.DB, 2, true)
	defer load.stop()
	_, ok := waitFor(10*time.Second, func() bool { return len(load.acks()) >= 50 })
	require.True(t, ok, "the writer made no progress:\n%s", db.Stats())
	accepted := pollPatroniWritable(ctx, c.DSN(standby))
	old, err := c.KillLeader(ctx)
	require.NoError(t, err)
	killedAt := time.Now() // the processes are dead once KillLeader returns
	require.Equal(t, leader, old)
	ackedBefore := len(load.acks())
	newLeader, err := c.WaitWritable(ctx)
	require.NoError(t, err)
	patroniTook := time.Since(killedAt)
	require.Equal(t, standby, newLeader, "synchronous_mode promotes the synchronous standby")
	acceptedAt := receive(t, accepted, 20*time.Second, "the new leader taking a commit")
	_, ok = waitFor(15*time.Second, func() bool { _, ok := load.firstAckOn(syncPort, killedAt); return ok })
	require.True(t, ok, "no write on the new leader after the failover:\n%s", db.Stats())
	followedAt, _ := load.firstAckOn(syncPort, killedAt)
	time.Sleep(time.Second)
	load.stop()

	t.Logf("measured: failover: kill → the new leader takes a direct commit: %v (the harness's own poll: %v); kill → rwsplit's first write on it: %v, %v after the direct commit",
		ms(acceptedAt.Sub(killedAt)), ms(patroniTook), ms(followedAt.Sub(killedAt)), ms(followedAt.Sub(acceptedAt)))
	assert.Less(t, followedAt.Sub(acceptedAt), patroniFollowCeiling, "new leader taking commits → rwsplit's first write on it")

	// No acknowledged write lost: every one is on the new leader.
	acks := load.acks()
	ids := make([]int64, len(acks))
	for i, a := range acks {
		ids[i] = a.id
		if a.port != leaderPort && a.port != syncPort {
			t.Errorf("write %d acknowledged by port %d, neither the old nor the new leader", a.id, a.port)
		}
		if a.port == leaderPort && a.at.After(killedAt) {
			t.Errorf("write %d acknowledged by the killed leader after the kill", a.id)
		}
	}
	direct, err := sql.Open("pgx", c.DSN(newLeader))
	require.NoError(t, err)
	defer direct.Close()
	var found int
	require.NoError(t, direct.QueryRowContext(ctx, "SELECT count(*) FROM patroni_writes WHERE id = ANY($1)", ids).Scan(&found))
	reads, failed := load.readStats(killedAt)
	t.Logf("measured: failover: %d writes acknowledged (%d before the kill), %d found on the new leader, %d lost; %d failed writes; %d reads, %d failed after the kill",
		len(ids), ackedBefore, found, len(ids)-found, load.writeErrs, reads, len(failed))
	assert.Equal(t, len(ids), found, "acknowledged writes lost")
	assert.Empty(t, failed, "reads failed after the kill (the replicas did not stop)")

	// The dead leader leaves the node set once Patroni no longer lists it
	// (its key expires about TTL after the kill).
	_, ok = waitFor(20*time.Second, func() bool { return !db.has(leaderName) })
	assert.True(t, ok, "the dead leader is still in the node set:\n%s", db.Stats())
	leftAt, _ := db.events.first(leaderName, rwsplit.NodeLeft, killedAt)
	t.Logf("measured: failover: the dead leader left the node set %v after the kill (Patroni TTL %v)", ms(leftAt.Sub(killedAt)), patroni.TTL)
	n, _ := db.node(patroniName(c, newLeader))
	assert.Equal(t, rwsplit.RolePrimary, n.Role, "the new leader's role in rwsplit")
}

// TestPatroniMembership: on one cluster of three, under 4 readers through
// one DB that is never reopened: the first endpoint cut (discovery asks
// the others), a fourth member added (reads within two health rounds),
// every endpoint cut (routing goes on, failures counted), a member no
// longer listed while it runs (no call after one interval, server-side), a
// member removed with Patroni.
func TestPatroniMembership(t *testing.T) {
	ctx := ctxTimeout(t, 3*time.Minute)
	c := startPatroni(t, ctx, patroni.Options{})
	leader, err := c.Leader(ctx)
	require.NoError(t, err)
	leaderPort := c.Members()[leader].Port
	endpoints := c.Endpoints()

	db := openPatroniDB(t, c.DSN(leader), newPatroniSource(t, patroniTemplate(""), endpoints...))
	waitPatroniFleet(t, db, c, leader, []int{0, 1, 2}, 20*time.Second)
	mustExec(t, ctx, db.DB, patroniCreate)
	load := startPatroniLoad(db.DB, 4, false)
	defer load.stop()
	added := -1

	t.Run("EndpointDown", func(t *testing.T) {
		// The discoverer asks the first endpoint until it fails.
		st0 := db.Stats()
		require.NoError(t, c.StopAPI(ctx, 0))
		time.Sleep(5 * patroniInterval)
		st := db.Stats()
		t.Logf("measured: first endpoint cut: %d listings in %v, %d discovery failures", st.Listings-st0.Listings, 5*patroniInterval, st.DiscoveryFailures-st0.DiscoveryFailures)
		assert.Greater(t, st.Listings, st0.Listings+2, "listings with the first endpoint cut")
		assert.Equal(t, st0.DiscoveryFailures, st.DiscoveryFailures, "discovery failures with two endpoints answering: %s", st.LastDiscoveryError)
	})

	t.Run("FourthMember", func(t *testing.T) {
		// Added with the first endpoint still cut: a member that another
		// endpoint lists.
		before := len(c.Members())
		ready := make(chan time.Time, 1)
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() { // when the new member first answers a query
			defer close(ready)
			for pctx.Err() == nil && len(c.Members()) <= before {
				time.Sleep(5 * time.Millisecond)
			}
			if pctx.Err() != nil {
				return
			}
			m := c.Members()[before]
			h, err := sql.Open("pgx", patroni.DSNFor(m.Host, m.Port))
			if err != nil {
				return
			}
			defer h.Close()
			for pctx.Err() == nil {
				qctx, cancel := context.WithTimeout(pctx, time.Second)
				err := h.QueryRowContext(qctx, "SELECT 1").Scan(new(int))
				cancel()
				if err == nil {
					ready <- time.Now()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		begin := time.Now()
		added, err = c.AddMember(ctx)
		require.NoError(t, err)
		addedIn := time.Since(begin)
		name, port := patroniName(c, added), c.Members()[added].Port
		readyAt := receive(t, ready, 30*time.Second, "the new member answering")
		_, ok := waitFor(10*time.Second, func() bool { return load.servedSince(port, begin) })
		require.True(t, ok, "%s serves no read:\n%s", name, db.Stats())
		firstRead := load.servedBy(port).first
		joinedAt, ok := db.events.first(name, rwsplit.NodeJoined, begin)
		require.True(t, ok, "no NodeJoined event for %s", name)
		from := joinedAt
		if readyAt.After(from) {
			from = readyAt
		}
		rounds := float64(firstRead.Sub(from)) / float64(patroniInterval)
		t.Logf("measured: 4th member: AddMember returned at +%v; joined the node set at +%v, answered queries at +%v, served its first read at +%v: %v (%.1f health rounds) after it was both listed and up",
			ms(addedIn), ms(joinedAt.Sub(begin)), ms(readyAt.Sub(begin)), ms(firstRead.Sub(begin)), ms(firstRead.Sub(from)), rounds)
		assert.LessOrEqual(t, rounds, patroniJoinRounds, "health rounds from listed and up to the first read")
		waitPatroniFleet(t, db, c, leader, []int{0, 1, 2, added}, 10*time.Second)
		_, failed := load.readStats(begin)
		assert.Empty(t, failed, "reads failed while the member joined")
	})
	require.GreaterOrEqual(t, added, 0)

	t.Run("AllEndpointsDown", func(t *testing.T) {
		for i := range endpoints {
			require.NoError(t, c.StopAPI(ctx, i))
		}
		time.Sleep(2 * patroniInterval) // a listing in flight
		st0 := db.Stats()
		begin := time.Now()
		w := load.window(1500 * time.Millisecond)
		for range 20 {
			assert.Equal(t, leaderPort, mustPatroniWrite(t, ctx, db.DB), "a write with every endpoint cut")
		}
		st := db.Stats()
		t.Logf("measured: every endpoint cut: reads by port in 1.5 s %v; %d discovery failures, %d listings; last error %q",
			w, st.DiscoveryFailures-st0.DiscoveryFailures, st.Listings-st0.Listings, st.LastDiscoveryError)
		for _, i := range []int{0, 1, 2, added} {
			if i != leader {
				assert.Positive(t, w[c.Members()[i].Port], "reads on %s with every endpoint cut", patroniName(c, i))
			}
		}
		assert.Zero(t, w[leaderPort], "reads on the leader")
		_, failed := load.readStats(begin)
		assert.Empty(t, failed, "reads failed with every endpoint cut")
		assert.Greater(t, st.DiscoveryFailures, st0.DiscoveryFailures+2, "discovery failures with every endpoint cut")
		assert.Equal(t, st0.Listings, st.Listings, "listings with every endpoint cut")
		assert.Contains(t, st.LastDiscoveryError, "no endpoint answered")
		assert.NotContains(t, st.LastDiscoveryError, patroni.AppPassword)
		for _, n := range st.Nodes {
			assert.True(t, n.Up, "%s out of rotation", n.Name)
		}
		assert.Contains(t, db.log.String(), "discovery failed", "no warning logged")

		for i := range endpoints {
			require.NoError(t, c.StartAPI(ctx, i))
		}
		restored := db.Stats().Listings
		took, ok := waitFor(5*time.Second, func() bool { return db.Stats().Listings > restored })
		assert.True(t, ok, "no listing after the endpoints came back")
		t.Logf("measured: endpoints back → next listing after %v", ms(took))
	})

	t.Run("UnlistedWhileRunning", func(t *testing.T) {
		// Patroni no longer lists a member whose PostgreSQL still runs:
		// an endpoint of the test's, in front of Patroni's, hides it.
		// A DB of its own (its sessions named for pg_stat_activity) must
		// send it no call, probes included, one interval later.
		const app = "rwsplit-patroni-unlisted"
		f := startPatroniFilter(t, c)
		other := openPatroniDB(t, c.DSN(leader), newPatroniSource(t, patroniTemplate("application_name="+app), f.srv.URL))
		waitPatroniFleet(t, other, c, leader, []int{0, 1, 2, added}, 20*time.Second)
		hidden, port := patroniName(c, added), c.Members()[added].Port
		reads := startPatroniLoad(other.DB, 2, false)
		defer reads.stop()
		_, ok := waitFor(10*time.Second, func() bool { return reads.servedSince(port, time.Now().Add(-time.Second)) })
		require.True(t, ok, "%s serves no read:\n%s", hidden, other.Stats())
		watch := watchPatroniCalls(ctx, c.DSN(added), app)
		defer watch.stop()
		time.Sleep(300 * time.Millisecond)
		require.Positive(t, watch.sessionsNow(), "no session of the DB on %s", hidden)

		hiddenAt := time.Now()
		f.hide(hidden)
		_, ok = waitFor(10*time.Second, func() bool { return !other.has(hidden) && watch.sessionsNow() == 0 })
		require.True(t, ok, "%s still in the node set or still has sessions of the DB (%d):\n%s", hidden, watch.sessionsNow(), other.Stats())
		leftAt, _ := other.events.first(hidden, rwsplit.NodeLeft, hiddenAt)
		time.Sleep(3 * patroniInterval)
		watch.stop()
		reads.stop()
		last, err := watch.result()
		require.NoError(t, err)
		unlistedAt := f.firstHiddenAnswer()
		lastRead := reads.servedBy(port).last
		t.Logf("measured: unlisted while running: listing changed at 0; first answer without it at +%v; left the node set at +%v; last read it served returned at +%v; last call it received (pg_stat_activity) began at +%v; its sessions all closed",
			ms(unlistedAt.Sub(hiddenAt)), ms(leftAt.Sub(hiddenAt)), ms(lastRead.Sub(hiddenAt)), ms(last.Sub(hiddenAt)))
		assert.Less(t, last.Sub(hiddenAt), patroniLeaveCeiling, "listing changed → the last call to reach the member (server-side)")
		_, failed := reads.readStats(hiddenAt)
		assert.Empty(t, failed, "reads failed as the member left")
	})

	t.Run("MemberRemoved", func(t *testing.T) {
		// An original replica removed with Patroni: it stops (Patroni
		// shuts its PostgreSQL down), shows "stopped", then is no longer
		// listed once its key expires.
		victim := (leader + 1) % 3
		name, port := patroniName(c, victim), c.Members()[victim].Port
		memberName := c.Members()[victim].Name
		var (
			mu                      sync.Mutex
			notServingAt, droppedAt time.Time
		)
		pctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { // /cluster as seen from outside
			for pctx.Err() == nil {
				st, err := c.Status(pctx)
				now := time.Now()
				if err == nil {
					m := st.Member(memberName)
					mu.Lock()
					if (m == nil || !patroniServing(m.State)) && notServingAt.IsZero() {
						notServingAt = now
					}
					if m == nil && droppedAt.IsZero() {
						droppedAt = now
					}
					mu.Unlock()
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
		begin := time.Now()
		require.NoError(t, c.RemoveMember(ctx, victim))
		_, ok := waitFor(5*time.Second, func() bool { return !db.has(name) })
		cancel()
		wg.Wait()
		require.True(t, ok, "%s still in the node set after Patroni dropped it:\n%s", name, db.Stats())
		leftAt, _ := db.events.first(name, rwsplit.NodeLeft, begin)
		lastRead := load.servedBy(port).last
		t.Logf("measured: member removed: stop at 0; /cluster shows it stopped at +%v, no longer lists it at +%v; it left the node set at +%v; the last read it served returned at +%v",
			ms(notServingAt.Sub(begin)), ms(droppedAt.Sub(begin)), ms(leftAt.Sub(begin)), ms(lastRead.Sub(begin)))
		assert.Less(t, leftAt.Sub(notServingAt), patroniLeaveCeiling, "/cluster shows it stopped → it leaves the node set")
		assert.Less(t, lastRead.Sub(notServingAt), patroniLeaveCeiling, "/cluster shows it stopped → the last read it served")
		reads, failed := load.readStats(begin)
		t.Logf("measured: member removed: %d reads in all, %d failed since the stop", reads, len(failed))
		assert.Empty(t, failed, "reads failed as the member was removed")
		w := load.window(time.Second)
		assert.Zero(t, w[port], "reads on the removed member")
		assert.Zero(t, w[leaderPort], "reads on the leader")
	})
}

// patroniServing is whether a member in a /cluster state may serve, as the
// Patroni discoverer reads it.
func patroniServing(state string) bool {
	switch state {
	case "stopped", "stopping", "crashed", "start failed", "stop failed":
		return false
	}
	return true
}

// patroniFilter is a Patroni endpoint in front of a cluster's: GET /cluster
// answers the cluster's own /cluster less the member it hides.
type patroniFilter struct {
	c   *patroni.Cluster
	srv *httptest.Server

	mu          sync.Mutex
	hidden      string    // a node name (host:port)
	firstHidden time.Time // the first answer without it
}

func startPatroniFilter(t *testing.T, c *patroni.Cluster) *patroniFilter {
	f := &patroniFilter{c: c}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *patroniFilter) hide(name string) {
	f.mu.Lock()
	f.hidden = name
	f.mu.Unlock()
}

func (f *patroniFilter) firstHiddenAnswer() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.firstHidden
}

func (f *patroniFilter) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/cluster" {
		http.NotFound(w, r)
		return
	}
	st, err := f.c.Status(r.Context())
	if err != nil {
		http.Error(w, "no member answered", http.StatusBadGateway)
		return
	}
	f.mu.Lock()
	hidden := f.hidden
	f.mu.Unlock()
	var kept []patroni.MemberStatus
	for _, m := range st.Members {
		if net.JoinHostPort(m.Host, strconv.Itoa(m.Port)) != hidden {
			kept = append(kept, m)
		}
	}
	st.Members = kept
	b, err := json.Marshal(st)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
	if hidden != "" {
		f.mu.Lock()
		if f.firstHidden.IsZero() {
			f.firstHidden = time.Now()
		}
		f.mu.Unlock()
	}
}

// patroniCalls watches, on one server, the sessions of one
// application_name in pg_stat_activity: how many are open, and the latest
// start of a query or of a session seen on them.
type patroniCalls struct {
	cancel  context.CancelFunc
	done    chan struct{}
	open    atomic.Int64
	mu      sync.Mutex
	last    time.Time
	lastErr error
}

func watchPatroniCalls(ctx context.Context, dsn, app string) *patroniCalls {
	ctx, cancel := context.WithCancel(ctx)
	w := &patroniCalls{cancel: cancel, done: make(chan struct{})}
	w.open.Store(-1)
	go func() {
		defer close(w.done)
		h, err := sql.Open("pgx", dsn)
		if err != nil {
			w.lastErr = err
			return
		}
		defer h.Close()
		h.SetMaxOpenConns(1)
		for ctx.Err() == nil {
			var n int64
			var last sql.NullTime
			err := h.QueryRowContext(ctx, `SELECT count(*), max(greatest(backend_start, query_start))
				FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n, &last)
			w.mu.Lock()
			if err != nil && ctx.Err() == nil {
				w.lastErr = err
			}
			if err == nil {
				w.open.Store(n)
				if last.Valid && last.Time.After(w.last) {
					w.last = last.Time
				}
			}
			w.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return w
}

func (w *patroniCalls) sessionsNow() int64 { return w.open.Load() }

func (w *patroniCalls) stop() {
	w.cancel()
	<-w.done
}

func (w *patroniCalls) result() (time.Time, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last, w.lastErr
}

// TestPatroniBadInput: what a user or an endpoint can get wrong, on a
// cluster of two. Bad configuration is an error from NewPatroni or Open; a
// garbage endpoint is passed over; a lying or unusable listing is counted
// and logged, changes no routing, sends no write to a node that has not
// proven it takes them, and panics nothing.
func TestPatroniBadInput(t *testing.T) {
	t.Run("Configuration", func(t *testing.T) {
		const secret = "hunter2-secret"
		for _, tc := range []struct {
			name, template string
			endpoints      []string
			want           string
		}{
			{"no host placeholder", "postgres://app:" + secret + "@localhost:{port}/app", []string{"http://127.0.0.1:8008"}, "{host}"},
			{"no port placeholder", "host={host} user=app password=" + secret, []string{"http://127.0.0.1:8008"}, "{port}"},
			{"no endpoint", "postgres://app:" + secret + "@{host}:{port}/app", nil, "no endpoint"},
			{"not http", "postgres://app:" + secret + "@{host}:{port}/app", []string{"ftp://127.0.0.1:8008"}, "not an http(s) URL"},
			{"no host in the endpoint", "postgres://app:" + secret + "@{host}:{port}/app", []string{"http://"}, "not an http(s) URL"},
			{"unparsable endpoint", "postgres://app:" + secret + "@{host}:{port}/app", []string{"http://127.0.0.1:8008", "http://[::1"}, "endpoint 2"},
		} {
			p, err := rwsplit.NewPatroni(tc.template, nil, tc.endpoints...)
			if assert.Error(t, err, tc.name) {
				assert.Nil(t, p, tc.name)
				assert.Contains(t, err.Error(), tc.want, tc.name)
				assert.NotContains(t, err.Error(), secret, tc.name)
			}
		}
		// Patroni promotes replicas itself: WithAutoFailover with it is a
		// configuration error, and so is a Discovery without a source.
		p, err := rwsplit.NewPatroni(patroniTemplate(""), nil, "http://127.0.0.1:8008")
		require.NoError(t, err)
		dsn := patroni.DSNFor("127.0.0.1", 5432)
		admin, err := sql.Open("pgx", dsn)
		require.NoError(t, err)
		defer admin.Close()
		_, err = rwsplit.Open("pgx", dsn, nil, rwsplit.WithDiscovery(rwsplit.Discovery{Source: p}),
			rwsplit.WithAutoFailover(rwsplit.AutoFailover{Admin: []*sql.DB{admin}}))
		if assert.Error(t, err, "WithAutoFailover with Patroni") {
			assert.Contains(t, err.Error(), "promotes replicas itself")
		}
		_, err = rwsplit.Open("pgx", dsn, nil, rwsplit.WithDiscovery(rwsplit.Discovery{}))
		if assert.Error(t, err, "Discovery without a source") {
			assert.Contains(t, err.Error(), "Source is nil")
		}
	})

	ctx := ctxTimeout(t, 3*time.Minute)
	c := startPatroni(t, ctx, patroni.Options{Members: 2})
	leader, err := c.Leader(ctx)
	require.NoError(t, err)
	replica := 1 - leader
	leaderPort, replicaPort := c.Members()[leader].Port, c.Members()[replica].Port
	leaderName, replicaName := patroniName(c, leader), patroniName(c, replica)
	st, err := c.Status(ctx)
	require.NoError(t, err)
	mustExec(t, ctx, openPatroniDB(t, c.DSN(leader), newPatroniSource(t, patroniTemplate(""), c.Endpoints()...)).DB, patroniCreate)

	// Endpoints that answer, but nothing a discoverer may use.
	serve := func(code int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			fmt.Fprint(w, body)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	member := func(name, host string, port int) string {
		return fmt.Sprintf(`{"members": [{"name": %q, "role": "leader", "state": "running", "host": %q, "port": %d}]}`, name, host, port)
	}
	garbage := []string{
		serve(http.StatusOK, "<html><body>Welcome to nginx!</body></html>"),
		serve(http.StatusInternalServerError, `{"members": []}`),
		serve(http.StatusOK, `{"members": [{"name": "m0", "role": "leader", "host": "127.0.0.1", "po`),
		serve(http.StatusOK, `{"members": {"m0": "leader"}}`),
		serve(http.StatusOK, `{"members": []}`),
		serve(http.StatusOK, `[1, 2, 3]`),
		serve(http.StatusOK, member("evil", "127.0.0.1/app?sslmode=disable&host=10.0.0.1", 5432)),
		serve(http.StatusOK, member("evil", "x@10.0.0.1", 5432)),
		serve(http.StatusOK, member("evil", "127.0.0.1", 99999)),
		serve(http.StatusOK, member("evil", "", 5432)),
		serve(http.StatusOK, `{"members": [{"name": "m9", "role": "leader", "state": "stopped", "host": "127.0.0.1", "port": 5432}]}`),
	}

	// stays checks, for a while, that db's node set stays the seed (the
	// leader) alone, and that writes and reads land on the leader.
	stays := func(t *testing.T, db *patroniDB) {
		t.Helper()
		for range 10 {
			assert.Equal(t, []string{leaderName}, db.names(), "node set")
			assert.Equal(t, leaderPort, mustPatroniWrite(t, ctx, db.DB), "a write")
			assert.Equal(t, leaderPort, pgPort(t, ctx, db, patroniPortQuery), "a read (on the primary: no replica)")
			time.Sleep(patroniInterval / 2)
		}
	}

	t.Run("GarbageAheadOfTheRealEndpoints", func(t *testing.T) {
		endpoints := append(append([]string(nil), garbage...), c.Endpoints()...)
		nodes, err := newPatroniSource(t, patroniTemplate(""), endpoints...).Discover(ctx)
		require.NoError(t, err)
		listed := map[string]rwsplit.Role{}
		for _, n := range nodes {
			listed[n.Name] = n.Role
		}
		assert.Equal(t, map[string]rwsplit.Role{leaderName: rwsplit.RolePrimary, replicaName: rwsplit.RoleReplica}, listed, "Discover past %d garbage endpoints", len(garbage))

		db := openPatroniDB(t, c.DSN(leader), newPatroniSource(t, patroniTemplate(""), endpoints...))
		waitPatroniFleet(t, db, c, leader, []int{0, 1}, 20*time.Second)
		assert.Equal(t, leaderPort, mustPatroniWrite(t, ctx, db.DB), "a write")
		assert.Equal(t, replicaPort, pgPort(t, ctx, db, patroniPortQuery), "a read")
		s := db.Stats()
		assert.Zero(t, s.DiscoveryFailures, "discovery failures: %s", s.LastDiscoveryError)
		assert.Positive(t, s.Listings)
	})

	t.Run("HungEndpointAhead", func(t *testing.T) {
		// An endpoint that accepts connections and never answers (a
		// hung host), ahead of the real ones, with the default timeout
		// of a listing (the interval): the later endpoints must still
		// be asked.
		hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
		t.Cleanup(hung.Close)
		db := openPatroniDB(t, c.DSN(leader), newPatroniSource(t, patroniTemplate(""), append([]string{hung.URL}, c.Endpoints()...)...))
		took := waitPatroniFleet(t, db, c, leader, []int{0, 1}, 10*time.Second)
		s := db.Stats()
		t.Logf("measured: hung endpoint ahead: the replica eligible after %v; %d discovery failures, last: %s", ms(took), s.DiscoveryFailures, s.LastDiscoveryError)
		assert.Equal(t, replicaPort, pgPort(t, ctx, db, patroniPortQuery), "a read")
		assert.LessOrEqual(t, s.DiscoveryFailures, uint64(2), "listings that failed: the hung endpoint is asked first again")
	})

	t.Run("OnlyGarbage", func(t *testing.T) {
		db := openPatroniDB(t, c.DSN(leader), newPatroniSource(t, patroniTemplate(""), garbage...))
		stays(t, db)
		s := db.Stats()
		t.Logf("only garbage endpoints: %d discovery failures; last: %s", s.DiscoveryFailures, s.LastDiscoveryError)
		assert.Greater(t, s.DiscoveryFailures, uint64(2), "discovery failures")
		assert.Zero(t, s.Listings, "listings applied")
		assert.Contains(t, s.LastDiscoveryError, "no endpoint answered")
		assert.NotContains(t, s.LastDiscoveryError, "10.0.0.1", "an address from garbage in the error")
		assert.Contains(t, db.log.String(), "discovery failed", "no warning logged")
	})

	t.Run("LyingEndpoint", func(t *testing.T) {
		// A valid /cluster answer that calls the replica the leader and
		// the leader a replica: the replica joins but, its probes saying
		// it does not take writes, gets none.
		lie := *st
		lie.Members = append([]patroni.MemberStatus(nil), st.Members...)
		for i := range lie.Members {
			if lie.Members[i].Role == "leader" {
				lie.Members[i].Role = "replica"
			} else {
				lie.Members[i].Role = "leader"
			}
		}
		b, err := json.Marshal(lie)
		require.NoError(t, err)
		db := openPatroniDB(t, c.DSN(leader), newPatroniSource(t, patroniTemplate(""), serve(http.StatusOK, string(b))))
		waitPatroniFleet(t, db, c, leader, []int{0, 1}, 20*time.Second)
		load := startPatroniLoad(db.DB, 2, true)
		time.Sleep(2 * time.Second)
		load.stop()
		acks := load.acks()
		require.NotEmpty(t, acks, "no write acknowledged")
		for _, a := range acks {
			assert.Equal(t, leaderPort, a.port, "write %d", a.id)
		}
		_, failed := load.readStats(time.Time{})
		assert.Zero(t, load.writeErrs, "failed writes")
		assert.Empty(t, failed, "failed reads")
		t.Logf("lying endpoint: %d writes, all on the leader; reads by port %v", len(acks), load.counts())
		n, _ := db.node(replicaName)
		assert.Equal(t, rwsplit.RoleReplica, n.Role, "the replica called leader")
	})

	t.Run("MalformedMemberDSN", func(t *testing.T) {
		// Members whose DSN the template makes malformed: Open's check of
		// the DSN refuses them, the failure is counted and logged, and the
		// node set stays the seed alone.
		const pw = patroni.AppPassword
		for _, tc := range []struct{ name, template string }{
			{"bad sslmode", patroniTemplate("sslmode=bogus")},
			{"port out of range", "postgres://app:" + pw + "@{host}:{port}99/app?sslmode=disable"},
			{"port not a number", "host={host} port={port}x user=app password=" + pw + " dbname=app sslmode=disable"},
		} {
			t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
				db := openPatroniDB(t, c.DSN(leader), newPatroniSource(t, tc.template, c.Endpoints()...))
				stays(t, db)
				s := db.Stats()
				t.Logf("%s: %d discovery failures, %d listings; last: %s", tc.name, s.DiscoveryFailures, s.Listings, s.LastDiscoveryError)
				assert.Greater(t, s.DiscoveryFailures, uint64(2), "discovery failures")
				assert.Contains(t, s.LastDiscoveryError, replicaName, "the error names the member")
				assert.Contains(t, s.LastDiscoveryError, "malformed DSN")
				assert.NotContains(t, s.LastDiscoveryError, pw)
				assert.Contains(t, db.log.String(), "discovery failed", "no warning logged")
				_, joined := db.events.first(replicaName, rwsplit.NodeJoined, time.Time{})
				assert.False(t, joined, "the member with a malformed DSN joined")
			})
		}
	})

	t.Run("MemberDSNFailsOnConnect", func(t *testing.T) {
		// DSNs that Open's check lets through but that fail before any
		// query: key=value strings pgx cannot parse, and a password the
		// server refuses. The member joins; it must not serve until a
		// probe has reached it, so no read may fail, and the failure must
		// show in its Stats and the log without the password.
		const pw = patroni.AppPassword
		for _, tc := range []struct{ name, template string }{
			{"unterminated quote", "host={host} port={port} user=app password='" + pw + " dbname=app sslmode=disable"},
			{"key without a value", "host={host} port={port} user app password=" + pw + " dbname=app sslmode=disable"},
			{"wrong password", "postgres://app:not-" + pw + "@{host}:{port}/app?sslmode=disable"},
		} {
			t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
				db := openPatroniDB(t, c.DSN(leader), newPatroniSource(t, tc.template, c.Endpoints()...))
				var failed []string
				for range 20 {
					assert.Equal(t, leaderPort, mustPatroniWrite(t, ctx, db.DB), "a write")
					var port int
					if err := db.QueryRowContext(ctx, patroniPortQuery).Scan(&port); err != nil {
						failed = append(failed, err.Error())
					} else {
						assert.Equal(t, leaderPort, port, "a read (on the primary: no replica)")
					}
					time.Sleep(patroniInterval / 2)
				}
				n, listed := db.node(replicaName)
				s := db.Stats()
				t.Logf("%s: member in the node set %v, eligible %v, last error %q; %d of 20 reads failed; %d discovery failures, last: %q",
					tc.name, listed, n.Eligible, n.LastError, len(failed), s.DiscoveryFailures, s.LastDiscoveryError)
				assert.NotContains(t, n.LastError, pw)
				assert.NotContains(t, s.LastDiscoveryError, pw)
				// A probe that cannot get a connection fails: the member
				// never serves, and no read fails.
				assert.False(t, n.Eligible, "a member whose connections fail is eligible")
				assert.Empty(t, failed, "reads failed")
				assert.NotContains(t, n.LastError, "user=", "the last error quotes the connection settings")
				assert.True(t, listed || s.DiscoveryFailures > 0, "the bad DSN is neither a discovery failure nor a failing node")
			})
		}
	})
}
