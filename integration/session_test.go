package integration

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// Read-your-writes on real replication: each cluster's replicas apply
// with a delay, so that a read sent to a replica right after a write would
// miss it. Every read below must find its write (0 stale), and once the
// replicas have caught up most session reads must be served by them.

// sessionSQL is what the session tests ask each server family.
type sessionSQL struct {
	create string // the table
	insert string // id, value
	read   string // value and the serving port of one id
	count  string // rows and the serving port
	value  string // the value of one id
}

var (
	pgSessionSQL = sessionSQL{
		create: "CREATE TABLE IF NOT EXISTS sess (id bigint PRIMARY KEY, v text NOT NULL)",
		insert: "INSERT INTO sess (id, v) VALUES ($1, $2)",
		read:   "SELECT v, inet_server_port() FROM sess WHERE id = $1",
		count:  "SELECT count(*), inet_server_port() FROM sess",
		value:  "SELECT v FROM sess WHERE id = $1",
	}
	mariaSessionSQL = sessionSQL{
		create: "CREATE TABLE IF NOT EXISTS sess (id bigint PRIMARY KEY, v varchar(64) NOT NULL)",
		insert: "INSERT INTO sess (id, v) VALUES (?, ?)",
		read:   "SELECT v, @@port FROM sess WHERE id = ?",
		count:  "SELECT count(*), @@port FROM sess",
		value:  "SELECT v FROM sess WHERE id = ?",
	}
)

var sessionIDs atomic.Int64

// sessionEnv is a cluster with delayed replicas and a handle on it.
type sessionEnv struct {
	c            *rwsplittest.LocalCluster
	db           *rwsplit.DB
	q            sessionSQL
	primaryPort  int
	replicaPorts map[int]string
}

func newSessionEnv(t *testing.T, kind rwsplittest.Kind, delays []time.Duration, opts ...rwsplit.Option) *sessionEnv {
	t.Helper()
	c := startOwnCluster(t, kind, rwsplittest.LocalOptions{Replicas: len(delays), ApplyDelay: delays})
	e := &sessionEnv{c: c, q: pgSessionSQL}
	if kind == rwsplittest.MariaDB {
		e.q = mariaSessionSQL
	}
	e.primaryPort, e.replicaPorts = ports(c)
	e.db = e.open(t, opts...)
	ctx := ctxTimeout(t, time.Minute)
	if _, err := e.db.ExecContext(ctx, e.q.create); err != nil {
		t.Fatalf("create table: %v", err)
	}
	e.caughtUp(t)
	return e
}

