package rwsplit

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is an Observer that keeps every call and event.
type recorder struct {
	mu     sync.Mutex
	calls  []CallEvent
	events []Event
}

func (r *recorder) ObserveCall(e CallEvent) {
	r.mu.Lock()
	r.calls = append(r.calls, e)
	r.mu.Unlock()
}

func (r *recorder) ObserveEvent(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// take returns the calls recorded since the last take.
func (r *recorder) take() []CallEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

func (r *recorder) nodeEvents() []NodeEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []NodeEvent
	for _, e := range r.events {
		if n, ok := e.(NodeEvent); ok {
			out = append(out, n)
		}
	}
	return out
}

func eventsOf[T Event](r *recorder) []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []T
	for _, e := range r.events {
		if x, ok := e.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

// wantCall checks the one call recorded since the last take against the
// node the fake server says answered.
func wantCall(t *testing.T, rec *recorder, op Op, node string, role Role, reason Reason) {
	t.Helper()
	calls := rec.take()
	if len(calls) != 1 {
		t.Fatalf("%d calls observed, want 1: %+v", len(calls), calls)
	}
	e := calls[0]
	if e.Op != op || e.Node != node || e.Role != role || e.Reason != reason || e.Err != nil || e.Attempt != 1 || e.Context == nil {
		t.Errorf("observed %s on %q (%s) for %s, attempt %d, err %v; want %s on %q (%s) for %s",
			e.Op, e.Node, e.Role, e.Reason, e.Attempt, e.Err, op, node, role, reason)
	}
}

// Every kind of routed call is reported once, naming the node that the
// server says answered and why it was chosen.
func TestObserverReportsNodeAndReason(t *testing.T) {
	rec := &recorder{}
	c := newCluster(t, 2, WithNodeNames("p", "r1", "r2"), WithDialect("generic"), WithObserver(rec), WithSlowStart(0))
	db, ctx := c.db, context.Background()

	node := served(t, ctx, db, "SELECT 1")
	if node == "p" {
		t.Fatal("a plain read served by the primary")
	}
	wantCall(t, rec, OpQuery, node, RoleReplica, ReasonPolicy)

	served(t, WithPrimary(ctx), db, "SELECT 1")
	wantCall(t, rec, OpQuery, "p", RolePrimary, ReasonForced)

	served(t, ctx, db, "SELECT nextval('s')")
	wantCall(t, rec, OpQuery, "p", RolePrimary, ReasonRule)

	served(t, WithConsistency(ctx, BoundedStaleness(time.Second)), db, "SELECT 1") // no lag is known: the primary
	wantCall(t, rec, OpQuery, "p", RolePrimary, ReasonConsistency)

	if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	wantCall(t, rec, OpExec, "p", RolePrimary, ReasonRule)

	s := NewSession()
	sctx := WithSession(ctx, s)
	if _, err := db.ExecContext(sctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	rec.take()
	served(t, sctx, db, "SELECT 1") // within the session window: the primary
	wantCall(t, rec, OpQuery, "p", RolePrimary, ReasonSession)

	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var txNode string
	if err := tx.QueryRowContext(ctx, "SELECT 1").Scan(&txNode); err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	wantCall(t, rec, OpBegin, txNode, RoleReplica, ReasonPolicy) // its statement is not reported again

	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	wantCall(t, rec, OpBegin, "p", RolePrimary, ReasonRule)

	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	wantCall(t, rec, OpConn, "p", RolePrimary, ReasonRule)

	stmt, err := db.PrepareContext(ctx, "SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	rec.take()
	if err := stmt.QueryRowContext(ctx).Scan(&node); err != nil {
		t.Fatal(err)
	}
	wantCall(t, rec, OpQuery, node, RoleReplica, ReasonPolicy)

	// Through the routing *sql.DB, as a data library uses it.
	rdb := sql.OpenDB(db.Connector())
	defer rdb.Close()
	if err := rdb.QueryRowContext(ctx, "SELECT 1").Scan(&node); err != nil {
		t.Fatal(err)
	}
	wantCall(t, rec, OpQuery, node, RoleReplica, ReasonPolicy)
}

// A read with no eligible replica is a fallback; one refused by the
// fallback limit is reported with no node and its error.
func TestObserverFallbackAndRefusal(t *testing.T) {
	rec := &recorder{}
	c := newCluster(t, 1, WithNodeNames("p", "r1"), WithDialect("generic"), WithObserver(rec),
		WithHealthCheckInterval(time.Hour), WithFallbackLimit(1))
	c.db.nodeList()[1].healthy.Store(false)
	c.db.rebuild()
	ctx := context.Background()
	served(t, ctx, c.db, "SELECT 1")
	wantCall(t, rec, OpQuery, "p", RolePrimary, ReasonFallback)

	release := c.primary.Block()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.db.QueryRowContext(ctx, "SELECT 1").Scan(new(string))
	}()
	waitFor(t, 5*time.Second, "a fallback read in flight", func() bool { return c.primary.InFlight() == 1 })
	_, err := c.db.QueryContext(ctx, "SELECT 1")
	release()
	<-done
	if !errors.Is(err, ErrNoReplica) {
		t.Fatalf("second fallback read: %v, want ErrNoReplica", err)
	}
	var refused []CallEvent
	for _, e := range rec.take() {
		if e.Node == "" {
			refused = append(refused, e)
		}
	}
	if len(refused) != 1 || !errors.Is(refused[0].Err, ErrNoReplica) || refused[0].Op != OpQuery {
		t.Errorf("refusals observed: %+v; want one query refused with ErrNoReplica", refused)
	}
}

// A read that fails on a replica and runs again elsewhere reports both
// attempts: the first retried, the second as a retry.
func TestObserverReportsRetries(t *testing.T) {
	rec := &recorder{}
	c := newCluster(t, 2, WithNodeNames("p", "r1", "r2"), WithDialect("generic"), WithObserver(rec),
		WithHealthCheckInterval(time.Hour), WithPolicy(RoundRobin()))
	c.replicas[0].SetQueryError(driver.ErrBadConn)
	c.replicas[1].SetQueryError(driver.ErrBadConn)
	ctx := context.Background()
	if got := served(t, ctx, c.db, "SELECT 1"); got != "p" {
		t.Fatalf("read with both replicas failing served by %s", got)
	}
	calls := rec.take()
	if len(calls) != 3 {
		t.Fatalf("%d attempts observed, want 3: %+v", len(calls), calls)
	}
	for i, e := range calls[:2] {
		if e.Err == nil || !e.Retried || e.Attempt != i+1 || e.Role != RoleReplica {
			t.Errorf("attempt %d: %+v; want a failed replica attempt, retried", i+1, e)
		}
	}
	if calls[1].Reason != ReasonRetry || calls[2].Reason != ReasonRetry || calls[2].Node != "p" || calls[2].Err != nil || calls[2].Retried {
		t.Errorf("retries observed as %+v and %+v", calls[1], calls[2])
	}
}

// A hedged read that the hedge answers is reported once, on the hedge's
// node, with the hedges sent.
func TestObserverReportsHedges(t *testing.T) {
	rec := &recorder{}
	c := newCluster(t, 2, WithNodeNames("p", "r1", "r2"), WithPolicy(RoundRobin()),
		WithHealthCheckInterval(time.Hour), WithDialect("generic"), WithObserver(rec),
		WithHedging(Hedging{Floor: 5 * time.Millisecond, Ceiling: 20 * time.Millisecond, Budget: 1}))
	ctx := context.Background()
	for range 4 {
		served(t, ctx, c.db, "SELECT 1")
	}
	rec.take()
	release := c.replicas[0].Block()
	defer release()
	var won []CallEvent
	for range 4 {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		node := served(t, ctx, c.db, "SELECT 1")
		cancel()
		for _, e := range rec.take() {
			if e.Node != node {
				t.Errorf("observed %q; the server says %q", e.Node, node)
			}
			if e.Reason == ReasonHedge {
				won = append(won, e)
			}
		}
	}
	if len(won) == 0 {
		t.Fatal("no read observed as won by a hedge with r1 frozen")
	}
	for _, e := range won {
		if e.Hedges < 1 || e.Node == "r1" || e.Err != nil {
			t.Errorf("hedged read observed as %+v", e)
		}
	}
}

// Node state changes, a primary change, the write outage's end, fencing
// and lag over the bound are events.
func TestObserverEvents(t *testing.T) {
	rec := &recorder{}
	c := newRoleCluster(t, "postgres", 2, WithObserver(rec))
	db := c.db
	playRounds(t, db, 2, []probeResult{pgWritable(100, 1), pgStandby(100, 1), pgStandby(100, 1)})

	playRounds(t, db, 2, []probeResult{pgWritable(100, 1), pgStandby(100, 1), unreachable()})
	playRounds(t, db, 2, []probeResult{pgWritable(100, 1), pgStandby(100, 1), pgStandby(100, 1)})
	got := rec.nodeEvents()
	if len(got) != 2 || got[0].Node != "r2" || got[0].State != NodeEjected || got[0].Cause == "" ||
		got[1].Node != "r2" || got[1].State != NodeReinstated {
		t.Errorf("node events %+v; want r2 ejected (with its cause), then reinstated", got)
	}

	// r1 is promoted on timeline 2; p, still writable on timeline 1, is fenced.
	playRound(t, db, []probeResult{pgWritable(100, 1), pgWritable(200, 2), pgStandby(200, 2)})
	if pc := eventsOf[PrimaryChanged](rec); len(pc) != 1 || pc[0] != (PrimaryChanged{From: "p", To: "r1"}) {
		t.Errorf("primary changes %+v; want p to r1", pc)
	}
	if n := rec.nodeEvents(); len(n) != 3 || n[2].Node != "p" || n[2].State != NodeFenced {
		t.Errorf("node events %+v; want p fenced last", n)
	}
	if _, err := db.ExecContext(context.Background(), "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if wo := eventsOf[WriteOutage](rec); len(wo) != 1 || wo[0].Primary != "r1" || wo[0].Duration <= 0 ||
		wo[0].Duration != db.Stats().LastWriteOutage {
		t.Errorf("write outages %+v; want one ended on r1 lasting Stats().LastWriteOutage (%s)", wo, db.Stats().LastWriteOutage)
	}
	playRound(t, db, []probeResult{pgStandby(200, 2), pgWritable(200, 2), pgStandby(200, 2)})
	if n := rec.nodeEvents(); len(n) != 4 || n[3].Node != "p" || n[3].State != NodeUnfenced {
		t.Errorf("node events %+v; want p unfenced last", n)
	}
}

func TestObserverLagEvents(t *testing.T) {
	rec := &recorder{}
	c := newRoleCluster(t, "mariadb", 1, WithObserver(rec), WithMaxReplicationLag(2*time.Second))
	behind := func(s int64) probeResult {
		r := mariaReplica("0-1-100")
		r.secondsBehind = s
		return r
	}
	playRounds(t, c.db, 2, []probeResult{mariaWritable("0-1-200", 1), behind(0)})
	playRound(t, c.db, []probeResult{mariaWritable("0-1-200", 1), behind(10)})
	playRound(t, c.db, []probeResult{mariaWritable("0-1-200", 1), behind(12)})
	playRound(t, c.db, []probeResult{mariaWritable("0-1-200", 1), behind(0)})
	n := rec.nodeEvents()
	if len(n) != 2 || n[0].State != NodeLagging || n[0].Lag <= 2*time.Second || n[1].State != NodeCaughtUp || n[1].Node != "r1" {
		t.Errorf("node events %+v; want r1 lagging (once), then caught up", n)
	}
}

func TestObserverTokenRejected(t *testing.T) {
	rec := &recorder{}
	db := newHTTPCluster(t, WithSessionKey([]byte("0123456789abcdef0123456789abcdef")), WithObserver(rec))
	foreign := NewSession()
	foreign.markWrite(&DB{})
	h := db.SessionMiddleware(HTTPSessionOptions{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		db.QueryRowContext(r.Context(), "SELECT 1").Scan(new(string))
	}))
	for _, token := range []string{foreign.Token(), "garbage"} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Rwsplit-Session", token)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	tr := eventsOf[TokenRejected](rec)
	if len(tr) != 2 || db.Stats().TokensRejected != 2 {
		t.Fatalf("tokens rejected: events %+v, Stats %d; want 2 of each", tr, db.Stats().TokensRejected)
	}
	for _, e := range tr {
		if e.Reason == "" || strings.Contains(e.Reason, foreign.Token()) {
			t.Errorf("rejection reason %q", e.Reason)
		}
	}
}

// Several observers compose: each is told everything, in order.
func TestObserversCompose(t *testing.T) {
	a, b := &recorder{}, &recorder{}
	var order []string
	var mu sync.Mutex
	note := func(who string) ObserverFuncs {
		return ObserverFuncs{Call: func(CallEvent) { mu.Lock(); order = append(order, who); mu.Unlock() }}
	}
	c := newCluster(t, 1, WithDialect("generic"), WithObserver(a), WithObserver(note("1")), WithObserver(b), WithObserver(note("2")), WithObserver(ObserverFuncs{}))
	served(t, context.Background(), c.db, "SELECT 1")
	if len(a.take()) != 1 || len(b.take()) != 1 || strings.Join(order, ",") != "1,2" {
		t.Errorf("composed observers: a and b each want 1 call; order %v", order)
	}
	h := c.primary.DB()
	defer h.Close()
	if _, err := New(h, nil, WithObserver(nil)); err == nil || !strings.Contains(err.Error(), "WithObserver") {
		t.Errorf("New with a nil observer: %v", err)
	}
}

// WithCallInfo tells the caller which node served its last call.
func TestCallInfo(t *testing.T) {
	c := newCluster(t, 2, WithNodeNames("p", "r1", "r2"), WithDialect("generic"))
	ctx, info := WithCallInfo(context.Background())
	if _, ok := info.Last(); ok || info.Node() != "" || CallInfoFrom(ctx) != info || CallInfoFrom(context.Background()) != nil {
		t.Fatal("CallInfo before any call")
	}
	node := served(t, ctx, c.db, "SELECT 1")
	last, ok := info.Last()
	if !ok || info.Node() != node || last.Reason != ReasonPolicy || last.Context != nil || info.Calls() != 1 {
		t.Errorf("after a read served by %s: %+v (calls %d)", node, last, info.Calls())
	}
	if _, err := c.db.ExecContext(WithPrimary(ctx), "UPDATE t SET a = 1"); err != nil {
		t.Fatal(err)
	}
	if last, _ := info.Last(); last.Node != "p" || last.Op != OpExec || info.Calls() != 2 {
		t.Errorf("after a write: %+v", last)
	}
}

// At Debug the logger gets one line per call with node and reason; a
// logger not enabled for Debug gets none, and costs no allocation.
func TestDebugLogPerCall(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	level := new(slog.LevelVar)
	level.Set(slog.LevelDebug)
	l := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: level}))
	c := newCluster(t, 1, WithNodeNames("p", "r1"), WithDialect("generic"), WithLogger(l), WithHealthCheckInterval(time.Hour))
	ctx := context.Background()
	served(t, ctx, c.db, "SELECT 1")
	mu.Lock()
	out := buf.String()
	buf.Reset()
	mu.Unlock()
	if !strings.Contains(out, `msg="rwsplit: call" op=query node=r1 role=replica reason=policy`) {
		t.Errorf("debug log:\n%s", out)
	}

	level.Set(slog.LevelInfo)
	quiet := newCluster(t, 1, WithDialect("generic"), WithHealthCheckInterval(time.Hour))
	want := testing.AllocsPerRun(200, func() { quiet.db.QueryRowContext(ctx, "SELECT 1").Scan(new(string)) })
	got := testing.AllocsPerRun(200, func() { c.db.QueryRowContext(ctx, "SELECT 1").Scan(new(string)) })
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(buf.String(), "rwsplit: call") {
		t.Errorf("lines at Info: %s", buf.String())
	}
	if got != want {
		t.Errorf("a read with a logger at Info takes %.0f allocations; without a logger %.0f", got, want)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// An observer costs no allocation per call beyond its own: reads, writes
// and refusals allocate as without one.
func TestObserverAllocatesNothing(t *testing.T) {
	var n int
	count := ObserverFuncs{Call: func(e CallEvent) { n += int(e.Latency >> 63) }} // reads every field it keeps
	plain := newCluster(t, 1, WithDialect("generic"), WithHealthCheckInterval(time.Hour))
	observed := newCluster(t, 1, WithDialect("generic"), WithHealthCheckInterval(time.Hour), WithObserver(count))
	ctx := context.Background()
	for _, op := range []struct {
		name string
		run  func(db *DB)
	}{
		{"read", func(db *DB) { db.QueryRowContext(ctx, "SELECT 1").Scan(new(string)) }},
		{"write", func(db *DB) { db.ExecContext(ctx, "INSERT INTO t VALUES (1)") }},
	} {
		want := testing.AllocsPerRun(500, func() { op.run(plain.db) })
		got := testing.AllocsPerRun(500, func() { op.run(observed.db) })
		if got != want {
			t.Errorf("%s: %.0f allocations with an observer, %.0f without", op.name, got, want)
		}
	}
}
