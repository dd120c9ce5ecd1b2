package rwsplit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit/internal/fakedriver"
)

// routed opens the routing *sql.DB of c's DB, closed at the end.
func routed(t *testing.T, c *cluster) *sql.DB {
	t.Helper()
	r := sql.OpenDB(c.db.Connector())
	t.Cleanup(func() { r.Close() })
	return r
}

// quietCluster is newCluster with probes on handles of their own, so
// that the nodes' pools see only the test's calls.
func quietCluster(t *testing.T, replicas int) *cluster {
	t.Helper()
	c := &cluster{primary: fakedriver.NewServer("p")}
	handles, monitors := []*sql.DB{}, []*sql.DB{}
	for i := range replicas {
		s := fakedriver.NewServer("r" + string(rune('1'+i)))
		c.replicas = append(c.replicas, s)
		handles = append(handles, s.DB())
		monitors = append(monitors, s.DB())
	}
	db, err := New(c.primary.DB(), handles, WithDialect("postgres"), WithMonitor(c.primary.DB(), monitors...))
	if err != nil {
		t.Fatal(err)
	}
	c.db = db
	t.Cleanup(func() { db.Close() })
	return c
}

// node runs query through q and returns the node that answered.
func node(t *testing.T, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, query string, args ...any) string {
	t.Helper()
	var n string
	if err := q.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestConnectorRoutes(t *testing.T) {
	c := newCluster(t, 2)
	r := routed(t, c)
	ctx := context.Background()
	seen := map[string]int{}
	for range 20 {
		seen[node(t, r, "SELECT node FROM t WHERE id = $1", 1)]++
	}
	if seen["p"] != 0 || seen["r1"] == 0 || seen["r2"] == 0 {
		t.Errorf("reads through the routing *sql.DB went to %v, want both replicas and not the primary", seen)
	}
	if n := node(t, r, "INSERT INTO t VALUES (1) RETURNING node"); n != "p" {
		t.Errorf("writing query ran on %s, want p", n)
	}
	if _, err := r.ExecContext(ctx, "UPDATE t SET a = 1"); err != nil {
		t.Fatal(err)
	}
	if got := c.primary.Count(fakedriver.Exec); got != 1 {
		t.Errorf("primary served %d Execs, want 1", got)
	}
	if n := node(t, wrapCtx{r, WithPrimary(ctx)}, "SELECT node"); n != "p" {
		t.Errorf("WithPrimary read ran on %s, want p", n)
	}
	// The routing *sql.DB shares the DB's nodes: its reads count there.
	var reads uint64
	for _, s := range c.db.Stats().Nodes {
		reads += s.Reads
	}
	if reads < 20 {
		t.Errorf("the DB counted %d reads, want the routing *sql.DB's 20 at least", reads)
	}
}

// wrapCtx runs QueryRowContext with a fixed context.
type wrapCtx struct {
	db  *sql.DB
	ctx context.Context
}

func (w wrapCtx) QueryRowContext(_ context.Context, q string, args ...any) *sql.Row {
	return w.db.QueryRowContext(w.ctx, q, args...)
}

func TestConnectorTransactions(t *testing.T) {
	c := quietCluster(t, 2)
	r := routed(t, c)
	ctx := context.Background()
	tx, err := r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	first := node(t, tx, "SELECT node")
	for range 5 {
		if n := node(t, tx, "SELECT node"); n != first || n == "p" {
			t.Errorf("read-only transaction moved from %s to %s", first, n)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	tx, err = r.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := node(t, tx, "SELECT node"); n != "p" {
		t.Errorf("read-write transaction's read ran on %s, want p", n)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	// The node connection went back to its pool with the transaction.
	waitFor(t, 0, "the primary's connection back in its pool", func() bool {
		return c.db.Primary().Stats().InUse == 0
	})
}

// A statement that changes the session pins the routing connection to one
// primary connection, seen by the statements after it on that *sql.Conn;
// the connection is closed, not pooled, when the *sql.Conn is.
func TestConnectorPinsSessionState(t *testing.T) {
	c := quietCluster(t, 2)
	r := routed(t, c)
	ctx := context.Background()
	conn, err := r.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := node(t, conn, "SELECT node"); n == "p" {
		t.Errorf("a read on a fresh routing connection ran on the primary")
	}
	if _, err := conn.ExecContext(ctx, "SET search_path = app"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if n := node(t, conn, "SELECT node"); n != "p" {
			t.Errorf("a read after SET ran on %s, want the pinned primary", n)
		}
	}
	if got := c.db.Primary().Stats().InUse; got != 1 {
		t.Errorf("primary connections in use while pinned: %d, want 1", got)
	}
	opened := c.primary.Count(fakedriver.Connect)
	conn.Close()
	st := c.db.Primary().Stats()
	if st.InUse != 0 || st.Idle != 0 {
		t.Errorf("after the pinned connection closed the primary pool has %d in use and %d idle, want the connection closed", st.InUse, st.Idle)
	}
	// The next session starts clean, on a new primary connection.
	conn, err = r.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT set_config('a', 'b', false)"); err != nil {
		t.Fatal(err)
	}
	if c.primary.Count(fakedriver.Connect) == opened {
		t.Error("the second session reused the first one's primary connection")
	}
}

func TestDBConnIsPinnedToThePrimary(t *testing.T) {
	c := quietCluster(t, 2)
	ctx := context.Background()
	conn, err := c.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if n := node(t, conn, "SELECT node"); n != "p" {
			t.Errorf("Conn's read ran on %s, want p", n)
		}
	}
	conn.Close()
	st := c.db.Primary().Stats()
	if st.InUse != 0 || st.Idle != 1 {
		t.Errorf("after Conn closed the primary pool has %d in use and %d idle, want its connection pooled", st.InUse, st.Idle)
	}
}

// A prepared read runs on a replica chosen at each execution, prepared
// once per node; inside a transaction, through tx.StmtContext, it runs on
// the transaction's node.
func TestPreparedStatementsRoutePerExecution(t *testing.T) {
	c := newCluster(t, 2)
	ctx := context.Background()
	stmt, err := c.db.PrepareContext(ctx, "SELECT node FROM t WHERE id = $1")
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	if got := c.primary.Count(fakedriver.Prepare) + c.replicas[0].Count(fakedriver.Prepare) + c.replicas[1].Count(fakedriver.Prepare); got != 0 {
		t.Errorf("PrepareContext prepared on %d nodes before any execution", got)
	}
	seen := map[string]int{}
	for range 40 {
		var n string
		if err := stmt.QueryRowContext(ctx, 1).Scan(&n); err != nil {
			t.Fatal(err)
		}
		seen[n]++
	}
	if seen["p"] != 0 || seen["r1"] == 0 || seen["r2"] == 0 {
		t.Errorf("prepared reads went to %v, want both replicas", seen)
	}
	for _, s := range c.replicas {
		if got := s.Count(fakedriver.Prepare); got < 1 || got > 2 {
			t.Errorf("%s prepared the statement %d times for 40 executions", s.Name(), got)
		}
	}

	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var n string
	if err := tx.StmtContext(ctx, stmt).QueryRowContext(ctx, 1).Scan(&n); err != nil || n != "p" {
		t.Errorf("prepared read in a read-write transaction ran on %q (%v), want p", n, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	w, err := c.db.PrepareContext(ctx, "UPDATE t SET a = $1")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.ExecContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := c.primary.Count(fakedriver.Exec); got != 1 {
		t.Errorf("prepared write: primary served %d Execs, want 1", got)
	}
}

// A prepared read survives its replica failing: the execution is retried
// on another node.
func TestPreparedReadSurvivesANodeFailure(t *testing.T) {
	c := newCluster(t, 2)
	ctx := context.Background()
	stmt, err := c.db.PrepareContext(ctx, "SELECT node")
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	for range 4 {
		var n string
		if err := stmt.QueryRowContext(ctx).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	c.replicas[0].SetDown(true)
	for i := range 10 {
		var n string
		if err := stmt.QueryRowContext(ctx).Scan(&n); err != nil {
			t.Fatalf("read %d with r1 down: %v", i, err)
		}
		if n == "r1" {
			t.Fatalf("read %d served by r1, which is down", i)
		}
	}
}

func TestConnectorAfterClose(t *testing.T) {
	c := newCluster(t, 1)
	r := sql.OpenDB(c.db.Connector())
	ctx := context.Background()
	stmt, err := c.db.PrepareContext(ctx, "SELECT node")
	if err != nil {
		t.Fatal(err)
	}
	// Closing a *sql.DB made from the connector leaves the DB open.
	node(t, r, "SELECT node")
	r.Close()
	node(t, c.db, "SELECT node")

	r = sql.OpenDB(c.db.Connector())
	defer r.Close()
	c.db.Close()
	if err := r.PingContext(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping through the connector of a closed DB: %v, want ErrClosed", err)
	}
	if _, err := r.ExecContext(ctx, "UPDATE t SET a = 1"); !errors.Is(err, ErrClosed) {
		t.Errorf("Exec through the connector of a closed DB: %v, want ErrClosed", err)
	}
	var n string
	if err := stmt.QueryRowContext(ctx).Scan(&n); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("statement prepared before Close, run after: %v, want a closed error", err)
	}
	if _, err := c.db.Conn(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Conn after Close: %v, want ErrClosed", err)
	}
	if _, err := c.db.BeginTx(ctx, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("BeginTx after Close: %v, want ErrClosed", err)
	}
	if _, err := c.db.PrepareContext(ctx, "SELECT 1"); !errors.Is(err, ErrClosed) {
		t.Errorf("PrepareContext after Close: %v, want ErrClosed", err)
	}
}

// Named arguments and the driver's own argument types reach the node.
func TestConnectorPassesArguments(t *testing.T) {
	c := newCluster(t, 1)
	r := routed(t, c)
	if _, err := r.Exec("UPDATE t SET a = @a", sql.Named("a", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Exec("UPDATE t SET a = $1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n := c.primary.Count(fakedriver.Exec); n != 2 {
		t.Errorf("primary ran %d Execs, want 2", n)
	}
}

// stmtQuerier runs a prepared statement as a querier: the query text is
// the statement's.
type stmtQuerier struct{ st *sql.Stmt }

func (s stmtQuerier) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return s.st.QueryContext(ctx, args...)
}

func (s stmtQuerier) ExecContext(ctx context.Context, _ string, args ...any) (sql.Result, error) {
	return s.st.ExecContext(ctx, args...)
}

// passthrough is the least a routing *sql.DB can be: a driver whose
// connections send every statement to one node's *sql.DB and hand its rows
// back as routingRows, with no routing at all. BenchmarkConnector runs it
// too, as the floor of a second database/sql layer.
type passthrough struct{ db *sql.DB }

type passthroughConn struct{ db *sql.DB }

func (p passthrough) Connect(context.Context) (driver.Conn, error) { return passthroughConn(p), nil }
func (p passthrough) Driver() driver.Driver                        { return routingDriver{} }
func (passthroughConn) Prepare(string) (driver.Stmt, error)        { return nil, errors.New("not here") }
func (passthroughConn) Close() error                               { return nil }
func (passthroughConn) Begin() (driver.Tx, error)                  { return nil, errors.New("not here") }
func (passthroughConn) CheckNamedValue(*driver.NamedValue) error   { return nil }

func plainArgs(nv []driver.NamedValue) []any {
	args := make([]any, len(nv))
	for i, v := range nv {
		args[i] = v.Value
	}
	return args
}

func (p passthroughConn) QueryContext(ctx context.Context, q string, nv []driver.NamedValue) (driver.Rows, error) {
	rows, err := p.db.QueryContext(ctx, q, plainArgs(nv)...)
	if err != nil {
		return nil, err
	}
	return newRoutingRows(rows)
}

func (p passthroughConn) ExecContext(ctx context.Context, q string, nv []driver.NamedValue) (driver.Result, error) {
	return p.db.ExecContext(ctx, q, plainArgs(nv)...)
}

// BenchmarkConnector measures the routing *sql.DB (DB.Connector) against
// the raw *sql.DB of the node it sends the call to (the one replica for a
// read, the primary for a write), one goroutine alternating between the
// two in blocks, with a driver that answers at once and one that takes
// 100µs per call. Prepared compares a statement from DB.PrepareContext
// with one prepared on the replica's own *sql.DB. It reports each side's
// ns/op and their ratio; the allocations per call are in the Allocs
// sub-benchmarks, each side alone, with the passthrough floor beside them.
func BenchmarkConnector(b *testing.B) {
	for _, latency := range []time.Duration{0, 100 * time.Microsecond} {
		c := newCluster(b, 1)
		c.primary.SetLatency(latency)
		c.replicas[0].SetLatency(latency)
		routedDB := sql.OpenDB(c.db.Connector())
		routedDB.SetMaxIdleConns(8)
		b.Cleanup(func() { routedDB.Close() })
		ctx := context.Background()
		rawStmt, err := c.db.nodeList()[1].db.PrepareContext(ctx, benchQuery)
		if err != nil {
			b.Fatal(err)
		}
		routedStmt, err := c.db.PrepareContext(ctx, benchQuery)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { rawStmt.Close(); routedStmt.Close() })
		query := func(q querier) error {
			rows, err := q.QueryContext(ctx, benchQuery, 1)
			if err != nil {
				return err
			}
			for rows.Next() {
			}
			return rows.Close()
		}
		exec := func(q querier) error {
			_, err := q.ExecContext(ctx, "UPDATE users SET name = $1 WHERE id = $2", "a", 1)
			return err
		}
		pass := map[string]*sql.DB{
			"Query": sql.OpenDB(passthrough{c.db.nodeList()[1].db}),
			"Exec":  sql.OpenDB(passthrough{c.db.nodeList()[0].db}),
		}
		for _, p := range pass {
			b.Cleanup(func() { p.Close() })
		}
		sides := map[string][2]querier{
			"Query":    {c.db.nodeList()[1].db, routedDB},
			"Exec":     {c.db.nodeList()[0].db, routedDB},
			"Prepared": {stmtQuerier{rawStmt}, stmtQuerier{routedStmt}},
		}
		do := map[string]func(querier) error{"Query": query, "Exec": exec, "Prepared": query}
		for _, op := range []string{"Query", "Exec", "Prepared"} {
			b.Run(fmt.Sprintf("%s/latency=%v", op, latency), func(b *testing.B) {
				var t overheadTally
				s := sides[op]
				for i := 0; i < b.N; {
					side := (i / overheadBlock) % 2
					start := time.Now()
					j := 0
					for ; j < overheadBlock && i < b.N; j, i = j+1, i+1 {
						if err := do[op](s[side]); err != nil {
							b.Fatal(err)
						}
					}
					t.add(side, time.Since(start), j)
				}
				if t.n[0] > 0 && t.n[1] > 0 {
					raw := float64(t.d[0]) / float64(t.n[0])
					routed := float64(t.d[1]) / float64(t.n[1])
					b.ReportMetric(raw, "raw-ns/op")
					b.ReportMetric(routed, "routed-ns/op")
					b.ReportMetric(routed/raw, "x-raw")
				}
			})
			if latency != 0 {
				continue
			}
			alone := map[string]querier{"raw": sides[op][0], "routed": sides[op][1]}
			if p := pass[op]; p != nil {
				alone["passthrough"] = p
			}
			for _, side := range []string{"raw", "passthrough", "routed"} {
				q := alone[side]
				if q == nil {
					continue
				}
				b.Run(fmt.Sprintf("Allocs/%s/%s", op, side), func(b *testing.B) {
					b.ReportAllocs()
					for range b.N {
						if err := do[op](q); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// A schema change in a transaction of the routing *sql.DB keeps reads on
// the primary from the change until the floor its end sets is passed.
func TestConnectorTransactionSchemaChange(t *testing.T) {
	c := newCluster(t, 2, WithDialect("generic"), WithNodeNames("p", "r1", "r2"), WithSessionWindow(time.Minute))
	ctx := context.Background()
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "CREATE TABLE notes (id int)"); err != nil {
		t.Fatal(err)
	}
	if n := node(t, c.db, "SELECT node"); n != "p" {
		t.Errorf("a read during the migration's transaction ran on %s, want p", n)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if !c.db.Stats().SchemaFloor {
		t.Error("no schema floor after a transaction that created a table")
	}
	if n := node(t, c.db, "SELECT node"); n != "p" {
		t.Errorf("a read after the migration ran on %s, want p until the replicas have it", n)
	}
}

// A transaction whose node dies ends with the driver's error, without a
// panic; the routing connection is discarded and the DB goes on.
func TestConnectorTransactionOnDeadNode(t *testing.T) {
	c := newCluster(t, 2)
	ctx := context.Background()
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := node(t, tx, "SELECT node"); n != "p" {
		t.Fatalf("transaction on %s, want p", n)
	}
	c.primary.SetDown(true)
	var n string
	if err := tx.QueryRowContext(ctx, "SELECT node").Scan(&n); err == nil {
		t.Error("a read in a transaction on a dead node succeeded")
	}
	tx.Rollback()
	c.primary.SetDown(false)
	if _, err := c.db.ExecContext(ctx, "UPDATE t SET a = 1"); err != nil {
		t.Errorf("a write once the primary is back: %v", err)
	}
	if n := node(t, c.db, "SELECT node"); n == "p" {
		t.Errorf("reads after the failed transaction went to the primary")
	}
}
