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

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rwsplit/rwsplit"
)

// Every routing assertion here asks the server which port answered
// (inet_server_port()), never rwsplit's own counters.

func pgPort(t *testing.T, ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, query string, args ...any) int {
	t.Helper()
	var port int
	if err := q.QueryRowContext(ctx, query, args...).Scan(&port); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return port
}

func TestPGReadsSpreadOverReplicasNeverPrimary(t *testing.T) {
	ctx := ctxTimeout(t, time.Minute)
	primary, replicas := ports(pgCluster)
	for _, policy := range []rwsplit.Policy{rwsplit.LeastLatency(), rwsplit.RoundRobin(), rwsplit.Random(), rwsplit.LeastInFlight(), rwsplit.Weighted(1, 1)} {
		db := openPG(t, rwsplit.WithPolicy(policy))
		seen := concurrentPorts(t, ctx, db, "SELECT inet_server_port()", 8, 25)
		if seen[primary] != 0 {
			t.Errorf("%s: the primary served %d plain reads", db.Stats().Policy, seen[primary])
		}
		for port, name := range replicas {
			if seen[port] == 0 {
				t.Errorf("%s: replica %s served no reads (%v)", db.Stats().Policy, name, seen)
			}
		}
		// Query (not QueryRow) routes the same way.
		rows, err := db.QueryContext(ctx, "SELECT inet_server_port() FROM generate_series(1, 3)")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var port int
			if err := rows.Scan(&port); err != nil {
				t.Fatal(err)
			}
			if _, ok := replicas[port]; !ok {
				t.Errorf("Query served by port %d, not a replica", port)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
}

func TestPGWritesReachPrimary(t *testing.T) {
	ctx := ctxTimeout(t, time.Minute)
	primary, _ := ports(pgCluster)
	db := openPG(t)
	mustExec(t, ctx, db, "CREATE TABLE IF NOT EXISTS routing_pg (id serial PRIMARY KEY, v int)")
	mustExec(t, ctx, db, "CREATE SEQUENCE IF NOT EXISTS routing_pg_seq")
	mustExec(t, ctx, db, "INSERT INTO routing_pg (v) VALUES (1), (2)")

	// Query forms that write, lock or call side-effecting functions, each
	// returning the port of the server that ran it.
	queries := []string{
		"INSERT INTO routing_pg (v) VALUES (3) RETURNING inet_server_port()",
		"UPDATE routing_pg SET v = v WHERE id = 1 RETURNING inet_server_port()",
		"DELETE FROM routing_pg WHERE v = 3 RETURNING inet_server_port()",
		"WITH d AS (DELETE FROM routing_pg WHERE v = 99 RETURNING 1) SELECT inet_server_port()",
		"WITH u AS (UPDATE routing_pg SET v = v WHERE false RETURNING 1) SELECT inet_server_port()",
		"SELECT inet_server_port() FROM routing_pg WHERE id = 1 FOR UPDATE",
		"SELECT inet_server_port() FROM routing_pg WHERE id = 1 FOR NO KEY UPDATE",
		"SELECT inet_server_port() FROM routing_pg WHERE id = 1 FOR SHARE",
		"SELECT inet_server_port() FROM routing_pg WHERE id = 1 FOR KEY SHARE",
		"SELECT inet_server_port() FROM routing_pg WHERE id = 1 FOR UPDATE SKIP LOCKED",
		"SELECT nextval('routing_pg_seq'), inet_server_port()",
		"SELECT setval('routing_pg_seq', 10), inet_server_port()",
		"SELECT pg_try_advisory_xact_lock(42), inet_server_port()",
		"SELECT pg_advisory_unlock_all(), inet_server_port()",
		"SELECT set_config('application_name', 'x', false), inet_server_port()",
		"SELECT txid_current(), inet_server_port()",
		"SELECT count(*), inet_server_port() FROM information_schema.tables",
		"SELECT count(*), inet_server_port() FROM pg_catalog.pg_class",
		"SELECT count(*), inet_server_port() FROM pg_class",
		"/* leading comment */ INSERT INTO routing_pg (v) VALUES (4) RETURNING inet_server_port()",
		"select inet_server_port() from routing_pg where id = 1 for update",
	}
	for _, q := range queries {
		rows, err := db.QueryContext(ctx, q)
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			if port := fmt.Sprint(vals[len(vals)-1]); port != fmt.Sprint(primary) {
				t.Errorf("%s ran on port %v, want the primary %d", q, vals[len(vals)-1], primary)
			}
		}
		if err := rows.Err(); err != nil {
			t.Errorf("%s: %v", q, err)
		}
		rows.Close()
	}

	// Statements through Exec. Each would fail with SQLSTATE 25006 on a
	// hot standby, so success shows the primary ran it; the row count on
	// the primary shows the writes landed once.
	execs := []string{
		"INSERT INTO routing_pg (v) VALUES (5)",
		"UPDATE routing_pg SET v = 6 WHERE v = 5",
		"MERGE INTO routing_pg t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = t.v",
		"SELECT 1 INTO TEMP routing_pg_tmp",
		"DO $$ BEGIN INSERT INTO routing_pg (v) VALUES (7); END $$",
		"CREATE OR REPLACE PROCEDURE routing_pg_proc() LANGUAGE SQL AS $$ INSERT INTO routing_pg (v) VALUES (8) $$",
		"CALL routing_pg_proc()",
		"SET application_name = 'rwsplit-test'",
		"ANALYZE routing_pg",
	}
	for _, q := range execs {
		mustExec(t, ctx, db, q)
	}
	var n int
	if err := db.QueryRowContext(rwsplit.WithPrimary(ctx), "SELECT count(*) FROM routing_pg WHERE v IN (6, 7, 8)").Scan(&n); err != nil || n != 3 {
		t.Errorf("rows written through Exec: %d (%v), want 3", n, err)
	}
}

func TestPGWithPrimaryAndTransactions(t *testing.T) {
	ctx := ctxTimeout(t, time.Minute)
	primary, replicas := ports(pgCluster)
	// RoundRobin: with one transaction at a time LeastLatency keeps them on
	// the faster replica, and this test wants to see both used.
	db := openPG(t, rwsplit.WithPolicy(rwsplit.RoundRobin()))

	if got := pgPort(t, rwsplit.WithPrimary(ctx), db, "SELECT inet_server_port()"); got != primary {
		t.Errorf("WithPrimary read on port %d, want the primary %d", got, primary)
	}

	txPort := func(ctx context.Context, opts *sql.TxOptions) int {
		tx, err := db.BeginTx(ctx, opts)
		if err != nil {
			t.Fatalf("BeginTx(%+v): %v", opts, err)
		}
		defer tx.Rollback()
		return pgPort(t, ctx, tx, "SELECT inet_server_port()")
	}
	seen := map[int]bool{}
	for range 20 {
		p := txPort(ctx, &sql.TxOptions{ReadOnly: true})
		if _, ok := replicas[p]; !ok {
			t.Fatalf("read-only transaction on port %d, want a replica", p)
		}
		seen[p] = true
	}
	if len(seen) != len(replicas) {
		t.Errorf("read-only transactions used %d of %d replicas", len(seen), len(replicas))
	}
	if p := txPort(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}); replicas[p] == "" {
		t.Errorf("read-only repeatable-read transaction on port %d, want a replica", p)
	}
	for _, opts := range []*sql.TxOptions{nil, {}, {ReadOnly: true, Isolation: sql.LevelSerializable}} {
		if p := txPort(ctx, opts); p != primary {
			t.Errorf("transaction %+v on port %d, want the primary", opts, p)
		}
	}
	if p := txPort(rwsplit.WithPrimary(ctx), &sql.TxOptions{ReadOnly: true}); p != primary {
		t.Errorf("WithPrimary read-only transaction on port %d, want the primary", p)
	}

	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p := pgPort(t, ctx, conn, "SELECT inet_server_port()"); p != primary {
		t.Errorf("Conn on port %d, want the primary", p)
	}
	conn.Close()

	stmt, err := db.PrepareContext(ctx, "SELECT inet_server_port()")
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	// A prepared read runs on a replica, as the same read sent as text.
	var p int
	if err := stmt.QueryRowContext(ctx).Scan(&p); err != nil || p == primary {
		t.Errorf("prepared read on port %d (%v), want a replica", p, err)
	}
	if err := stmt.QueryRowContext(rwsplit.WithPrimary(ctx)).Scan(&p); err != nil || p != primary {
		t.Errorf("prepared read with WithPrimary on port %d (%v), want the primary", p, err)
	}
}