// open returns another handle on the cluster, probing through the monitor
// accounts (which may read every replication detail).
func (e *sessionEnv) open(t *testing.T, opts ...rwsplit.Option) *rwsplit.DB {
	t.Helper()
	var replicas []string
	var monitors []*sql.DB
	for _, n := range e.c.Nodes() {
		m, err := sql.Open(e.c.DriverName(), n.MonitorDSN())
		if err != nil {
			t.Fatalf("monitor handle: %v", err)
		}
		monitors = append(monitors, m)
		if n != e.c.Primary() {
			replicas = append(replicas, n.DSN())
		}
	}
	opts = append([]rwsplit.Option{
		rwsplit.WithHealthCheckInterval(fastInterval),
		rwsplit.WithMonitor(monitors[0], monitors[1:]...),
	}, opts...)
	db, err := rwsplit.Open(e.c.DriverName(), e.c.Primary().DSN(), replicas, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if _, ok := waitFor(10*time.Second, func() bool { return db.Stats().Eligible == len(replicas) }); !ok {
		t.Fatalf("replicas not eligible:\n%s", db.Stats())
	}
	return db
}

func (e *sessionEnv) caughtUp(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.c.WaitCaughtUp(ctx, e.c.Primary()); err != nil {
		t.Fatalf("waiting for the replicas: %v", err)
	}
}

// write inserts a new row through db with ctx and returns its id.
func (e *sessionEnv) write(t *testing.T, ctx context.Context, db *rwsplit.DB) int64 {
	t.Helper()
	id := sessionIDs.Add(1)
	if _, err := db.ExecContext(ctx, e.q.insert, id, fmt.Sprint("v", id)); err != nil {
		t.Fatalf("insert %d: %v", id, err)
	}
	return id
}

// read reads row id through db with ctx; it reports whether the row was
// there and which port served the read.
func (e *sessionEnv) read(ctx context.Context, db *rwsplit.DB, id int64) (found bool, port int, err error) {
	var v string
	err = db.QueryRowContext(ctx, e.q.read, id).Scan(&v, &port)
	if errors.Is(err, sql.ErrNoRows) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	if v != fmt.Sprint("v", id) {
		return false, port, fmt.Errorf("row %d has %q", id, v)
	}
	return true, port, nil
}

// mustRead reads row id, fails the test if it is missing, and reports
// whether a replica served it.
func (e *sessionEnv) mustRead(t *testing.T, ctx context.Context, db *rwsplit.DB, id int64, what string) bool {
	t.Helper()
	found, port, err := e.read(ctx, db, id)
	if err != nil {
		t.Fatalf("%s: read %d: %v", what, id, err)
	}
	if !found {
		t.Fatalf("%s: stale read: row %d missing (served by port %d, primary %d)\n%s", what, id, port, e.primaryPort, db.Stats())
	}
	_, replica := e.replicaPorts[port]
	return replica
}

func TestSessionPostgres(t *testing.T) {
	t.Parallel()
	e := newSessionEnv(t, rwsplittest.Postgres, []time.Duration{300 * time.Millisecond, 300 * time.Millisecond})
	runSessionSuite(t, e)
}

func TestSessionMariaDB(t *testing.T) {
	t.Parallel()
	e := newSessionEnv(t, rwsplittest.MariaDB, []time.Duration{time.Second, time.Second})
	runSessionSuite(t, e)
}

func runSessionSuite(t *testing.T, e *sessionEnv) {
	t.Run("WriteThenRead", func(t *testing.T) {
		ctx := ctxTimeout(t, 2*time.Minute)
		s := rwsplit.NewSession()
		sctx := rwsplit.WithSession(ctx, s)
		var ids []int64
		onReplica := 0
		for range 100 {
			id := e.write(t, sctx, e.db)
			ids = append(ids, id)
			if e.mustRead(t, sctx, e.db, id, "right after the write") {
				onReplica++
			}
		}
		t.Logf("100 write-then-read pairs: 0 stale, %d reads on replicas (they apply with a delay)", onReplica)
		// Without the session, a read right after a write misses it on a
		// delayed replica: the delay is real.
		id := e.write(t, ctx, e.db)
		if found, port, err := e.read(ctx, e.db, id); err != nil || (found && e.replicaPorts[port] != "") {
			t.Logf("a read without the session found the new row on a replica (err %v): the replicas did not lag", err)
		}
		e.caughtUp(t)
		time.Sleep(3 * fastInterval) // a probe sees the replicas caught up
		onReplica = 0
		for _, id := range ids {
			if e.mustRead(t, sctx, e.db, id, "after catching up") {
				onReplica++
			}
		}
		t.Logf("after the replicas caught up: %d of %d session reads on replicas\n%s", onReplica, len(ids), e.db.Stats())
		if onReplica < 90 {
			t.Errorf("only %d of %d session reads on replicas after they caught up; want at least 90", onReplica, len(ids))
		}
	})

	t.Run("TokenToAnotherHandle", func(t *testing.T) {
		ctx := ctxTimeout(t, time.Minute)
		other := e.open(t)
		for i := range 20 {
			s := rwsplit.NewSession()
			id := e.write(t, rwsplit.WithSession(ctx, s), e.db)
			s2, err := rwsplit.ResumeSession(s.Token())
			if err != nil {
				t.Fatalf("ResumeSession: %v", err)
			}
			e.mustRead(t, rwsplit.WithSession(ctx, s2), other, id, fmt.Sprintf("token %d on another handle", i))
		}
		if n := other.Stats().TokensRejected; n != 0 {
			t.Errorf("%d tokens rejected", n)
		}
	})

	t.Run("Transaction", func(t *testing.T) {
		ctx := ctxTimeout(t, time.Minute)
		s := rwsplit.NewSession()
		txCtx, endTx := context.WithCancel(rwsplit.WithSession(ctx, s))
		defer endTx()
		tx, err := e.db.BeginTx(txCtx, nil)
		if err != nil {
			t.Fatalf("BeginTx: %v", err)
		}
		id := sessionIDs.Add(1)
		if _, err := tx.ExecContext(txCtx, e.q.insert, id, fmt.Sprint("v", id)); err != nil {
			t.Fatalf("insert in tx: %v", err)
		}
		// A session read while the transaction is open: the row is not
		// committed, so nobody has it.
		sctx := rwsplit.WithSession(ctx, s)
		if found, _, err := e.read(sctx, e.db, id); err != nil || found {
			t.Fatalf("read during the transaction: found %v, err %v", found, err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		// The transaction's context is still alive: the session is
		// pending, and resolves the primary's position at each read.
		for range 5 {
			e.mustRead(t, sctx, e.db, id, "after Commit, transaction context alive")
		}
		endTx()
		e.mustRead(t, sctx, e.db, id, "after the transaction's context ended")
	})

	t.Run("RunInTx", func(t *testing.T) {
		ctx := ctxTimeout(t, time.Minute)
		s := rwsplit.NewSession()
		sctx := rwsplit.WithSession(ctx, s)
		before := e.db.Stats().PositionReads
		for range 10 {
			id := sessionIDs.Add(1)
			err := e.db.RunInTx(sctx, nil, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(sctx, e.q.insert, id, fmt.Sprint("v", id))
				return err
			})
			if err != nil {
				t.Fatalf("RunInTx: %v", err)
			}
			e.mustRead(t, sctx, e.db, id, "after RunInTx")
		}
		t.Logf("10 RunInTx writes + reads made %d position reads", e.db.Stats().PositionReads-before)
	})

	t.Run("ConnAndWritingQuery", func(t *testing.T) {
		ctx := ctxTimeout(t, time.Minute)
		s := rwsplit.NewSession()
		sctx := rwsplit.WithSession(ctx, s)
		// A write on a *sql.Conn, with a context that stays alive; the
		// caller marks the end.
		conn, err := e.db.Conn(sctx)
		if err != nil {
			t.Fatalf("Conn: %v", err)
		}
		id := sessionIDs.Add(1)
		if _, err := conn.ExecContext(sctx, e.q.insert, id, fmt.Sprint("v", id)); err != nil {
			t.Fatalf("insert on Conn: %v", err)
		}
		conn.Close()
		e.mustRead(t, sctx, e.db, id, "after a Conn write, still pending")
		s.WritesDone()
		e.mustRead(t, sctx, e.db, id, "after WritesDone")

		// A write routed from QueryContext (its rows come back; it commits
		// after they are read).
		id = sessionIDs.Add(1)
		qctx, done := context.WithCancel(sctx)
		rows, err := e.db.QueryContext(qctx, e.q.insert+" RETURNING id", id, fmt.Sprint("v", id))
		if err != nil {
			done()
			t.Fatalf("writing query: %v", err)
		}
		rows.Close()
		e.mustRead(t, sctx, e.db, id, "after a writing query, its context alive")
		done()
		e.mustRead(t, sctx, e.db, id, "after a writing query, its context done")
	})

	t.Run("ConcurrentSessions", func(t *testing.T) {
		ctx := ctxTimeout(t, 2*time.Minute)
		var stale, reads, onReplica atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for range 50 {
			wg.Go(func() {
				s := rwsplit.NewSession()
				sctx := rwsplit.WithSession(ctx, s)
				for range 10 {
					id := sessionIDs.Add(1)
					if _, err := e.db.ExecContext(sctx, e.q.insert, id, fmt.Sprint("v", id)); err != nil {
						errs <- err
						return
					}
					found, port, err := e.read(sctx, e.db, id)
					if err != nil {
						errs <- err
						return
					}
					reads.Add(1)
					if !found {
						stale.Add(1)
					}
					if e.replicaPorts[port] != "" {
						onReplica.Add(1)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent session: %v", err)
		}
		t.Logf("50 sessions: %d reads, %d stale, %d on replicas", reads.Load(), stale.Load(), onReplica.Load())
		if stale.Load() != 0 {
			t.Errorf("%d stale reads of %d", stale.Load(), reads.Load())
		}
	})

	t.Run("ConsistencyPerCall", func(t *testing.T) {
		ctx := ctxTimeout(t, time.Minute)
		// Keep writing so that the replicas lag by their apply delay,
		// and wait until the probes have measured it.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				id := sessionIDs.Add(1)
				if _, err := e.db.ExecContext(ctx, e.q.insert, id, fmt.Sprint("v", id)); err != nil {
					t.Errorf("writer: %v", err)
					return
				}
			}
		})
		defer func() { close(stop); wg.Wait() }()
		lagging := func() bool {
			for _, n := range e.db.Stats().Nodes {
				if n.Role == rwsplit.RoleReplica && (!n.LagKnown || n.Lag < 200*time.Millisecond) {
					return false
				}
			}
			return true
		}
		if _, ok := waitFor(10*time.Second, lagging); !ok {
			t.Fatalf("the replicas' lag was not measured:\n%s", e.db.Stats())
		}
		port := func(c rwsplit.Consistency) int {
			var n int64
			var p int
			if err := e.db.QueryRowContext(rwsplit.WithConsistency(ctx, c), e.q.count).Scan(&n, &p); err != nil {
				t.Fatalf("%v: %v", c, err)
			}
			return p
		}
		for _, tc := range []struct {
			c         rwsplit.Consistency
			onPrimary bool
		}{
			{rwsplit.Strong, true},
			{rwsplit.BoundedStaleness(50 * time.Millisecond), true},
			{rwsplit.BoundedStaleness(time.Minute), false},
			{rwsplit.Eventual, false},
		} {
			if got := port(tc.c) == e.primaryPort; got != tc.onPrimary {
				t.Errorf("%v: on the primary %v, want %v\n%s", tc.c, got, tc.onPrimary, e.db.Stats())
			}
		}
	})

	t.Run("WriteConcern", func(t *testing.T) {
		ctx := ctxTimeout(t, time.Minute)
		replicas := e.c.Replicas()
		direct := make([]*sql.DB, len(replicas))
		for i, n := range replicas {
			h, err := sql.Open(e.c.DriverName(), n.DSN())
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			direct[i] = h
		}
		has := func(id int64) int {
			n := 0
			for _, h := range direct {
				var v string
				if err := h.QueryRowContext(ctx, e.q.value, id).Scan(&v); err == nil {
					n++
				}
			}
			return n
		}
		for _, want := range []int{1, rwsplit.AllReplicas} {
			wctx := rwsplit.WithWriteConcern(ctx, rwsplit.WriteConcern{Replicas: want, Timeout: 20 * time.Second})
			start := time.Now()
			id := e.write(t, wctx, e.db)
			took := time.Since(start)
			got := has(id)
			t.Logf("write concern %d: returned after %v; %d replicas have the row", want, took.Round(time.Millisecond), got)
			if (want == rwsplit.AllReplicas && got != len(replicas)) || (want > 0 && got < want) {
				t.Errorf("write concern %d: only %d replicas have the row when the write returned", want, got)
			}
		}
		// The timeout path: the replicas apply later than the bound.
		wctx := rwsplit.WithWriteConcern(ctx, rwsplit.WriteConcern{Replicas: 1, Timeout: 50 * time.Millisecond})
		id := sessionIDs.Add(1)
		res, err := e.db.ExecContext(wctx, e.q.insert, id, fmt.Sprint("v", id))
		var wce *rwsplit.WriteConcernError
		if !errors.As(err, &wce) {
			t.Fatalf("write concern timeout: err = %v, want a *WriteConcernError", err)
		}
		if res == nil {
			t.Fatalf("write concern timeout: no sql.Result with the error")
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			t.Errorf("RowsAffected = %d, %v", n, err)
		}
		if wce.Acked != 0 || wce.Wanted != 1 || wce.Position == "" {
			t.Errorf("WriteConcernError = %+v", wce)
		}
		t.Logf("timeout: %v", err)
		// Committed on the primary all the same.
		e.mustRead(t, rwsplit.WithPrimary(ctx), e.db, id, "the timed-out write on the primary")
	})
}

// Monotonic reads: two replicas at different lags and a writer that never
// stops. A session's successive counts must never go down; reads without a
// session may (they move between replicas).
func TestSessionMonotonicReads(t *testing.T) {
	t.Parallel()
	e := newSessionEnv(t, rwsplittest.Postgres, []time.Duration{100 * time.Millisecond, 1200 * time.Millisecond})
	ctx := ctxTimeout(t, time.Minute)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			id := sessionIDs.Add(1)
			if _, err := e.db.ExecContext(ctx, e.q.insert, id, fmt.Sprint("v", id)); err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()
	time.Sleep(1500 * time.Millisecond) // both replicas have something, at different points

	count := func(ctx context.Context) (int64, int) {
		var n int64
		var port int
		if err := e.db.QueryRowContext(ctx, e.q.count).Scan(&n, &port); err != nil {
			t.Fatalf("count: %v", err)
		}
		return n, port
	}
	measure := func(ctx context.Context) (backwards, onReplica, reads int) {
		var last int64 = -1
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			n, port := count(ctx)
			reads++
			if n < last {
				backwards++
			}
			last = max(last, n)
			if e.replicaPorts[port] != "" {
				onReplica++
			}
			time.Sleep(2 * time.Millisecond)
		}
		return
	}
	s := rwsplit.NewSession()
	back, onReplica, reads := measure(rwsplit.WithSession(ctx, s))
	t.Logf("session: %d reads, %d on replicas, %d went backwards", reads, onReplica, back)
	if back != 0 {
		t.Errorf("a session read saw fewer rows than an earlier one %d times", back)
	}
	if onReplica == 0 {
		t.Errorf("no session read was served by a replica")
	}
	back, onReplica, reads = measure(ctx)
	t.Logf("without a session (eventual): %d reads, %d on replicas, %d went backwards", reads, onReplica, back)
}

// Tokens come back from clients: a DB with a key accepts only tokens
// signed with it, and a DB without one rejects a position beyond the
// primary's, so that a forged token cannot pin a session to the primary.
func TestSessionTokensUntrusted(t *testing.T) {
	ctx := ctxTimeout(t, time.Minute)
	primaryPort, replicaPorts := ports(pgCluster)
	k1, k2 := []byte("0123456789abcdef-first-key"), []byte("0123456789abcdef-other-key")
	a := openPG(t, rwsplit.WithSessionKey(k1), rwsplit.WithHealthCheckInterval(fastInterval))
	sameKey := openPG(t, rwsplit.WithSessionKey(k1), rwsplit.WithHealthCheckInterval(fastInterval))
	otherKey := openPG(t, rwsplit.WithSessionKey(k2), rwsplit.WithHealthCheckInterval(fastInterval))
	noKey := openPG(t, rwsplit.WithHealthCheckInterval(fastInterval))
	for _, db := range []*rwsplit.DB{a, sameKey, otherKey, noKey} {
		if _, ok := waitFor(10*time.Second, func() bool { return db.Stats().Eligible == 2 }); !ok {
			t.Fatalf("replicas not eligible:\n%s", db.Stats())
		}
	}
	if _, err := a.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS tokens (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	s := rwsplit.NewSession()
	if _, err := a.ExecContext(rwsplit.WithSession(ctx, s), "INSERT INTO tokens VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	signed := s.Token()

	readPortWith := func(db *rwsplit.DB, tok string) int {
		t.Helper()
		r, err := rwsplit.ResumeSession(tok)
		if err != nil {
			t.Fatalf("ResumeSession(%q): %v", tok, err)
		}
		var found, port int
		if err := db.QueryRowContext(rwsplit.WithSession(ctx, r), "SELECT count(*)::int, inet_server_port() FROM tokens WHERE id = 1").Scan(&found, &port); err != nil {
			t.Fatal(err)
		}
		return port
	}

	readPortWith(sameKey, signed)
	if n := sameKey.Stats().TokensRejected; n != 0 {
		t.Errorf("a token signed with the DB's key was rejected")
	}
	readPortWith(otherKey, signed)
	if n := otherKey.Stats().TokensRejected; n != 1 {
		t.Errorf("a token signed with another key: %d rejected, want 1", n)
	}
	unsigned := rwsplit.NewSession()
	if _, err := noKey.ExecContext(rwsplit.WithSession(ctx, unsigned), "INSERT INTO tokens VALUES (2) ON CONFLICT DO NOTHING"); err != nil {
		t.Fatal(err)
	}
	readPortWith(a, unsigned.Token())
	if n := a.Stats().TokensRejected; n != 1 {
		t.Errorf("an unsigned token on a DB with a key: %d rejected, want 1", n)
	}

	// A forged unsigned token: version 1, kind PostgreSQL, no flags, an
	// LSN far beyond anything the primary has written.
	forged := base64.RawURLEncoding.EncodeToString(binary.AppendUvarint([]byte{1, 1, 0}, 1<<60))
	onReplica := 0
	for range 20 {
		port := readPortWith(noKey, forged)
		if port != primaryPort && replicaPorts[port] != "" {
			onReplica++
		}
	}
	if n := noKey.Stats().TokensRejected; n != 20 {
		t.Errorf("forged tokens rejected: %d of 20", n)
	}
	if onReplica != 20 {
		t.Errorf("only %d of 20 reads with a forged token on replicas: it pinned reads to the primary", onReplica)
	}

	// A token from another epoch (timeline 99: from before a failover,
	// say) is not trusted as it is: the session re-reads the current
	// primary's position once, and is neither rejected nor stale.
	if _, ok := waitFor(5*time.Second, func() bool { return noKey.Stats().Nodes[0].Epoch != "" }); !ok {
		t.Fatalf("the primary's timeline is unknown:\n%s", noKey.Stats())
	}
	b := binary.AppendUvarint([]byte{1, 1, 2}, 99) // version, PostgreSQL, epoch follows
	b = binary.AppendUvarint(b, 0)                 // no epoch id
	b = binary.AppendUvarint(b, 1)                 // LSN 0/1
	oldEpoch := base64.RawURLEncoding.EncodeToString(b)
	rejected, positions := noKey.Stats().TokensRejected, noKey.Stats().PositionReads
	readPortWith(noKey, oldEpoch)
	st := noKey.Stats()
	if st.TokensRejected != rejected {
		t.Errorf("a token of another epoch was rejected")
	}
	if st.PositionReads == positions {
		t.Errorf("a token of another epoch was trusted without reading the primary's position")
	}
}
