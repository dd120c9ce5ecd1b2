package rwsplitotel_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplitotel"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// callKind is what the tests expect of a call: the node the server named,
// the operation and the route reason.
type callKind struct {
	node, op, reason string
}

// TestCallsMatchServers runs a known mix of calls and checks the
// histogram, the counter and the spans against what the servers say
// answered each call.
func TestCallsMatchServers(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			h := newHarness(t, e, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			primary := h.c.Addr(0)
			direct := h.primaryDB()
			_, err := direct.ExecContext(ctx, e.create)
			require.NoError(t, err)
			run := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())

			want := map[callKind]int{}
			// Plain reads, each in a span of its own: a replica the
			// policy picked.
			const reads = 12
			readNodes := map[string]string{} // span name -> node
			for i := range reads {
				sctx, span := h.tracer.Start(ctx, fmt.Sprintf("read-%d", i))
				node := h.whoAnswered(sctx, h.db)
				span.End()
				require.NotEqual(t, primary, node, "a plain read with healthy replicas went to the primary")
				readNodes[fmt.Sprintf("read-%d", i)] = node
				want[callKind{node, "query", "policy"}]++
			}
			// Reads forced to the primary.
			for range 4 {
				node := h.whoAnswered(rwsplit.WithPrimary(ctx), h.db)
				require.Equal(t, primary, node)
				want[callKind{node, "query", "forced"}]++
			}
			// Writes; the node that ran them is counted below from what
			// the servers recorded.
			for range 4 {
				_, err := h.db.ExecContext(ctx, e.insert, run)
				require.NoError(t, err)
			}
			// Session reads after a session write: a replica that has
			// replayed it, or the primary.
			sessionNodes := map[string]int{}
			sessionRead := func(sctx context.Context) string {
				node := h.whoAnswered(sctx, h.db)
				want[callKind{node, "query", "session"}]++
				sessionNodes[node]++
				return node
			}
			for range 3 {
				sctx := rwsplit.WithSession(ctx, rwsplit.NewSession())
				_, err := h.db.ExecContext(sctx, e.insert, run)
				require.NoError(t, err)
				sessionRead(sctx)
			}
			// The last session's reads go to a replica once the probes
			// have seen one replay its write.
			sctx := rwsplit.WithSession(ctx, rwsplit.NewSession())
			_, err = h.db.ExecContext(sctx, e.insert, run)
			require.NoError(t, err)
			for i := 0; sessionRead(sctx) == primary; i++ {
				require.Less(t, i, 100, "no session read went to a replica")
				time.Sleep(50 * time.Millisecond)
			}
			sessionReads := 0
			for _, n := range sessionNodes {
				sessionReads += n
			}
			// Read-only transactions, on a replica.
			for range 2 {
				tx, err := h.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
				require.NoError(t, err)
				node := h.whoAnswered(ctx, tx)
				require.NoError(t, tx.Commit())
				require.NotEqual(t, primary, node)
				want[callKind{node, "begin", "policy"}]++
			}
			// A Conn, on the primary.
			conn, err := h.db.Conn(ctx)
			require.NoError(t, err)
			node := h.whoAnswered(ctx, conn)
			require.NoError(t, conn.Close())
			require.Equal(t, primary, node)
			want[callKind{node, "conn", "rule"}]++

			// What the servers say ran the writes.
			rows, err := direct.QueryContext(ctx, e.count, run)
			require.NoError(t, err)
			writes := 0
			for rows.Next() {
				var port, n int
				require.NoError(t, rows.Scan(&port, &n))
				node, ok := h.byPort[port]
				require.True(t, ok, "write recorded by unknown port %d", port)
				want[callKind{node, "exec", "rule"}] += n
				writes += n
			}
			require.NoError(t, rows.Err())
			require.Equal(t, 8, writes)

			ms := h.collect()
			got := map[callKind]int{}
			for _, p := range points(ms["db.client.operation.duration"]) {
				k := callKind{str(p.attrs, rwsplitotel.NodeNameKey), str(p.attrs, "db.operation.name"), str(p.attrs, rwsplitotel.RouteReasonKey)}
				got[k] += int(p.value)
				host, port, err := net.SplitHostPort(k.node)
				require.NoError(t, err)
				assert.Equal(t, host, str(p.attrs, "server.address"), "%v", k)
				assert.Equal(t, port, str(p.attrs, "server.port"), "%v", k)
				assert.Equal(t, e.system, str(p.attrs, "db.system.name"), "%v", k)
				assert.Equal(t, roleOf(k.node, primary), str(p.attrs, rwsplitotel.NodeRoleKey), "%v", k)
				assert.Empty(t, str(p.attrs, "error.type"), "%v", k)
				assert.Empty(t, str(p.attrs, rwsplitotel.AttemptKey), "%v", k)
				assert.Positive(t, p.sum, "%v", k)
			}
			assert.Equal(t, want, got, "db.client.operation.duration: attempts by node, operation and reason")

			calls := map[callKind]int{}
			for _, p := range points(ms["rwsplit.calls"]) {
				require.Equal(t, rwsplitotel.OutcomeOK, str(p.attrs, rwsplitotel.OutcomeKey))
				calls[callKind{str(p.attrs, rwsplitotel.NodeNameKey), str(p.attrs, "db.operation.name"), str(p.attrs, rwsplitotel.RouteReasonKey)}] += int(p.value)
			}
			assert.Equal(t, want, calls, "rwsplit.calls")

			// The span of each plain read names the node its server
			// named.
			seen := 0
			for _, s := range h.spans.Ended() {
				node, ok := readNodes[s.Name()]
				if !ok {
					continue
				}
				seen++
				assert.Equal(t, node, spanAttr(s, rwsplitotel.NodeNameKey), s.Name())
				assert.Equal(t, "replica", spanAttr(s, rwsplitotel.NodeRoleKey), s.Name())
				assert.Equal(t, "policy", spanAttr(s, rwsplitotel.RouteReasonKey), s.Name())
				host, port, _ := net.SplitHostPort(node)
				assert.Equal(t, host, spanAttr(s, "server.address"), s.Name())
				assert.Equal(t, port, spanAttr(s, "server.port"), s.Name())
			}
			assert.Equal(t, reads, seen)

			// Session reads by where they went, from Stats, agree with
			// the servers.
			ms = h.collect()
			target := map[string]int{}
			for _, p := range points(ms["rwsplit.session.reads"]) {
				target[str(p.attrs, rwsplitotel.SessionTargetKey)] += int(p.value)
			}
			assert.Equal(t, sessionNodes[primary], target["primary"], "session reads on the primary")
			assert.Equal(t, sessionReads-sessionNodes[primary], target["replica"], "session reads on replicas")
			assert.Positive(t, target["replica"])
		})
	}
}