// TestPGCorpusReadsRunOnHotStandby runs every statement of the
// classifier's corpus that it calls a PostgreSQL read on each hot standby,
// reading every row: none may be refused as a write (SQLSTATE 25006), and
// none may fail at all.
func TestPGCorpusReadsRunOnHotStandby(t *testing.T) {
	ctx := ctxTimeout(t, 2*time.Minute)
	stmts := corpus(t, "postgres", "pg")
	if len(stmts) < 60 {
		t.Fatalf("corpus has %d runnable PostgreSQL reads, want at least 60", len(stmts))
	}
	for _, n := range pgCluster.Replicas() {
		h, err := sql.Open("pgx", n.DSN())
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range stmts {
			err := drain(ctx, h, q)
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "25006" {
				t.Errorf("%s: hot standby refused a read as a write: %v", n.Name(), q)
			} else if err != nil {
				t.Errorf("%s: %q: %v", n.Name(), q, err)
			}
		}
		h.Close()
	}
}

// TestPGReadRejectedByStandbyIsReRun checks the safety net with a function
// the classifier cannot see into: it writes, so a hot standby refuses it.
func TestPGReadRejectedByStandbyIsReRun(t *testing.T) {
	ctx := ctxTimeout(t, time.Minute)
	primary, _ := ports(pgCluster)
	db := openPG(t)
	mustExec(t, ctx, db, "CREATE TABLE IF NOT EXISTS audit_pg (at timestamptz DEFAULT now())")
	mustExec(t, ctx, db, `CREATE OR REPLACE FUNCTION audited_port() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO audit_pg DEFAULT VALUES;
	RETURN inet_server_port();
END $$`)
	if err := pgCluster.WaitCaughtUp(ctx, pgCluster.Primary()); err != nil {
		t.Fatal(err)
	}
	// The schema changes above keep reads on the primary until the probes
	// see the replicas past them; the refusal under test is a replica's.
	if _, ok := waitFor(10*time.Second, func() bool { return !db.Stats().SchemaFloor }); !ok {
		t.Fatalf("schema floor still open:\n%s", db.Stats())
	}
	var before int
	db.QueryRowContext(rwsplit.WithPrimary(ctx), "SELECT count(*) FROM audit_pg").Scan(&before)

	// pgx's stdlib reads the first row inside QueryContext, so the
	// standby's refusal (SQLSTATE 25006) comes back before any row, where
	// rwsplit sees it and re-runs the call on the primary.
	for range 5 {
		if p := pgPort(t, ctx, db, "SELECT audited_port()"); p != primary {
			t.Errorf("writing function ran on port %d, want the primary", p)
		}
		rows, err := db.QueryContext(ctx, "SELECT audited_port()")
		if err != nil {
			t.Fatalf("Query: %v", err)
		}
		rows.Close()
	}
	var after int
	db.QueryRowContext(rwsplit.WithPrimary(ctx), "SELECT count(*) FROM audit_pg").Scan(&after)
	if after-before != 10 {
		t.Errorf("%d audit rows written, want 10 (each call once, on the primary)", after-before)
	}
	var retries uint64
	for _, n := range db.Stats().Nodes {
		retries += n.ReadOnlyRetries
	}
	if retries != 10 {
		t.Errorf("Stats counts %d read-only retries, want 10", retries)
	}
}

