package rwsplit

import (
	"context"
	"database/sql"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/rwsplit/rwsplit/internal/fakedriver"
)

// cluster is a primary and replicas on the fake driver.
type cluster struct {
	primary  *fakedriver.Server
	replicas []*fakedriver.Server
	db       *DB
}

func newCluster(t testing.TB, replicas int, opts ...Option) *cluster {
	t.Helper()
	c := &cluster{primary: fakedriver.NewServer("p")}
	var handles []*sql.DB
	for i := range replicas {
		s := fakedriver.NewServer("r" + string(rune('1'+i)))
		c.replicas = append(c.replicas, s)
		handles = append(handles, s.DB())
	}
	opts = append([]Option{WithDialect("postgres")}, opts...)
	db, err := New(c.primary.DB(), handles, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c.db = db
	t.Cleanup(func() { db.Close() })
	return c
}

// served runs a query through QueryRowContext and returns the node that
// answered, as the fake server reports it.
func served(t *testing.T, ctx context.Context, db *DB, query string) string {
	t.Helper()
	var node string
	if err := db.QueryRowContext(ctx, query).Scan(&node); err != nil {
		t.Fatalf("QueryRow(%q): %v", query, err)
	}
	return node
}

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
	if err := stmt.QueryRow().Scan(&node); err != nil || node != "p" {
		t.Errorf("prepared statement ran on %q (%v), want p", node, err)
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

func TestZeroReplicas(t *testing.T) {
	c := newCluster(t, 0)
	if got := served(t, context.Background(), c.db, "SELECT 1"); got != "p" {
		t.Errorf("read with no replicas served by %s", got)
	}
	tx, err := c.db.BeginTx(context.Background(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	if len(c.db.Replicas()) != 0 {
		t.Errorf("Replicas() = %d handles", len(c.db.Replicas()))
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

func TestDriverErrorsPassThrough(t *testing.T) {
	c := newCluster(t, 1)
	c.replicas[0].SetQueryError(sql.ErrNoRows)
	err := c.db.QueryRow("SELECT 1").Scan(new(string))
	if !errors.Is(err, sql.ErrNoRows) {
		t.Errorf("QueryRow error %v, want sql.ErrNoRows", err)
	}
	c.primary.SetExecError(fakedriver.ReadOnlyError{})
	_, err = c.db.Exec("INSERT INTO t VALUES (1)")
	var ro fakedriver.ReadOnlyError
	if !errors.As(err, &ro) {
		t.Errorf("Exec error %v, want the driver's error", err)
	}
	if c.primary.Count(fakedriver.Exec) != 1 {
		t.Errorf("failed write was sent %d times, want once", c.primary.Count(fakedriver.Exec))
	}
}

func TestClose(t *testing.T) {
	c := newCluster(t, 2)
	db := c.db
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	checks := map[string]error{}
	_, checks["Exec"] = db.ExecContext(ctx, "INSERT INTO t VALUES (1)")
	_, checks["Query"] = db.QueryContext(ctx, "SELECT 1")
	checks["QueryRow"] = db.QueryRowContext(ctx, "SELECT 1").Scan(new(string))
	checks["QueryRow.Err"] = db.QueryRow("SELECT 1").Err()
	_, checks["Prepare"] = db.PrepareContext(ctx, "SELECT 1")
	_, checks["BeginTx"] = db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	_, checks["Conn"] = db.Conn(ctx)
	checks["Ping"] = db.PingContext(ctx)
	_, checks["GetDBConn"] = db.GetDBConn()
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	// The handles were closed too.
	if err := db.Primary().Ping(); err == nil {
		t.Error("primary handle still open after Close")
	}
}

func TestPing(t *testing.T) {
	c := newCluster(t, 2)
	if err := c.db.Ping(); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	c.replicas[1].SetPingError(errors.New("boom"))
	err := c.db.Ping()
	var e *Error
	if !errors.As(err, &e) || e.Node != "replica2" || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Ping with a failing replica: %v, want an *Error naming replica2", err)
	}
}

func TestPoolSettersApplyToEveryNode(t *testing.T) {
	c := newCluster(t, 2)
	c.db.SetMaxOpenConns(3)
	c.db.SetMaxIdleConns(2)
	c.db.SetConnMaxLifetime(0)
	c.db.SetConnMaxIdleTime(0)
	for _, n := range c.db.Stats().Nodes {
		if n.DB.MaxOpenConnections != 3 {
			t.Errorf("%s MaxOpenConnections = %d, want 3", n.Name, n.DB.MaxOpenConnections)
		}
	}
}

func TestPrimaryAndReplicas(t *testing.T) {
	p := fakedriver.NewServer("p").DB()
	r1, r2 := fakedriver.NewServer("r1").DB(), fakedriver.NewServer("r2").DB()
	db, err := New(p, []*sql.DB{r1, r2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Primary() != p {
		t.Error("Primary() is not the handle given")
	}
	if got := db.Replicas(); len(got) != 2 || got[0] != r1 || got[1] != r2 {
		t.Errorf("Replicas() = %v", got)
	}
	if h, err := db.GetDBConn(); err != nil || h != p {
		t.Errorf("GetDBConn() = %v, %v", h, err)
	}
}

func TestNewBadInput(t *testing.T) {
	p := fakedriver.NewServer("p").DB()
	r := fakedriver.NewServer("r").DB()
	defer p.Close() // a failed New takes no ownership
	defer r.Close()
	tests := []struct {
		name     string
		primary  *sql.DB
		replicas []*sql.DB
		opts     []Option
		want     string
	}{
		{"nil primary", nil, nil, nil, "primary is nil"},
		{"nil replica", p, []*sql.DB{r, nil}, nil, "replica 2 is nil"},
		{"primary as replica", p, []*sql.DB{p}, nil, "replica 1 is the same *sql.DB as the primary"},
		{"replica twice", p, []*sql.DB{r, r}, nil, "replica 2 is the same *sql.DB as replica 1"},
		{"nil policy", p, []*sql.DB{r}, []Option{WithPolicy(nil)}, "policy is nil"},
		{"nil option", p, []*sql.DB{r}, []Option{nil}, "nil Option"},
		{"weights count", p, []*sql.DB{r}, []Option{WithPolicy(Weighted(1, 2))}, "2 weights for 1 replicas"},
		{"negative weight", p, []*sql.DB{r}, []Option{WithPolicy(Weighted(-1))}, "negative"},
		{"unknown dialect", p, nil, []Option{WithDialect("oracle")}, `unknown dialect "oracle"`},
		{"names count", p, []*sql.DB{r}, []Option{WithNodeNames("a")}, "1 names for 2 nodes"},
		{"empty name", p, []*sql.DB{r}, []Option{WithNodeNames("a", "")}, "replica 1 has an empty name"},
		{"same names", p, []*sql.DB{r}, []Option{WithNodeNames("a", "a")}, `same name "a"`},
	}
	for _, tt := range tests {
		db, err := New(tt.primary, tt.replicas, tt.opts...)
		if err == nil {
			db.Close()
			t.Errorf("%s: New succeeded", tt.name)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "rwsplit: ") {
			t.Errorf("%s: error %q, want it to contain %q", tt.name, err, tt.want)
		}
	}
	// The handles given to a failed New stay open.
	if err := p.Ping(); err != nil {
		t.Errorf("failed New closed the primary: %v", err)
	}
}

func TestOpenBadInput(t *testing.T) {
	const secret = "s3cr3t-pw"
	tests := []struct {
		name     string
		driver   string
		primary  string
		replicas []string
		want     string
	}{
		{"empty driver", "", "x", nil, "driver name is empty"},
		{"unknown driver", "nosuchdriver", "user:" + secret + "@tcp(127.0.0.1:1)/db", nil, `unknown driver "nosuchdriver"`},
		{"empty primary DSN", "mysql", "", nil, "the primary DSN is empty"},
		{"empty replica DSN", "mysql", "u:" + secret + "@tcp(127.0.0.1:1)/db", []string{""}, "replica 1 DSN is empty"},
		{"malformed DSN", "mysql", "u:" + secret + "@tcp(127.0.0.1:1/db", nil, "the primary"},
		{"malformed replica DSN", "mysql", "u:" + secret + "@tcp(127.0.0.1:1)/db", []string{"u:" + secret + "@tcp(127.0.0.1:2)/db?timeout=" + secret}, "replica 1"},
		{"same DSN twice", "mysql", "u:" + secret + "@tcp(127.0.0.1:1)/db", []string{"u:" + secret + "@tcp(127.0.0.1:1)/db"}, "replica 1 DSN is the same as the primary DSN"},
		{"weights count", "mysql", "u:" + secret + "@tcp(127.0.0.1:1)/db", []string{"u:" + secret + "@tcp(127.0.0.1:2)/db"}, "weights"},
	}
	for _, tt := range tests {
		var opts []Option
		if tt.name == "weights count" {
			opts = append(opts, WithPolicy(Weighted(1, 1, 1)))
		}
		db, err := Open(tt.driver, tt.primary, tt.replicas, opts...)
		if err == nil {
			db.Close()
			t.Errorf("%s: Open succeeded", tt.name)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %q, want it to contain %q", tt.name, err, tt.want)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error leaks the password: %q", tt.name, err)
		}
	}
}

func TestOpenNamesNodesByAddress(t *testing.T) {
	db, err := Open("mysql", "app:pw@tcp(127.0.0.1:3306)/app",
		[]string{"app:pw@tcp(127.0.0.1:3307)/app", "app:pw@tcp(127.0.0.1:3307)/other"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var names []string
	for _, n := range db.Stats().Nodes {
		names = append(names, n.Name)
	}
	want := "127.0.0.1:3306 127.0.0.1:3307 127.0.0.1:3307#2"
	if strings.Join(names, " ") != want {
		t.Errorf("names %v, want %s", names, want)
	}
	if s := db.Stats(); s.Dialect != "mysql" || s.Policy != "LeastLatency" {
		t.Errorf("dialect %s policy %s, want mysql LeastLatency", s.Dialect, s.Policy)
	}
}

func TestStatsCounts(t *testing.T) {
	c := newCluster(t, 1, WithNodeNames("main", "copy"))
	ctx := context.Background()
	for range 3 {
		served(t, ctx, c.db, "SELECT 1")
	}
	c.db.Exec("INSERT INTO t VALUES (1)")
	tx, _ := c.db.BeginTx(ctx, nil)
	tx.Rollback()
	s := c.db.Stats()
	p, r := s.Nodes[0], s.Nodes[1]
	if p.Name != "main" || p.Role != RolePrimary || p.Writes != 1 || p.Reads != 0 || p.Transactions != 1 {
		t.Errorf("primary stats %+v", p)
	}
	if r.Name != "copy" || r.Role != RoleReplica || r.Reads != 3 || r.Writes != 0 || r.Latency <= 0 {
		t.Errorf("replica stats %+v", r)
	}
	if r.InFlight != 0 || p.InFlight != 0 {
		t.Errorf("in-flight not back to 0: %d %d", p.InFlight, r.InFlight)
	}
	out := s.String()
	for _, want := range []string{"NODE", "main", "copy", "primary", "replica"} {
		if !strings.Contains(out, want) {
			t.Errorf("Stats.String() lacks %q:\n%s", want, out)
		}
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
	for c.db.nodes[1].InFlight() == 0 {
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

// A call ends exactly once whatever its outcome: failed reads and writes
// are not counted as served and leave nothing in flight.
func TestAccountingAfterFailures(t *testing.T) {
	c := newCluster(t, 1, WithHysteresis(100, 1))
	ctx := context.Background()
	boom := errors.New("syntax error")
	c.replicas[0].SetQueryError(boom)
	c.primary.SetExecError(boom)
	for range 3 {
		if _, err := c.db.QueryContext(ctx, "SELECT 1"); !errors.Is(err, boom) {
			t.Fatalf("query: %v", err)
		}
		if _, err := c.db.ExecContext(ctx, "UPDATE t SET a = 1"); !errors.Is(err, boom) {
			t.Fatalf("exec: %v", err)
		}
	}
	c.replicas[0].SetQueryError(nil)
	c.primary.SetExecError(nil)
	served(t, ctx, c.db, "SELECT 1")
	if _, err := c.db.ExecContext(ctx, "UPDATE t SET a = 1"); err != nil {
		t.Fatal(err)
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	for _, n := range c.db.Stats().Nodes {
		if n.InFlight != 0 {
			t.Errorf("%s: %d calls in flight after every call returned", n.Name, n.InFlight)
		}
		if n.Role == RoleReplica && n.Reads != 1 {
			t.Errorf("%s counted %d reads, want 1", n.Name, n.Reads)
		}
		if n.Role == RolePrimary && (n.Writes != 1 || n.Reads != 0) {
			t.Errorf("%s counted %d writes and %d reads, want 1 and 0", n.Name, n.Writes, n.Reads)
		}
	}
}
