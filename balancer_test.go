package rwsplit

import (
	"context"
	"database/sql"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit/internal/fakedriver"
)

// WithPrimaryQuery is a read the classifier sends to the primary.
const WithPrimaryQuery = "SELECT * FROM t FOR UPDATE"

func TestRoutingQueries(t *testing.T) {
	c := newCluster(t, 2)
	ctx := context.Background()
	tests := []struct {
		query   string
		primary bool
	}{
		{"SELECT id FROM users WHERE id = $1", false},
		{"  -- leading comment\n select 1", false},
		{"WITH x AS (SELECT 1) SELECT * FROM x", false},
		{"VALUES (1), (2)", false},
		{"SHOW work_mem", false},
		{"INSERT INTO users (name) VALUES ('a') RETURNING id", true},
		{"UPDATE users SET name = 'b' RETURNING id", true},
		{"DELETE FROM users RETURNING id", true},
		{"WITH d AS (DELETE FROM users RETURNING id) SELECT * FROM d", true},
		{"SELECT * FROM users FOR UPDATE", true},
		{"SELECT nextval('s')", true},
		{"SELECT pg_advisory_lock(1)", true},
		{"SELECT * FROM information_schema.tables", true},
		{"SELECT 1; SELECT 2", true},
		{"SELECT 'unterminated", true},
		{"CALL p()", true},
	}
	for _, tt := range tests {
		got := served(t, ctx, c.db, tt.query)
		if tt.primary && got != "p" {
			t.Errorf("%q served by %s, want the primary", tt.query, got)
		}
		if !tt.primary && got == "p" {
			t.Errorf("%q served by the primary, want a replica", tt.query)
		}
		// QueryContext routes as QueryRowContext does.
		rows, err := c.db.QueryContext(ctx, tt.query)
		if err != nil {
			t.Fatalf("Query(%q): %v", tt.query, err)
		}
		rows.Next()
		var node string
		if err := rows.Scan(&node); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if tt.primary != (node == "p") {
			t.Errorf("Query(%q) served by %s, primary=%v wanted", tt.query, node, tt.primary)
		}
	}
}

func TestRoutingSpreadsReadsOverReplicas(t *testing.T) {
	// LeastLatency keeps the node that looks faster while reads come one
	// at a time; its spreading is tested with the policies.
	for _, p := range []Policy{RoundRobin(), Random(), LeastInFlight(), Weighted(1, 1)} {
		c := newCluster(t, 2, WithPolicy(p))
		seen := map[string]int{}
		for range 200 {
			seen[served(t, context.Background(), c.db, "SELECT 1")]++
		}
		if seen["p"] != 0 || seen["r1"] == 0 || seen["r2"] == 0 {
			t.Errorf("%s: reads served %v, want both replicas and never the primary", policyName(p), seen)
		}
	}
}

func TestRoutingWithPrimary(t *testing.T) {
	c := newCluster(t, 2)
	ctx := WithPrimary(context.Background())
	if got := served(t, ctx, c.db, "SELECT 1"); got != "p" {
		t.Errorf("WithPrimary read served by %s", got)
	}
	tx, err := c.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var node string
	if err := tx.QueryRow("SELECT 1").Scan(&node); err != nil || node != "p" {
		t.Errorf("WithPrimary read-only tx on %q (%v), want p", node, err)
	}
}

func TestRoutingExecPrepareConn(t *testing.T) {
	c := newCluster(t, 2)
	ctx := context.Background()
	if _, err := c.db.ExecContext(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.db.Exec("INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if got := c.primary.Count(fakedriver.Exec); got != 2 {
		t.Errorf("primary served %d Execs, want 2", got)
	}
	for _, r := range c.replicas {
		if got := r.Count(fakedriver.Exec); got != 0 {
			t.Errorf("replica %s served %d Execs", r.Name(), got)
		}
	}

	stmt, err := c.db.PrepareContext(ctx, "SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	var node string
	if err := stmt.QueryRow().Scan(&node); err != nil || node == "p" {
		t.Errorf("prepared read ran on %q (%v), want a replica", node, err)
	}
	stmt.Close()
	stmt, err = c.db.PrepareContext(ctx, "INSERT INTO t VALUES (1) RETURNING node")
	if err != nil {
		t.Fatal(err)
	}
	if err := stmt.QueryRow().Scan(&node); err != nil || node != "p" {
		t.Errorf("prepared write ran on %q (%v), want p", node, err)
	}
	stmt.Close()

	conn, err := c.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&node); err != nil || node != "p" {
		t.Errorf("Conn ran on %q (%v), want p", node, err)
	}
	conn.Close()
}

func TestRoutingTransactions(t *testing.T) {
	c := newCluster(t, 2)
	ctx := context.Background()
	tests := []struct {
		name    string
		opts    *sql.TxOptions
		primary bool
	}{
		{"default", nil, true},
		{"read-write", &sql.TxOptions{}, true},
		{"read-only", &sql.TxOptions{ReadOnly: true}, false},
		{"read-only repeatable read", &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}, false},
		{"read-only serializable", &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelSerializable}, true},
	}
	for _, tt := range tests {
		tx, err := c.db.BeginTx(ctx, tt.opts)
		if err != nil {
			t.Fatal(err)
		}
		var node string
		if err := tx.QueryRowContext(ctx, "SELECT 1").Scan(&node); err != nil {
			t.Fatal(err)
		}
		tx.Rollback()
		if tt.primary != (node == "p") {
			t.Errorf("%s transaction ran on %s, primary=%v wanted", tt.name, node, tt.primary)
		}
	}
	if tx, err := c.db.Begin(); err != nil {
		t.Fatal(err)
	} else {
		tx.Rollback()
	}
}