func roleOf(node, primary string) string {
	if node == primary {
		return "primary"
	}
	return "replica"
}

// TestTrackExportsNodes checks the instruments observed from Stats: a
// gauge for every node, counters equal to Stats, and nothing after
// Unregister.
func TestTrackExportsNodes(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			h := newHarness(t, e, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for range 5 {
				h.whoAnswered(ctx, h.db)
			}
			// Wait until the probes have measured every replica's lag.
			require.Eventually(t, func() bool {
				for _, n := range h.db.Stats().Nodes {
					if n.Role == rwsplit.RoleReplica && !n.LagKnown {
						return false
					}
				}
				return true
			}, 15*time.Second, 20*time.Millisecond)

			ms := h.collect()
			s := h.db.Stats()
			require.Len(t, s.Nodes, h.c.Nodes())
			up := byNode(t, ms, "rwsplit.node.up")
			primary := byNode(t, ms, "rwsplit.node.primary")
			eligible := byNode(t, ms, "rwsplit.node.eligible")
			fenced := byNode(t, ms, "rwsplit.node.fenced")
			inFlight := byNode(t, ms, "rwsplit.node.in_flight")
			lag := byNode(t, ms, "rwsplit.node.lag")
			broken := byNode(t, ms, "rwsplit.node.replication_broken")
			ejections := byNode(t, ms, "rwsplit.node.ejections")
			for i, n := range s.Nodes {
				require.Equal(t, h.c.Addr(i), n.Name)
				role := "replica"
				if i == 0 {
					role = "primary"
				}
				for name, m := range map[string]map[string]point{"up": up, "primary": primary, "eligible": eligible, "fenced": fenced, "in_flight": inFlight} {
					p, ok := m[n.Name]
					if assert.True(t, ok, "%s: no rwsplit.node.%s", n.Name, name) {
						assert.Equal(t, role, str(p.attrs, rwsplitotel.NodeRoleKey), "%s %s", n.Name, name)
						assert.Equal(t, e.system, str(p.attrs, "db.system.name"))
					}
				}
				assert.Equal(t, 1.0, up[n.Name].value, n.Name)
				assert.Equal(t, b2f(i == 0), primary[n.Name].value, n.Name)
				assert.Equal(t, b2f(n.Eligible), eligible[n.Name].value, n.Name)
				assert.Equal(t, 0.0, fenced[n.Name].value, n.Name)
				assert.Equal(t, float64(n.InFlight), inFlight[n.Name].value, n.Name)
				assert.Equal(t, float64(n.Ejections), ejections[n.Name].value, n.Name)
				if i == 0 {
					assert.NotContains(t, lag, n.Name, "the primary has no lag")
					assert.NotContains(t, broken, n.Name)
				} else if assert.Contains(t, lag, n.Name) {
					assert.GreaterOrEqual(t, lag[n.Name].value, 0.0)
					assert.Less(t, lag[n.Name].value, 30.0)
					assert.Equal(t, 0.0, broken[n.Name].value, n.Name)
				}
			}
			// Every node's pool.
			pools := map[string]bool{}
			for _, p := range points(ms["db.client.connection.count"]) {
				pools[str(p.attrs, "db.client.connection.pool.name")] = true
				assert.Contains(t, []string{"idle", "used"}, str(p.attrs, "db.client.connection.state"))
			}
			assert.Len(t, pools, h.c.Nodes())
			waits := map[string]bool{}
			for _, p := range points(ms["rwsplit.pool.waits"]) {
				waits[str(p.attrs, "db.client.connection.pool.name")] = true
			}
			assert.Equal(t, pools, waits)
			// The DB's gauges.
			info := points(ms["rwsplit.info"])
			if assert.Len(t, info, 1) {
				assert.Equal(t, e.dialect, str(info[0].attrs, rwsplitotel.DialectKey))
				assert.Equal(t, s.Policy, str(info[0].attrs, rwsplitotel.PolicyKey))
			}
			if p := points(ms["rwsplit.replicas.eligible"]); assert.Len(t, p, 1) {
				assert.Equal(t, float64(s.Eligible), p[0].value)
			}
			promotions := map[string]float64{}
			for _, p := range points(ms["rwsplit.promotions"]) {
				promotions[str(p.attrs, rwsplitotel.PromotionOutcomeKey)] = p.value
			}
			assert.Equal(t, map[string]float64{"promoted": 0, "failed": 0}, promotions)
			// The DB's counters equal Stats (nothing runs meanwhile).
			for name, want := range map[string]uint64{
				"rwsplit.fallback.reads":          s.Fallbacks,
				"rwsplit.fallback.refused":        s.FallbackRejected,
				"rwsplit.primary.changes":         s.PrimaryChanges,
				"rwsplit.session.rejected_tokens": s.TokensRejected,
				"rwsplit.session.position_reads":  s.PositionReads,
			} {
				ps := points(ms[name])
				if assert.Len(t, ps, 1, name) {
					assert.Equal(t, float64(want), ps[0].value, name)
				}
			}

			require.NoError(t, h.reg.Unregister())
			ms = h.collect()
			assert.Empty(t, points(ms["rwsplit.node.up"]), "observed after Unregister")
		})
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// TestFailedCall checks a statement the server rejects: error.type and,
// on PostgreSQL, db.response.status_code, with the outcome "error".
func TestFailedCall(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			h := newHarness(t, e, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rows, err := h.db.QueryContext(ctx, "SELECT * FROM otel_no_such_table")
			if err == nil {
				rows.Close()
			}
			require.Error(t, err)
			ms := h.collect()
			var found bool
			for _, p := range points(ms["rwsplit.calls"]) {
				if str(p.attrs, rwsplitotel.OutcomeKey) != rwsplitotel.OutcomeError {
					continue
				}
				found = true
				switch e.name {
				case "postgres":
					assert.Equal(t, "42P01", str(p.attrs, "error.type"))
					assert.Equal(t, "42P01", str(p.attrs, "db.response.status_code"))
				default:
					assert.Equal(t, "*mysql.MySQLError", str(p.attrs, "error.type"))
				}
			}
			assert.True(t, found, "no call with outcome error")
		})
	}
}

