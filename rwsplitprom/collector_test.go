package rwsplitprom_test

import (
	"context"
	"database/sql"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplitprom"
)

func TestNewChecksOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []rwsplitprom.Option
		bad  bool
	}{
		{"defaults", nil, false},
		{"nil option", []rwsplitprom.Option{nil}, false},
		{"namespace", []rwsplitprom.Option{rwsplitprom.WithNamespace("orders_db")}, false},
		{"empty namespace keeps the default", []rwsplitprom.Option{rwsplitprom.WithNamespace("")}, false},
		{"namespace with a dash", []rwsplitprom.Option{rwsplitprom.WithNamespace("orders-db")}, true},
		{"namespace starting with a digit", []rwsplitprom.Option{rwsplitprom.WithNamespace("1db")}, true},
		{"buckets", []rwsplitprom.Option{rwsplitprom.WithCallBuckets(.001, .01, .1)}, false},
		{"no buckets keeps the default", []rwsplitprom.Option{rwsplitprom.WithCallBuckets()}, false},
		{"buckets out of order", []rwsplitprom.Option{rwsplitprom.WithCallBuckets(.01, .001)}, true},
		{"repeated bucket", []rwsplitprom.Option{rwsplitprom.WithCallBuckets(.01, .01)}, true},
		{"NaN bucket", []rwsplitprom.Option{rwsplitprom.WithCallBuckets(.01, math.NaN())}, true},
		{"native histograms", []rwsplitprom.Option{rwsplitprom.WithNativeHistograms(1.1)}, false},
		{"native factor 1", []rwsplitprom.Option{rwsplitprom.WithNativeHistograms(1)}, true},
		{"native factor 0", []rwsplitprom.Option{rwsplitprom.WithNativeHistograms(0)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := rwsplitprom.New(tc.opts...)
			if tc.bad {
				require.Error(t, err)
				assert.Nil(t, c)
				assert.Contains(t, err.Error(), "rwsplitprom: ")
				return
			}
			require.NoError(t, err)
			reg := prometheus.NewPedanticRegistry()
			require.NoError(t, reg.Register(c))
		})
	}
}

func TestNamespaceAndBuckets(t *testing.T) {
	c, reg := newRegistry(t, rwsplitprom.WithNamespace("orders"), rwsplitprom.WithCallBuckets(.001, .002))
	c.Observer("app").ObserveCall(rwsplit.CallEvent{Context: context.Background(), Op: rwsplit.OpQuery, Node: "r1", Reason: rwsplit.ReasonPolicy, Latency: 1500 * time.Microsecond})
	s := gather(t, reg)
	require.Contains(t, s, "orders_calls_total")
	require.NotContains(t, s, "rwsplit_calls_total")
	h := s["orders_call_duration_seconds"].GetMetric()[0].GetHistogram()
	require.Len(t, h.GetBucket(), 2)
	assert.Equal(t, uint64(0), h.GetBucket()[0].GetCumulativeCount())
	assert.Equal(t, uint64(1), h.GetBucket()[1].GetCumulativeCount())
}

func TestNativeHistograms(t *testing.T) {
	c, reg := newRegistry(t, rwsplitprom.WithNativeHistograms(1.1))
	o := c.Observer("app")
	o.ObserveCall(rwsplit.CallEvent{Context: context.Background(), Op: rwsplit.OpQuery, Node: "r1", Reason: rwsplit.ReasonPolicy, Latency: time.Millisecond})
	o.ObserveEvent(rwsplit.WriteOutage{Primary: "r1", Duration: time.Second})
	s := gather(t, reg)
	for _, name := range []string{"rwsplit_call_duration_seconds", "rwsplit_write_outage_seconds"} {
		h := s[name].GetMetric()[0].GetHistogram()
		assert.NotNil(t, h.Schema, "%s: a native histogram", name)
		assert.NotEmpty(t, h.GetBucket(), "%s: and the classic buckets", name)
	}
}