func TestReadRejectedAsWriteReRunsOnPrimary(t *testing.T) {
	c := newCluster(t, 2)
	for _, r := range c.replicas {
		r.SetReadOnly(true)
	}
	// The classifier cannot know that a user function writes.
	const q = "SELECT write_audit_row()"
	if got := served(t, context.Background(), c.db, q); got != "p" {
		t.Errorf("rejected read ended on %s, want the primary", got)
	}
	rows, err := c.db.Query(q)
	if err != nil {
		t.Fatalf("Query after rejection: %v", err)
	}
	rows.Close()
	var retries uint64
	for _, n := range c.db.Stats().Nodes {
		retries += n.ReadOnlyRetries
		if n.Role == RolePrimary && n.Writes != 2 {
			t.Errorf("primary counted %d writes, want 2", n.Writes)
		}
	}
	if retries != 2 {
		t.Errorf("Stats counts %d read-only retries, want 2", retries)
	}
	// A plain read still runs on the replicas.
	if got := served(t, context.Background(), c.db, "SELECT 1"); got == "p" {
		t.Errorf("plain read served by the primary")
	}
}

func TestCallerCancellationIsNotNodeFault(t *testing.T) {
	c := newCluster(t, 1)
	release := c.replicas[0].Block()
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.db.QueryContext(ctx, "SELECT 1")
		done <- err
	}()
	for c.db.nodeList()[1].InFlight() == 0 {
		runtime.Gosched()
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled query: %v", err)
	}
	if n := c.db.Stats().Nodes[1]; n.Errors != 0 || n.Latency != 0 {
		t.Errorf("cancellation counted against the node: errors %d latency %s", n.Errors, n.Latency)
	}
}