// TestEjectionAndReinstatement freezes a replica: its probes time out,
// it is ejected (a state change, an ejection in Stats, up 0), and comes
// back when thawed.
func TestEjectionAndReinstatement(t *testing.T) {
	e := engines[0]
	h := newHarness(t, e, nil, rwsplit.WithHealthCheckTimeout(200*time.Millisecond), rwsplit.WithHysteresis(2, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	frozen := h.c.Addr(2)
	require.NoError(t, h.c.Freeze(ctx, 2))
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			require.NoError(t, h.c.Thaw(context.Background(), 2))
		}
	}
	defer thaw()

	require.Eventually(t, func() bool {
		for _, n := range h.db.Stats().Nodes {
			if n.Name == frozen {
				return !n.Up
			}
		}
		return false
	}, 15*time.Second, 20*time.Millisecond)
	ms := h.collect()
	assert.Equal(t, 0.0, byNode(t, ms, "rwsplit.node.up")[frozen].value)
	assert.GreaterOrEqual(t, byNode(t, ms, "rwsplit.node.ejections")[frozen].value, 1.0)
	assert.GreaterOrEqual(t, stateChanges(ms, frozen, "ejected"), 1.0)

	thaw()
	require.Eventually(t, func() bool {
		for _, n := range h.db.Stats().Nodes {
			if n.Name == frozen {
				return n.Up
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond)
	ms = h.collect()
	assert.Equal(t, 1.0, byNode(t, ms, "rwsplit.node.up")[frozen].value)
	assert.GreaterOrEqual(t, stateChanges(ms, frozen, "reinstated"), 1.0)
}

func stateChanges(ms map[string]metricdata.Metrics, node, state string) float64 {
	var n float64
	for _, p := range points(ms["rwsplit.node.state_changes"]) {
		if str(p.attrs, rwsplitotel.NodeNameKey) == node && str(p.attrs, rwsplitotel.NodeStateKey) == state {
			n += p.value
		}
	}
	return n
}

// TestNoSecrets looks at every attribute value the Observer exported,
// on metrics and spans, for anything from a DSN.
func TestNoSecrets(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			h := newHarness(t, e, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			sctx, span := h.tracer.Start(ctx, "mix")
			h.whoAnswered(sctx, h.db)
			h.whoAnswered(rwsplit.WithPrimary(sctx), h.db)
			if rows, err := h.db.QueryContext(sctx, "SELECT * FROM otel_no_such_table"); err == nil {
				rows.Close()
			}
			span.End()

			forbidden := []string{
				rwsplittest.AppPassword, rwsplittest.AppUser + ":", rwsplittest.AdminPassword,
				rwsplittest.MonitorPassword, rwsplittest.ReplPassword, "secret",
				"://", "@tcp(", "sslmode", "parseTime", "password",
			}
			check := func(where string, kv attribute.KeyValue) {
				v := kv.Value.Emit()
				for _, f := range forbidden {
					assert.NotContains(t, v, f, "%s: %s=%q", where, kv.Key, v)
				}
			}
			n := 0
			for name, m := range h.collect() {
				for _, p := range points(m) {
					for _, kv := range p.attrs.ToSlice() {
						check(name, kv)
						n++
					}
				}
			}
			for _, s := range h.spans.Ended() {
				for _, kv := range s.Attributes() {
					check("span "+s.Name(), kv)
					n++
				}
				for _, ev := range s.Events() {
					for _, kv := range ev.Attributes {
						check("span event "+ev.Name, kv)
						n++
					}
				}
			}
			assert.Greater(t, n, 100, "too few attributes looked at")
			// And the DSNs really hold what is looked for.
			for i := range h.c.Nodes() {
				assert.True(t, strings.Contains(h.c.DSN(i), rwsplittest.AppPassword))
				_, port, _ := net.SplitHostPort(h.c.Addr(i))
				_, err := strconv.Atoi(port)
				assert.NoError(t, err)
			}
		})
	}
}