func TestObserveCallLabels(t *testing.T) {
	c, reg := newRegistry(t)
	o := c.Observer("app")
	require.Same(t, o, c.Observer("app"), "the same name gives the same observer")
	bg := context.Background()
	canceled, cancel := context.WithCancel(bg)
	cancel()
	read := rwsplit.CallEvent{Context: bg, Op: rwsplit.OpQuery, Node: "r1", Role: rwsplit.RoleReplica, Reason: rwsplit.ReasonPolicy, Attempt: 1, Latency: 2 * time.Millisecond}
	for range 3 {
		o.ObserveCall(read)
	}
	failed := read
	failed.Err, failed.Retried = errors.New("connection reset"), true
	o.ObserveCall(failed)
	retried := read
	retried.Node, retried.Reason, retried.Attempt = "r2", rwsplit.ReasonRetry, 2
	o.ObserveCall(retried)
	gone := read
	gone.Context, gone.Err = canceled, canceled.Err()
	o.ObserveCall(gone)
	o.ObserveCall(rwsplit.CallEvent{Context: bg, Op: rwsplit.OpExec, Node: "p", Role: rwsplit.RolePrimary, Reason: rwsplit.ReasonRule, Attempt: 1, Latency: time.Millisecond})
	o.ObserveCall(rwsplit.CallEvent{Context: bg, Op: rwsplit.OpQuery, Attempt: 1, Err: rwsplit.ErrNoReplica})
	o.ObserveCall(rwsplit.CallEvent{Context: canceled, Op: rwsplit.OpExec, Attempt: 1, Err: context.Canceled})
	c.Observer("other").ObserveCall(read)

	s := gather(t, reg)
	const calls = "rwsplit_calls_total"
	assert.Equal(t, 3.0, s.one(t, calls, l("db", "app", "node", "r1", "role", "replica", "op", "query", "reason", "policy", "outcome", "ok")))
	assert.Equal(t, 1.0, s.one(t, calls, l("db", "app", "node", "r1", "role", "replica", "op", "query", "reason", "policy", "outcome", "error")))
	assert.Equal(t, 1.0, s.one(t, calls, l("db", "app", "node", "r2", "role", "replica", "op", "query", "reason", "retry", "outcome", "ok")))
	assert.Equal(t, 1.0, s.one(t, calls, l("db", "app", "node", "r1", "role", "replica", "op", "query", "reason", "policy", "outcome", "canceled")))
	assert.Equal(t, 1.0, s.one(t, calls, l("db", "app", "node", "p", "role", "primary", "op", "exec", "reason", "rule", "outcome", "ok")))
	assert.Equal(t, 1.0, s.one(t, calls, l("db", "app", "node", "", "role", "", "op", "query", "reason", "none", "outcome", "refused")))
	assert.Equal(t, 1.0, s.one(t, calls, l("db", "app", "node", "", "role", "", "op", "exec", "reason", "none", "outcome", "canceled")),
		"a call refused because the caller gave up is the caller's")
	assert.Equal(t, 1.0, s.one(t, calls, l("db", "other")))
	assert.Equal(t, 10.0, s.sum(calls, nil))

	const dur = "rwsplit_call_duration_seconds"
	assert.Equal(t, 5.0, s.one(t, dur, l("db", "app", "node", "r1", "op", "query")), "every attempt that reached r1")
	assert.Equal(t, 1.0, s.one(t, dur, l("db", "app", "node", "r2", "op", "query")))
	assert.Equal(t, 1.0, s.one(t, dur, l("db", "app", "node", "p", "op", "exec")))
	assert.Zero(t, s.count(dur, l("node", "")), "refused calls have no latency")
	h := s[dur].GetMetric()
	for _, m := range h {
		if matches(m, l("db", "app", "node", "p")) {
			assert.InDelta(t, 0.001, m.GetHistogram().GetSampleSum(), 1e-9)
		}
	}
	requireLint(t, c)
}

