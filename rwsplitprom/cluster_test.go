package rwsplitprom_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplitprom"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// openTracked opens a DB named name over s's cluster with col's observer,
// tracks it, and closes it when t ends.
func openTracked(t *testing.T, s *server, col *rwsplitprom.Collector, name string, opts ...rwsplit.Option) *rwsplit.DB {
	t.Helper()
	db, err := s.c.Open(append([]rwsplit.Option{rwsplit.WithObserver(col.Observer(name))}, opts...)...)
	require.NoError(t, err)
	col.Track(name, db)
	t.Cleanup(func() {
		col.Untrack(name)
		assert.NoError(t, db.Close())
	})
	return db
}

// waitEligible waits until both replicas take reads and their lag is
// known.
func waitEligible(t *testing.T, db *rwsplit.DB) {
	t.Helper()
	require.Eventually(t, func() bool {
		st := db.Stats()
		if st.Eligible != 2 {
			return false
		}
		for _, n := range st.Nodes {
			if n.Role == rwsplit.RoleReplica && !n.LagKnown {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond, "replicas eligible")
}

// expectKey is the labels of a calls_total series the test expects.
type expectKey struct{ node, role, op, reason string }

// TestCallsMatchTheServers runs a known mix of traffic on a real cluster
// and checks the scraped series against which server answered each call,
// as the server says.
func TestCallsMatchTheServers(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// The writes' table, asked directly.
		plain, err := sql.Open(s.c.DriverName(), s.c.DSN(0))
		require.NoError(t, err)
		defer plain.Close()
		_, err = plain.ExecContext(ctx, "DELETE FROM prom_writes")
		require.NoError(t, err)

		col, reg := newRegistry(t)
		const name = "orders"
		db := openTracked(t, s, col, name)
		waitEligible(t, db)
		primary := s.c.Addr(0)
		replicas := map[string]bool{s.c.Addr(1): true, s.c.Addr(2): true}
		role := func(node string) string {
			if node == primary {
				return "primary"
			}
			return "replica"
		}

		want := map[expectKey]int{}
		ask := func(ctx context.Context, q interface {
			QueryRowContext(context.Context, string, ...any) *sql.Row
		}) string {
			t.Helper()
			var port int
			require.NoError(t, q.QueryRowContext(ctx, s.portQuery).Scan(&port))
			return s.node(port)
		}

		const reads, writes, forced = 30, 5, 3
		for range reads {
			n := ask(ctx, db)
			require.True(t, replicas[n], "a plain read served by %s", n)
			want[expectKey{n, "replica", "query", "policy"}]++
		}
		for range writes {
			_, err := db.ExecContext(ctx, s.insert)
			require.NoError(t, err)
		}
		want[expectKey{primary, "primary", "exec", "rule"}] += writes
		for range forced {
			n := ask(rwsplit.WithPrimary(ctx), db)
			require.Equal(t, primary, n, "a WithPrimary read")
			want[expectKey{n, "primary", "query", "forced"}]++
		}
		// A session's read after its write: on a replica that has replayed
		// it, or on the primary.
		sctx := rwsplit.WithSession(ctx, rwsplit.NewSession())
		_, err = db.ExecContext(sctx, s.insert)
		require.NoError(t, err)
		want[expectKey{primary, "primary", "exec", "rule"}]++
		sessionNode := ask(sctx, db)
		want[expectKey{sessionNode, role(sessionNode), "query", "session"}]++
		// A read-only transaction: one begin, on a replica; its statements
		// are not calls of their own.
		tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		require.NoError(t, err)
		txNode := ask(ctx, tx)
		require.NoError(t, tx.Commit())
		require.True(t, replicas[txNode], "a read-only transaction on %s", txNode)
		want[expectKey{txNode, "replica", "begin", "policy"}]++
		// A read that fails on its replica.
		_, err = db.QueryContext(ctx, "SELECT * FROM prom_no_such_table")
		require.Error(t, err)

		// The primary says how many writes it took, and from whom.
		var written, fromPrimary int
		require.NoError(t, plain.QueryRowContext(ctx, "SELECT count(*) FROM prom_writes").Scan(&written))
		primaryPort := 0
		for port, n := range s.nodes {
			if n == primary {
				primaryPort = port
			}
		}
		require.NoError(t, plain.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) FROM prom_writes WHERE port = %d", primaryPort)).Scan(&fromPrimary))
		require.Equal(t, writes+1, written, "writes the primary took")
		require.Equal(t, written, fromPrimary, "every write on the primary")

		sc := gather(t, reg)
		const calls = "rwsplit_calls_total"
		total := 0
		for k, n := range want {
			total += n
			assert.Equal(t, float64(n), sc.one(t, calls, l("db", name, "node", k.node, "role", k.role, "op", k.op, "reason", k.reason, "outcome", "ok")), "%+v", k)
		}
		assert.Equal(t, float64(writes+1), sc.sum(calls, l("node", primary, "op", "exec", "outcome", "ok")))
		assert.Equal(t, float64(total), sc.sum(calls, l("outcome", "ok")), "no other successful calls")
		assert.Equal(t, 1.0, sc.sum(calls, l("db", name, "role", "replica", "op", "query", "reason", "policy", "outcome", "error")))
		assert.Equal(t, float64(total+1), sc.sum(calls, nil), "no other calls")
		assert.Equal(t, float64(total+1), sc.sum("rwsplit_call_duration_seconds", nil), "one latency per call")
		for node := range s.nodes {
			n := s.node(node)
			assert.Equal(t, sc.sum(calls, l("node", n, "op", "query")), sc.sum("rwsplit_call_duration_seconds", l("node", n, "op", "query")), n)
		}
		assert.Equal(t, float64(writes+1), sc.one(t, "rwsplit_call_duration_seconds", l("db", name, "node", primary, "op", "exec")))
		for v := range sc.values("node") {
			assert.Contains(t, []string{primary, s.c.Addr(1), s.c.Addr(2)}, v, "a node label")
		}

		// From Stats.
		assert.Equal(t, 1.0, sc.one(t, "rwsplit_info", l("db", name, "dialect", s.name)))
		assert.Equal(t, 2.0, sc.one(t, "rwsplit_eligible_replicas", l("db", name)))
		where := "primary"
		if replicas[sessionNode] {
			where = "replica"
		}
		assert.Equal(t, 1.0, sc.one(t, "rwsplit_session_reads_total", l("db", name, "where", where)))
		assert.Equal(t, 1.0, sc.sum("rwsplit_session_reads_total", l("db", name)))
		assert.GreaterOrEqual(t, sc.one(t, "rwsplit_position_reads_total", l("db", name)), 1.0)
		for port := range s.nodes {
			n := s.node(port)
			assert.Equal(t, 1.0, sc.one(t, "rwsplit_node_up", l("db", name, "node", n)), n)
			assert.Equal(t, 0.0, sc.one(t, "rwsplit_node_ejections_total", l("db", name, "node", n)), n)
			assert.Equal(t, 1.0, sc.one(t, "rwsplit_node_role", l("db", name, "node", n, "role", role(n))), n)
			assert.Equal(t, 0.0, sc.one(t, "rwsplit_node_in_flight_calls", l("db", name, "node", n)), n)
			assert.Equal(t, 0.0, sc.one(t, "rwsplit_node_fenced", l("db", name, "node", n)), n)
			if n == primary {
				assert.Zero(t, sc.count("rwsplit_node_replication_lag_seconds", l("node", n)), "no lag for the primary")
				continue
			}
			assert.Equal(t, 1.0, sc.one(t, "rwsplit_node_eligible", l("db", name, "node", n)), n)
			lag := sc.one(t, "rwsplit_node_replication_lag_seconds", l("db", name, "node", n))
			assert.True(t, lag >= 0 && lag < 5, "%s lag %v", n, lag)
			assert.Equal(t, 0.0, sc.one(t, "rwsplit_node_replication_broken", l("db", name, "node", n)), n)
		}

		requireNoSecrets(t, s, reg)
		problems, err := testutil.GatherAndLint(reg)
		require.NoError(t, err)
		assert.Empty(t, problems)
		requireLint(t, col)
	})
}

// requireNoSecrets fails t when a DSN, a password or a user:password pair
// of the cluster appears in a label value, or anywhere in the text
// exposition.
func requireNoSecrets(t *testing.T, s *server, reg prometheus.Gatherer) {
	t.Helper()
	secrets := []string{rwsplittest.AppPassword, rwsplittest.MonitorPassword, rwsplittest.ReplPassword, rwsplittest.AdminPassword,
		rwsplittest.AppUser + ":"}
	for n := range s.c.Nodes() {
		secrets = append(secrets, s.c.DSN(n))
	}
	sc := gather(t, reg)
	require.NotEmpty(t, sc.labelValues())
	for k, v := range sc.labelValues() {
		for _, secret := range secrets {
			require.NotContains(t, v, secret, "label %s", k)
		}
	}
	text, err := testutil.GatherAndFormat(reg, expfmt.TypeTextPlain)
	require.NoError(t, err)
	for _, secret := range secrets {
		require.NotContains(t, string(text), secret)
	}
}

// TestFrozenReplica freezes a replica under load with hedging on: the
// reads caught on it are hedged to the other replica, the probes take it
// out (node_up 0, an ejection), and after a thaw it comes back.
func TestFrozenReplica(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		col, reg := newRegistry(t)
		const name = "frozen"
		db := openTracked(t, s, col, name,
			rwsplit.WithHealthCheckInterval(200*time.Millisecond), rwsplit.WithHealthCheckTimeout(300*time.Millisecond),
			rwsplit.WithPolicy(rwsplit.RoundRobin()),
			rwsplit.WithHedging(rwsplit.Hedging{Floor: 20 * time.Millisecond, Ceiling: 100 * time.Millisecond, Budget: 1}))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		waitEligible(t, db)
		const victim = 2
		frozen, other := s.c.Addr(victim), s.c.Addr(1)

		// Readers from before the freeze until after the ejection, each
		// tallying the node that answered by the server's word.
		var mu sync.Mutex
		answered := map[string]int{}
		failures := 0
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					var port int
					err := db.QueryRowContext(rctx, s.portQuery).Scan(&port)
					cancel()
					mu.Lock()
					if err != nil {
						failures++
					} else {
						answered[s.node(port)]++
					}
					mu.Unlock()
				}
			})
		}
		thawed := false
		thaw := func() {
			if !thawed {
				thawed = true
				assert.NoError(t, s.c.Thaw(context.Background(), victim))
			}
		}
		defer thaw()
		time.Sleep(300 * time.Millisecond)
		require.NoError(t, s.c.Freeze(ctx, victim))
		require.Eventually(t, func() bool {
			sc := gather(t, reg)
			return sc.one(t, "rwsplit_node_up", l("db", name, "node", frozen)) == 0
		}, 20*time.Second, 20*time.Millisecond, "the frozen replica taken out")
		time.Sleep(200 * time.Millisecond) // reads after the ejection
		close(stop)
		wg.Wait()

		sc := gather(t, reg)
		assert.Equal(t, 0.0, sc.one(t, "rwsplit_node_up", l("db", name, "node", frozen)))
		assert.Equal(t, 0.0, sc.one(t, "rwsplit_node_eligible", l("db", name, "node", frozen)))
		assert.GreaterOrEqual(t, sc.one(t, "rwsplit_node_ejections_total", l("db", name, "node", frozen)), 1.0)
		assert.GreaterOrEqual(t, sc.one(t, "rwsplit_node_state_changes_total", l("db", name, "node", frozen, "state", "ejected")), 1.0)
		assert.Equal(t, 1.0, sc.one(t, "rwsplit_node_up", l("db", name, "node", other)))
		assert.Equal(t, 1.0, sc.one(t, "rwsplit_eligible_replicas", l("db", name)))

		// Every read that succeeded is counted on the node that says it
		// answered it.
		mu.Lock()
		defer mu.Unlock()
		assert.Zero(t, failures, "reads failed")
		for node, n := range answered {
			assert.Equal(t, float64(n), sc.sum("rwsplit_calls_total", l("db", name, "node", node, "op", "query", "outcome", "ok")), node)
		}
		// Hedges: sent by reads caught on the frozen replica, won by
		// another node (the other replica, or the primary within the
		// fallback limit), and every won read counted with reason hedge
		// where it was won.
		assert.GreaterOrEqual(t, sc.one(t, "rwsplit_node_hedges_total", l("db", name, "node", frozen)), 1.0, "reads on the frozen replica hedged")
		wins := sc.sum("rwsplit_node_hedge_wins_total", l("db", name))
		assert.GreaterOrEqual(t, wins, 1.0)
		assert.Equal(t, wins, sc.sum("rwsplit_calls_total", l("db", name, "reason", "hedge", "outcome", "ok")))
		assert.Zero(t, sc.sum("rwsplit_calls_total", l("db", name, "node", s.c.Addr(0), "reason", "policy")), "no read picked the primary")
		requireLint(t, col)

		thaw()
		require.Eventually(t, func() bool {
			sc := gather(t, reg)
			return sc.one(t, "rwsplit_node_up", l("db", name, "node", frozen)) == 1
		}, 20*time.Second, 20*time.Millisecond, "the thawed replica back")
		sc = gather(t, reg)
		assert.GreaterOrEqual(t, sc.one(t, "rwsplit_node_state_changes_total", l("db", name, "node", frozen, "state", "reinstated")), 1.0)
	})
}