func TestAllReplicasDownFallsBackToPrimary(t *testing.T) {
	c := newCluster(t, 2, WithHealthCheckInterval(20*time.Millisecond))
	for _, r := range c.replicas {
		r.SetDown(true)
	}
	waitFor(t, 5*time.Second, "no replica eligible", func() bool { return c.db.Stats().Eligible == 0 })
	for range 10 {
		if got := served(t, context.Background(), c.db, "SELECT 1"); got != "p" {
			t.Fatalf("read served by %s with every replica down", got)
		}
	}
	if s := c.db.Stats(); s.Fallbacks < 10 || s.FallbackRejected != 0 {
		t.Errorf("fallbacks %d rejected %d", s.Fallbacks, s.FallbackRejected)
	}
	// Read-only transactions fall back too.
	tx, err := c.db.BeginTx(context.Background(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	tx.Rollback()

	for _, r := range c.replicas {
		r.SetDown(false)
	}
	waitFor(t, 5*time.Second, "replicas back", func() bool { return c.db.Stats().Eligible == 2 })
}

func TestFallbackLimit(t *testing.T) {
	c := newCluster(t, 1, WithHealthCheckInterval(20*time.Millisecond), WithFallbackLimit(1))
	c.replicas[0].SetDown(true)
	waitFor(t, 5*time.Second, "no replica eligible", func() bool { return c.db.Stats().Eligible == 0 })

	release := c.primary.Block()
	first := make(chan error, 1)
	go func() {
		_, err := c.db.QueryContext(context.Background(), "SELECT 1")
		first <- err
	}()
	waitFor(t, 5*time.Second, "first fallback in flight", func() bool { return c.db.counts.fallbackInFlight.Load() == 1 })
	if _, err := c.db.QueryContext(context.Background(), "SELECT 1"); !errors.Is(err, ErrNoReplica) {
		t.Errorf("read beyond the fallback limit: %v, want ErrNoReplica", err)
	}
	if err := c.db.QueryRow("SELECT 1").Scan(new(string)); !errors.Is(err, ErrNoReplica) {
		t.Errorf("QueryRow beyond the fallback limit: %v, want ErrNoReplica", err)
	}
	// Writes and WithPrimary reads are not fallbacks.
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := c.db.QueryContext(WithPrimary(context.Background()), "SELECT 1"); err != nil {
			t.Errorf("WithPrimary read: %v", err)
		}
	}()
	release()
	if err := <-first; err != nil {
		t.Errorf("first fallback read: %v", err)
	}
	<-done
	if s := c.db.Stats(); s.FallbackRejected != 2 {
		t.Errorf("FallbackRejected = %d, want 2", s.FallbackRejected)
	}

	// Limit 0: no fallback at all.
	c0 := newCluster(t, 1, WithHealthCheckInterval(20*time.Millisecond), WithFallbackLimit(0))
	c0.replicas[0].SetDown(true)
	waitFor(t, 5*time.Second, "no replica eligible", func() bool { return c0.db.Stats().Eligible == 0 })
	if _, err := c0.db.QueryContext(context.Background(), "SELECT 1"); !errors.Is(err, ErrNoReplica) {
		t.Errorf("limit 0: %v, want ErrNoReplica", err)
	}
	// Without replicas every read is the primary's: never capped.
	cz := newCluster(t, 0, WithFallbackLimit(0))
	if got := served(t, context.Background(), cz.db, "SELECT 1"); got != "p" {
		t.Errorf("read without replicas served by %s", got)
	}
}

func TestRecoveryConflictIsRetriedButKeepsReplica(t *testing.T) {
	c := newCluster(t, 2, WithNodeNames("p", "r1", "r2"))
	c.replicas[0].SetQueryError(stateErr("40001"))
	for range 20 {
		if got := served(t, context.Background(), c.db, "SELECT 1"); got == "r1" {
			t.Fatal("read served by the replica that cancels it")
		}
	}
	r1 := nodeStats(c.db, "r1")
	if !r1.Up || r1.Ejections != 0 || r1.Errors != 0 || r1.Retries == 0 {
		t.Errorf("r1 after recovery conflicts: %+v", r1)
	}
	// A serialization failure on the primary is the caller's to handle.
	c.primary.SetQueryError(stateErr("40001"))
	if err := c.db.QueryRow(WithPrimaryQuery).Scan(new(string)); sqlState(err) != "40001" {
		t.Errorf("primary's 40001: %v", err)
	}
}

func TestWritesAreNeverRetried(t *testing.T) {
	// Generic dialect: probes ping, so the fake counts only the traffic.
	c := newCluster(t, 2, WithDialect("generic"))
	c.primary.SetDown(true)
	if _, err := c.db.Exec("INSERT INTO t VALUES (1)"); err == nil {
		t.Fatal("Exec on a down primary succeeded")
	}
	if err := c.db.QueryRow("INSERT INTO t VALUES (1) RETURNING id").Scan(new(string)); err == nil {
		t.Fatal("writing query on a down primary succeeded")
	}
	for _, r := range c.replicas {
		if n := r.Count(fakedriver.Exec) + r.Count(fakedriver.Query); n != 0 {
			t.Errorf("replica %s received %d statements of a failed write", r.Name(), n)
		}
	}
}

func TestCancelledReadIsNotRetried(t *testing.T) {
	// Generic dialect: probes ping, so the fake counts only the reads; and
	// only the first round of probes runs, before the test begins.
	c := newCluster(t, 2, WithPolicy(RoundRobin()), WithDialect("generic"), WithHealthCheckInterval(time.Hour))
	waitFor(t, 5*time.Second, "first probe round", func() bool {
		return c.replicas[0].Count(fakedriver.Ping) > 0 && c.replicas[1].Count(fakedriver.Ping) > 0
	})
	// Open a connection to each replica first: a blocked server also
	// blocks new connections, which the fake counts apart from queries.
	for range 4 {
		served(t, context.Background(), c.db, "SELECT 1")
	}
	before := c.replicas[0].Count(fakedriver.Query) + c.replicas[1].Count(fakedriver.Query)
	releases := []func(){c.replicas[0].Block(), c.replicas[1].Block()}
	defer func() {
		for _, r := range releases {
			r()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.db.QueryContext(ctx, "SELECT 1")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read past its deadline: %v", err)
	}
	tried := c.replicas[0].Count(fakedriver.Query) + c.replicas[1].Count(fakedriver.Query) - before
	if tried != 1 {
		t.Errorf("a read whose caller gave up was sent %d times", tried)
	}
	for _, n := range c.db.Stats().Nodes {
		if n.Errors != 0 || n.Retries != 0 || !n.Up {
			t.Errorf("caller's deadline counted against %s: %+v", n.Name, n)
		}
	}
}