func TestObserveEvent(t *testing.T) {
	c, reg := newRegistry(t)
	o := c.Observer("app")
	s := gather(t, reg)
	assert.Equal(t, 0.0, s.one(t, "rwsplit_write_outage_seconds", l("db", "app")), "the outage histogram is there, empty, from the start")

	o.ObserveEvent(rwsplit.WriteOutage{Primary: "p2", Duration: 1500 * time.Millisecond})
	o.ObserveEvent(rwsplit.SessionWaited{Context: context.Background(), Node: "r1", Waited: 3 * time.Millisecond})
	o.ObserveEvent(rwsplit.SessionWaited{Context: context.Background(), Waited: 50 * time.Millisecond})
	o.ObserveEvent(rwsplit.SessionWaited{Context: context.Background(), Waited: 50 * time.Millisecond})
	o.ObserveEvent(rwsplit.PromotionEvent{Node: "r1", Old: "p", Duration: 2 * time.Second})
	o.ObserveEvent(rwsplit.PromotionEvent{Old: "p", Duration: time.Second, Err: errors.New("vetoed")})
	for _, st := range []rwsplit.NodeState{rwsplit.NodeEjected, rwsplit.NodeReinstated, rwsplit.NodeEjected, rwsplit.NodeLagging, rwsplit.NodeCaughtUp} {
		o.ObserveEvent(rwsplit.NodeEvent{Node: "r1", Role: rwsplit.RoleReplica, State: st, Cause: "dial tcp: connection refused"})
	}
	o.ObserveEvent(rwsplit.NodeEvent{Node: "p", Role: rwsplit.RolePrimary, State: rwsplit.NodeFenced})
	o.ObserveEvent(rwsplit.PrimaryChanged{From: "p", To: "r1"})
	o.ObserveEvent(rwsplit.TokenRejected{Reason: "bad signature"})

	s = gather(t, reg)
	assert.Equal(t, 1.0, s.one(t, "rwsplit_write_outage_seconds", l("db", "app")))
	assert.InDelta(t, 1.5, s["rwsplit_write_outage_seconds"].GetMetric()[0].GetHistogram().GetSampleSum(), 1e-9)
	assert.Equal(t, 1.0, s.one(t, "rwsplit_session_wait_seconds", l("db", "app", "where", "replica")))
	assert.Equal(t, 2.0, s.one(t, "rwsplit_session_wait_seconds", l("db", "app", "where", "primary")))
	assert.Equal(t, 1.0, s.one(t, "rwsplit_promotion_duration_seconds", l("db", "app", "outcome", "promoted")))
	assert.Equal(t, 1.0, s.one(t, "rwsplit_promotion_duration_seconds", l("db", "app", "outcome", "failed")))
	const changes = "rwsplit_node_state_changes_total"
	assert.Equal(t, 2.0, s.one(t, changes, l("db", "app", "node", "r1", "state", "ejected")))
	assert.Equal(t, 1.0, s.one(t, changes, l("db", "app", "node", "r1", "state", "reinstated")))
	assert.Equal(t, 1.0, s.one(t, changes, l("db", "app", "node", "r1", "state", "lagging")))
	assert.Equal(t, 1.0, s.one(t, changes, l("db", "app", "node", "r1", "state", "caught-up")))
	assert.Equal(t, 1.0, s.one(t, changes, l("db", "app", "node", "p", "state", "fenced")))
	for k, v := range s.labelValues() {
		assert.NotContains(t, v, "refused", k)
		assert.NotContains(t, v, "vetoed", k)
		assert.NotContains(t, v, "signature", k)
	}
	requireLint(t, c)
}