func TestPGOpenNamesAndErrors(t *testing.T) {
	db := openPG(t)
	s := db.Stats()
	if s.Dialect != "postgres" {
		t.Errorf("dialect %q, want postgres", s.Dialect)
	}
	for i, n := range pgCluster.Nodes() {
		if s.Nodes[i].Name != n.Addr() {
			t.Errorf("node %d named %q, want %q", i, s.Nodes[i].Name, n.Addr())
		}
		if strings.Contains(s.String(), "app-secret") {
			t.Error("Stats output contains a password")
		}
	}

	const secret = "pw-must-not-leak"
	bad := []string{
		"postgres://app:" + secret + "@127.0.0.1:notaport/app",
		"host=127.0.0.1 port=5432 password=" + secret + " sslmode=bogus",
	}
	for _, dsn := range bad {
		_, err := rwsplit.Open("pgx", dsn, nil)
		if err == nil {
			t.Errorf("Open accepted a malformed DSN")
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Open error leaks the password: %v", err)
		}
		if !strings.Contains(err.Error(), "the primary") {
			t.Errorf("Open error does not name the node: %v", err)
		}
	}
}

func TestPGClosedHandle(t *testing.T) {
	var replicas []string
	for _, n := range pgCluster.Replicas() {
		replicas = append(replicas, n.DSN())
	}
	db, err := rwsplit.Open("pgx", pgCluster.Primary().DSN(), replicas)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	var port int
	if err := db.QueryRow("SELECT inet_server_port()").Scan(&port); !errors.Is(err, rwsplit.ErrClosed) {
		t.Errorf("QueryRow after Close: %v", err)
	}
	if _, err := db.Exec("SELECT 1"); !errors.Is(err, rwsplit.ErrClosed) {
		t.Errorf("Exec after Close: %v", err)
	}
}

// concurrentPorts runs query from workers goroutines, each reads times,
// and counts the server ports that answered: reads as a service makes
// them, several at once.
func concurrentPorts(t *testing.T, ctx context.Context, db *rwsplit.DB, query string, workers, reads int) map[int]int {
	t.Helper()
	var mu sync.Mutex
	seen := map[int]int{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range reads {
				var port int
				if err := db.QueryRowContext(ctx, query).Scan(&port); err != nil {
					t.Errorf("%s: %v", query, err)
					return
				}
				mu.Lock()
				seen[port]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return seen
}

func mustExec(t *testing.T, ctx context.Context, db *rwsplit.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(ctx, q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// drain runs a query and reads every row, returning the first error.
func drain(ctx context.Context, db *sql.DB, q string) error {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
	}
	return rows.Err()
}
