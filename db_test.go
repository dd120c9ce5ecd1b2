package rwsplit

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

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

// A QueryRow refused before it reaches a node (the load-shedding path of
// ErrNoReplica) is cheap: no handle and no goroutine per call.
func TestRefusedQueryRowIsCheap(t *testing.T) {
	c := newCluster(t, 1, WithFallbackLimit(0), WithHealthCheckInterval(time.Hour), WithDialect("generic"))
	c.db.nodeList()[1].healthy.Store(false)
	c.db.rebuild()
	ctx := context.Background()
	if err := c.db.QueryRowContext(ctx, "SELECT 1").Scan(new(string)); !errors.Is(err, ErrNoReplica) {
		t.Fatalf("Scan = %v, want ErrNoReplica", err)
	}
	allocs := testing.AllocsPerRun(200, func() {
		c.db.QueryRowContext(ctx, "SELECT 1").Scan(new(string))
	})
	// A handle of its own per refusal took 10, and a goroutine.
	if allocs > 4 {
		t.Errorf("a refused QueryRow and its Scan take %.0f allocations; want at most 4", allocs)
	}
}