func TestObserveCallAllocatesNothing(t *testing.T) {
	c, _ := newRegistry(t)
	o := c.Observer("app")
	e := rwsplit.CallEvent{Context: context.Background(), Op: rwsplit.OpQuery, Node: "r1", Role: rwsplit.RoleReplica, Reason: rwsplit.ReasonPolicy, Attempt: 1, Latency: time.Millisecond}
	o.ObserveCall(e) // makes the series
	assert.Zero(t, testing.AllocsPerRun(1000, func() { o.ObserveCall(e) }))
	refused := rwsplit.CallEvent{Context: context.Background(), Op: rwsplit.OpQuery, Attempt: 1, Err: rwsplit.ErrNoReplica}
	o.ObserveCall(refused)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { o.ObserveCall(refused) }))

	// Through a DB: observing adds no allocation to a call.
	plain := newMemCluster(t, 1)
	observed := newMemCluster(t, 1, rwsplit.WithObserver(o))
	ctx := context.Background()
	for _, op := range []struct {
		name string
		run  func(db *rwsplit.DB)
	}{
		{"read", func(db *rwsplit.DB) { db.QueryRowContext(ctx, "SELECT name FROM users").Scan(new(string)) }},
		{"write", func(db *rwsplit.DB) { db.ExecContext(ctx, "INSERT INTO t VALUES (1)") }},
	} {
		op.run(observed.db)
		want := testing.AllocsPerRun(500, func() { op.run(plain.db) })
		got := testing.AllocsPerRun(500, func() { op.run(observed.db) })
		assert.Equal(t, want, got, "%s: allocations with the observer, and without", op.name)
	}
}

// memCluster is a DB over in-memory servers: "primary", "replica1", ...
type memCluster struct {
	db       *rwsplit.DB
	primary  *memServer
	replicas []*memServer
}

// server returns the server named name.
func (c *memCluster) server(name string) *memServer {
	for _, s := range append([]*memServer{c.primary}, c.replicas...) {
		if s.name == name {
			return s
		}
	}
	return nil
}

func newMemCluster(t testing.TB, replicas int, opts ...rwsplit.Option) *memCluster {
	t.Helper()
	c := &memCluster{primary: newMemServer("primary")}
	var dbs []*sql.DB
	for i := 1; i <= replicas; i++ {
		s := newMemServer("replica" + string(rune('0'+i)))
		c.replicas = append(c.replicas, s)
		dbs = append(dbs, s.DB())
	}
	db, err := rwsplit.New(c.primary.DB(), dbs, append([]rwsplit.Option{rwsplit.WithHealthCheckInterval(time.Hour)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) })
	c.db = db
	return c
}

// TestMemCluster drives a DB over in-memory servers, each of which
// counts what it served, and checks the collector against them.
func TestMemCluster(t *testing.T) {
	col, reg := newRegistry(t)
	mc := newMemCluster(t, 2, rwsplit.WithObserver(col.Observer("mem")),
		rwsplit.WithHealthCheckInterval(10*time.Millisecond), rwsplit.WithFallbackLimit(0))
	col.Track("mem", mc.db)
	db := mc.db
	ctx := context.Background()
	node := func(ctx context.Context, q string) string {
		var n string
		require.NoError(t, db.QueryRowContext(ctx, q).Scan(&n))
		return n
	}

	const reads, writes, forced = 40, 7, 3
	for range reads {
		require.NotEqual(t, "primary", node(ctx, "SELECT name FROM users"))
	}
	for range writes {
		_, err := db.ExecContext(ctx, "UPDATE users SET name = 'x'")
		require.NoError(t, err)
	}
	for range forced {
		require.Equal(t, "primary", node(rwsplit.WithPrimary(ctx), "SELECT name FROM users"))
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	require.NoError(t, err)
	txNode := ""
	require.NoError(t, tx.QueryRowContext(ctx, "SELECT name FROM users").Scan(&txNode))
	require.NoError(t, tx.Commit())
	require.Error(t, db.QueryRowContext(ctx, "SELECT fail FROM users").Scan(new(string)))
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	require.Error(t, db.QueryRowContext(short, "SELECT sleep FROM users").Scan(new(string)))
	cancel()

	s := gather(t, reg)
	const calls = "rwsplit_calls_total"
	for _, srv := range mc.replicas {
		n := srv.name
		assert.Equal(t, float64(srv.queries.Load()), s.sum(calls, l("node", n, "op", "query", "outcome", "ok")), n)
		assert.Equal(t, float64(srv.queries.Load()), s.sum(calls, l("node", n, "role", "replica", "op", "query", "reason", "policy", "outcome", "ok")), n)
		assert.Zero(t, s.sum(calls, l("node", n, "op", "exec")), n)
	}
	assert.Equal(t, float64(reads), s.sum(calls, l("op", "query", "reason", "policy", "outcome", "ok")))
	assert.Equal(t, float64(writes), s.one(t, calls, l("db", "mem", "node", "primary", "role", "primary", "op", "exec", "reason", "rule", "outcome", "ok")))
	assert.Equal(t, float64(mc.primary.execs.Load()), s.sum(calls, l("node", "primary", "op", "exec")))
	assert.Equal(t, float64(forced), s.one(t, calls, l("node", "primary", "op", "query", "reason", "forced", "outcome", "ok")))
	assert.Equal(t, float64(mc.primary.queries.Load()), s.sum(calls, l("node", "primary", "op", "query")))
	assert.Equal(t, 1.0, s.one(t, calls, l("node", txNode, "role", "replica", "op", "begin", "reason", "policy", "outcome", "ok")))
	assert.Equal(t, 1.0, s.sum(calls, l("op", "query", "reason", "policy", "outcome", "error")))
	assert.Equal(t, 1.0, s.sum(calls, l("op", "query", "reason", "policy", "outcome", "canceled")))
	assert.Equal(t, float64(reads+writes+forced+1+2), s.sum(calls, nil))
	assert.Equal(t, float64(reads+writes+forced+1+2), s.sum("rwsplit_call_duration_seconds", nil))
	assert.Equal(t, float64(writes), s.one(t, "rwsplit_call_duration_seconds", l("node", "primary", "op", "exec")))

	assert.Equal(t, 1.0, s.one(t, "rwsplit_info", l("db", "mem", "dialect", "generic")))
	assert.Equal(t, 2.0, s.one(t, "rwsplit_eligible_replicas", l("db", "mem")))
	for _, n := range []string{"primary", "replica1", "replica2"} {
		assert.Equal(t, 1.0, s.one(t, "rwsplit_node_up", l("node", n)), n)
		assert.Zero(t, s.one(t, "rwsplit_node_ejections_total", l("node", n)), n)
		assert.Zero(t, s.one(t, "rwsplit_node_in_flight_calls", l("node", n)), n)
	}
	assert.Equal(t, 1.0, s.one(t, "rwsplit_node_role", l("node", "primary", "role", "primary")))
	assert.Equal(t, 0.0, s.one(t, "rwsplit_node_role", l("node", "primary", "role", "replica")))
	assert.Equal(t, 1.0, s.one(t, "rwsplit_node_role", l("node", "replica1", "role", "replica")))
	assert.Equal(t, 0.0, s.one(t, "rwsplit_node_eligible", l("node", "primary")))
	assert.Equal(t, 1.0, s.one(t, "rwsplit_node_eligible", l("node", "replica2")))
	requireLint(t, col)

	// Both replicas go down: the probes take them out, and with no
	// fallback allowed a read is refused.
	for _, r := range mc.replicas {
		r.down.Store(true)
	}
	require.Eventually(t, func() bool { return db.Stats().Eligible == 0 }, 5*time.Second, 5*time.Millisecond, "%v", db.Stats())
	require.ErrorIs(t, db.QueryRowContext(ctx, "SELECT name FROM users").Scan(new(string)), rwsplit.ErrNoReplica)
	s = gather(t, reg)
	for _, r := range mc.replicas {
		assert.Equal(t, 0.0, s.one(t, "rwsplit_node_up", l("node", r.name)), r.name)
		assert.Equal(t, 1.0, s.one(t, "rwsplit_node_ejections_total", l("node", r.name)), r.name)
		assert.Equal(t, 1.0, s.one(t, "rwsplit_node_state_changes_total", l("db", "mem", "node", r.name, "state", "ejected")), r.name)
	}
	assert.Equal(t, 0.0, s.one(t, "rwsplit_eligible_replicas", l("db", "mem")))
	assert.Equal(t, 1.0, s.one(t, "rwsplit_fallback_refusals_total", l("db", "mem")))
	assert.Equal(t, 1.0, s.one(t, calls, l("db", "mem", "node", "", "role", "", "op", "query", "reason", "none", "outcome", "refused")))

	// They come back.
	for _, r := range mc.replicas {
		r.down.Store(false)
	}
	require.Eventually(t, func() bool { return db.Stats().Eligible == 2 }, 5*time.Second, 5*time.Millisecond)
	s = gather(t, reg)
	for _, r := range mc.replicas {
		assert.Equal(t, 1.0, s.one(t, "rwsplit_node_up", l("node", r.name)), r.name)
		assert.Equal(t, 1.0, s.one(t, "rwsplit_node_state_changes_total", l("node", r.name, "state", "reinstated")), r.name)
	}
	requireLint(t, col)
}

func TestTrackAndUntrack(t *testing.T) {
	col, reg := newRegistry(t)
	a := newMemCluster(t, 1)
	b := newMemCluster(t, 2)
	col.Observer("a").ObserveCall(rwsplit.CallEvent{Context: context.Background(), Op: rwsplit.OpQuery, Node: "replica1", Reason: rwsplit.ReasonPolicy})
	col.Track("a", a.db)
	col.Track("b", a.db)
	col.Track("b", b.db) // replaces
	s := gather(t, reg)
	assert.Equal(t, 2, s.count("rwsplit_node_up", l("db", "a")))
	assert.Equal(t, 3, s.count("rwsplit_node_up", l("db", "b")))
	assert.Equal(t, 2.0, s.one(t, "rwsplit_eligible_replicas", l("db", "b")))

	col.Untrack("a")
	col.Track("b", nil)
	s = gather(t, reg)
	assert.Zero(t, s.count("rwsplit_node_up", nil))
	assert.Zero(t, s.count("rwsplit_info", nil))
	assert.Equal(t, 1.0, s.one(t, "rwsplit_calls_total", l("db", "a")), "the observer's series stay")
	col.Untrack("never tracked")

	// A closed DB still reports its last state.
	col.Track("a", a.db)
	require.NoError(t, a.db.Close())
	s = gather(t, reg)
	assert.Equal(t, 2, s.count("rwsplit_node_up", l("db", "a")))
}

func TestCollectorIsConsistent(t *testing.T) {
	// testutil.CollectAndCount runs the collector through a pedantic
	// registry of its own: it fails on an undescribed or inconsistent
	// metric.
	col, _ := newRegistry(t)
	mc := newMemCluster(t, 2, rwsplit.WithObserver(col.Observer("mem")))
	col.Track("mem", mc.db)
	_, err := mc.db.ExecContext(context.Background(), "INSERT INTO t VALUES (1)")
	require.NoError(t, err)
	assert.Equal(t, 1, testutil.CollectAndCount(col, "rwsplit_calls_total"))
	assert.Equal(t, 3, testutil.CollectAndCount(col, "rwsplit_node_up"))
	assert.Equal(t, 6, testutil.CollectAndCount(col, "rwsplit_node_role"))
	assert.Equal(t, 0, testutil.CollectAndCount(col, "rwsplit_node_replication_lag_seconds"), "the generic dialect measures no lag")
}
