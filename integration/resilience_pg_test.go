package integration

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// pgResilienceQuery returns the serving server's port. It sleeps a few
// milliseconds so that, under load, reads are in flight when a node dies.
const pgResilienceQuery = "SELECT inet_server_port() FROM pg_sleep(0.005)"

// TestResiliencePGFailures runs the node-failure scenarios on one
// PostgreSQL cluster of its own, one after another; each leaves every node
// running and caught up for the next, even when it fails.
func TestResiliencePGFailures(t *testing.T) {
	c := startOwnCluster(t, rwsplittest.Postgres, rwsplittest.LocalOptions{Replicas: 2})
	t.Run("ReplicaCrashUnderLoad", func(t *testing.T) {
		replicaCrashUnderLoad(t, c, c.Replicas()[0], pgResilienceQuery, rwsplit.RoundRobin())
	})
	t.Run("ReplicaStopAndRestart", func(t *testing.T) { pgReplicaStopAndRestart(t, c) })
	t.Run("FrozenReplicaSkipped", func(t *testing.T) { pgFrozenReplicaSkipped(t, c) })
	t.Run("FrozenReplicaUnderLoadHedged", func(t *testing.T) {
		frozenReplicaUnderLoadHedged(t, c, c.Replicas()[0], pgResilienceQuery)
	})
	t.Run("DegradedStart", func(t *testing.T) { pgDegradedStart(t, c) })
	t.Run("FallbackToPrimary", func(t *testing.T) { pgFallbackToPrimary(t, c) })
	t.Run("AllNodesDown", func(t *testing.T) { pgAllNodesDown(t, c) })
}

// pgReplicaStopAndRestart: a replica shut down cleanly is taken out by
// the probes alone (no traffic), reads meanwhile never fail nor reach it,
// and it comes back after a restart.
func pgReplicaStopAndRestart(t *testing.T, c *rwsplittest.LocalCluster) {
	healOnCleanup(t, c)
	victim, other := c.Replicas()[1], c.Replicas()[0]
	db := openCluster(t, c, rwsplit.WithHealthCheckInterval(fastInterval), rwsplit.WithPolicy(rwsplit.RoundRobin()))
	for i := range 10 {
		if _, err := readPort(db, pgResilienceQuery, i%2 == 1, readDeadline); err != nil {
			t.Fatalf("read before the stop: %v", err)
		}
	}
	if err := victim.Stop(); err != nil {
		t.Fatalf("stop %s: %v", victim.Name(), err)
	}
	stopped := time.Now()
	out := waitOut(t, db, victim, ejectCeiling)
	t.Logf("measured: %s out of rotation %v after Stop returned (probes only, interval %v)", victim.Name(), out.Round(time.Millisecond), fastInterval)
	if s := nodeStats(t, db, victim); s.Ejections != 1 || s.LastError == "" {
		t.Errorf("stopped replica: Ejections=%d LastError=%q, want 1 and a message", s.Ejections, s.LastError)
	}
	for i := range 20 {
		port, err := readPort(db, pgResilienceQuery, i%2 == 1, readDeadline)
		if err != nil {
			t.Errorf("read %d with %s stopped: %v", i, victim.Name(), err)
		} else if port != other.Port() {
			t.Errorf("read %d with %s stopped served by port %d, want %s (%d)", i, victim.Name(), port, other.Name(), other.Port())
		}
	}

	ctx := ctxTimeout(t, time.Minute)
	if err := victim.Start(ctx); err != nil {
		t.Fatalf("restart %s: %v", victim.Name(), err)
	}
	started := time.Now()
	eligible, served := waitRejoin(t, db, victim, pgResilienceQuery, started, rejoinCeiling)
	t.Logf("measured: %s eligible %v after Start returned (stopped for %v), first read served by it after %v",
		victim.Name(), eligible.Round(time.Millisecond), started.Sub(stopped).Round(time.Millisecond), served.Round(time.Millisecond))
}

// pgFrozenReplicaSkipped: a frozen replica (SIGSTOP: connections hang
// rather than fail) is taken out by probe timeouts; reads that start after
// that all run on the other replica without waiting on the frozen one; after
// Thaw it comes back. Reads in flight at the moment of the freeze are not
// tested: rescuing them needs hedged reads.
func pgFrozenReplicaSkipped(t *testing.T, c *rwsplittest.LocalCluster) {
	healOnCleanup(t, c)
	victim, other := c.Replicas()[0], c.Replicas()[1]
	const probeTimeout = 300 * time.Millisecond
	db := openCluster(t, c, rwsplit.WithHealthCheckInterval(fastInterval), rwsplit.WithHealthCheckTimeout(probeTimeout),
		rwsplit.WithPolicy(rwsplit.RoundRobin()))
	// Both replicas serve (and so hold pooled connections) before the freeze.
	seen := map[int]bool{}
	for i := 0; i < 100 && len(seen) < 2; i++ {
		port, err := readPort(db, pgResilienceQuery, i%2 == 1, readDeadline)
		if err != nil {
			t.Fatalf("read before the freeze: %v", err)
		}
		seen[port] = true
	}
	if !seen[victim.Port()] || !seen[other.Port()] {
		t.Fatalf("reads before the freeze reached ports %v, want both replicas", seen)
	}

	if err := victim.Freeze(); err != nil {
		t.Fatalf("freeze %s: %v", victim.Name(), err)
	}
	thawed := false
	defer func() {
		if !thawed {
			if err := victim.Thaw(); err != nil {
				t.Errorf("thaw %s: %v", victim.Name(), err)
			}
		}
	}()
	frozen := time.Now()
	out := waitOut(t, db, victim, ejectCeiling)
	t.Logf("measured: frozen %s out of rotation %v after Freeze (interval %v, probe timeout %v)",
		victim.Name(), out.Round(time.Millisecond), fastInterval, probeTimeout)
	if s := nodeStats(t, db, victim); s.LastError == "" {
		t.Errorf("frozen replica has no LastError: %+v", s)
	} else {
		t.Logf("frozen replica's LastError: %q", s.LastError)
	}

	const readFor = time.Second
	rd := startReaders(pgResilienceQuery, 8, db)
	defer rd.Stop()
	time.Sleep(readFor)
	res := rd.Stop()
	checkNoFailures(t, "8 readers after the freeze was detected", res)
	if res.byPort[victim.Port()] != 0 {
		t.Errorf("the frozen replica served %d reads", res.byPort[victim.Port()])
	}
	if res.reads == 0 || res.byPort[other.Port()] != res.reads-len(res.failures) {
		t.Errorf("reads after the freeze: %v, want all on %s (%d)", res.byPort, other.Name(), other.Port())
	}
	// No read waited for the frozen node: each took a fraction of its
	// deadline.
	if res.slowest > readDeadline/2 {
		t.Errorf("slowest read after the freeze took %v", res.slowest)
	}
	if s := nodeStats(t, db, victim); s.Up || s.Eligible {
		t.Errorf("frozen replica back in rotation while still frozen: %+v", s)
	}

	if err := victim.Thaw(); err != nil {
		t.Fatalf("thaw %s: %v", victim.Name(), err)
	}
	thawed = true
	thawAt := time.Now()
	eligible, served := waitRejoin(t, db, victim, pgResilienceQuery, thawAt, rejoinCeiling)
	t.Logf("measured: %s eligible %v after Thaw (frozen for %v), first read served by it after %v",
		victim.Name(), eligible.Round(time.Millisecond), thawAt.Sub(frozen).Round(time.Millisecond), served.Round(time.Millisecond))
}

// pgDegradedStart: Open succeeds while a replica is down, reads work on the
// other one, and the stopped one joins once it is started.
func pgDegradedStart(t *testing.T, c *rwsplittest.LocalCluster) {
	healOnCleanup(t, c)
	victim, other := c.Replicas()[1], c.Replicas()[0]
	if err := victim.Stop(); err != nil {
		t.Fatalf("stop %s: %v", victim.Name(), err)
	}
	db := openCluster(t, c, rwsplit.WithHealthCheckInterval(fastInterval), rwsplit.WithPolicy(rwsplit.RoundRobin()))
	// The first reads may be sent to the stopped replica before a probe
	// has found it down; they must be retried, not fail.
	for i := range 20 {
		port, err := readPort(db, pgResilienceQuery, i%2 == 1, readDeadline)
		if err != nil {
			t.Errorf("read %d on a handle opened with %s down: %v", i, victim.Name(), err)
		} else if port != other.Port() {
			t.Errorf("read %d served by port %d, want %s (%d)", i, port, other.Name(), other.Port())
		}
	}
	waitOut(t, db, victim, ejectCeiling)
	if s := nodeStats(t, db, victim); s.LastError == "" {
		t.Errorf("stopped replica has no LastError: %+v", s)
	}

	ctx := ctxTimeout(t, time.Minute)
	if err := victim.Start(ctx); err != nil {
		t.Fatalf("start %s: %v", victim.Name(), err)
	}
	started := time.Now()
	eligible, served := waitRejoin(t, db, victim, pgResilienceQuery, started, rejoinCeiling)
	t.Logf("measured: %s (down at Open) eligible %v after Start returned, first read served by it after %v",
		victim.Name(), eligible.Round(time.Millisecond), served.Round(time.Millisecond))
}

// pgFallbackToPrimary: with both replicas crashed, reads go to the primary
// (counted in Stats.Fallbacks) within the fallback limit; with
// WithFallbackLimit(0) they fail with ErrNoReplica; with a small limit,
// concurrent reads beyond it are refused.
func pgFallbackToPrimary(t *testing.T, c *rwsplittest.LocalCluster) {
	healOnCleanup(t, c)
	ctx := ctxTimeout(t, time.Minute)
	primary, _ := ports(c)
	interval := rwsplit.WithHealthCheckInterval(fastInterval)
	dbDefault := openCluster(t, c, interval)
	dbNone := openCluster(t, c, interval, rwsplit.WithFallbackLimit(0))
	dbTwo := openCluster(t, c, interval, rwsplit.WithFallbackLimit(2))
	for _, db := range []*rwsplit.DB{dbDefault, dbNone, dbTwo} {
		if err := db.PingContext(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	}
	for _, n := range c.Replicas() {
		if err := n.Crash(); err != nil {
			t.Fatalf("crash %s: %v", n.Name(), err)
		}
	}
	crashed := time.Now()
	for _, db := range []*rwsplit.DB{dbDefault, dbNone, dbTwo} {
		if _, ok := waitFor(ejectCeiling, func() bool { return db.Stats().Eligible == 0 }); !ok {
			t.Fatalf("replicas still eligible %v after both crashed:\n%s", ejectCeiling, db.Stats())
		}
	}
	t.Logf("measured: no replica eligible on any of 3 idle handles %v after both crashed", time.Since(crashed).Round(time.Millisecond))

	// Default limit: reads run on the primary and are counted.
	before := dbDefault.Stats().Fallbacks
	for i := range 20 {
		port, err := readPort(dbDefault, pgResilienceQuery, i%2 == 1, readDeadline)
		if err != nil {
			t.Errorf("fallback read %d: %v", i, err)
		} else if port != primary {
			t.Errorf("fallback read %d served by port %d, want the primary %d", i, port, primary)
		}
	}
	if got := dbDefault.Stats().Fallbacks - before; got < 20 {
		t.Errorf("Stats.Fallbacks grew by %d over 20 fallback reads", got)
	}
	tx, err := dbDefault.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Errorf("read-only transaction with no replica: %v", err)
	} else {
		if p := pgPort(t, ctx, tx, "SELECT inet_server_port()"); p != primary {
			t.Errorf("read-only transaction with no replica on port %d, want the primary", p)
		}
		tx.Rollback()
	}

	// Limit 0: no read goes to the primary for want of a replica.
	rejectedBefore := dbNone.Stats().FallbackRejected
	_, err = readPort(dbNone, pgResilienceQuery, false, readDeadline)
	t.Logf("QueryRow with no replica and fallback limit 0: %v", err)
	if !errors.Is(err, rwsplit.ErrNoReplica) {
		t.Errorf("QueryRow with no replica and fallback limit 0: %v, want ErrNoReplica", err)
	}
	if _, err := readPort(dbNone, pgResilienceQuery, true, readDeadline); !errors.Is(err, rwsplit.ErrNoReplica) {
		t.Errorf("Query with no replica and fallback limit 0: %v, want ErrNoReplica", err)
	}
	if _, err := dbNone.BeginTx(ctx, &sql.TxOptions{ReadOnly: true}); !errors.Is(err, rwsplit.ErrNoReplica) {
		t.Errorf("read-only BeginTx with no replica and fallback limit 0: %v, want ErrNoReplica", err)
	}
	if got := dbNone.Stats().FallbackRejected - rejectedBefore; got != 3 {
		t.Errorf("Stats.FallbackRejected grew by %d, want 3", got)
	}
	if p := pgPort(t, rwsplit.WithPrimary(ctx), dbNone, "SELECT inet_server_port()"); p != primary {
		t.Errorf("WithPrimary read on port %d, want the primary", p)
	}
	mustExec(t, ctx, dbNone, "SELECT 1") // writes are not affected

	// Limit 2: of 8 concurrent slow reads, those beyond the limit fail at
	// once with ErrNoReplica, the others run on the primary.
	var (
		wg                 sync.WaitGroup
		mu                 sync.Mutex
		okOnPrimary, other int
		refused            int
		otherErrs          []error
	)
	gate := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			<-gate
			port, err := readPort(dbTwo, "SELECT inet_server_port() FROM pg_sleep(0.5)", false, readDeadline)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, rwsplit.ErrNoReplica):
				refused++
			case err != nil:
				otherErrs = append(otherErrs, err)
			case port == primary:
				okOnPrimary++
			default:
				other++
			}
		})
	}
	close(gate)
	wg.Wait()
	t.Logf("fallback limit 2, 8 concurrent reads: %d on the primary, %d refused, %d elsewhere, errors %v", okOnPrimary, refused, other, otherErrs)
	if okOnPrimary < 1 || okOnPrimary > 2 || refused < 1 || other != 0 || len(otherErrs) != 0 {
		t.Errorf("fallback limit 2: %d reads on the primary, %d refused, %d elsewhere, errors %v; want 1-2 on the primary and the rest refused",
			okOnPrimary, refused, other, otherErrs)
	}
	if s := dbTwo.Stats(); s.FallbackRejected != uint64(refused) {
		t.Errorf("Stats.FallbackRejected = %d, want %d", s.FallbackRejected, refused)
	}

	// Replicas back: the limit-0 handle reads from them again.
	for _, n := range c.Replicas() {
		if err := n.Start(ctx); err != nil {
			t.Fatalf("restart %s: %v", n.Name(), err)
		}
	}
	started := time.Now()
	for _, n := range c.Replicas() {
		eligible, served := waitRejoin(t, dbNone, n, pgResilienceQuery, started, rejoinCeiling)
		t.Logf("measured: %s eligible %v after the last Start returned, first read served by it after %v",
			n.Name(), eligible.Round(time.Millisecond), served.Round(time.Millisecond))
	}
}

// pgAllNodesDown: with every node crashed, reads and writes fail with an
// error well within their deadline and Stats shows every node down; once
// the nodes are started again the same handle reads and writes again.
func pgAllNodesDown(t *testing.T, c *rwsplittest.LocalCluster) {
	healOnCleanup(t, c)
	ctx := ctxTimeout(t, time.Minute)
	_, replicas := ports(c)
	db := openCluster(t, c, rwsplit.WithHealthCheckInterval(fastInterval))
	mustExec(t, ctx, db, "CREATE TABLE IF NOT EXISTS resilience_pg_w (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())")
	if _, err := readPort(db, pgResilienceQuery, false, readDeadline); err != nil {
		t.Fatalf("read before the crash: %v", err)
	}

	for _, n := range append(c.Replicas(), c.Primary()) {
		if err := n.Crash(); err != nil {
			t.Fatalf("crash %s: %v", n.Name(), err)
		}
	}
	crashed := time.Now()
	allDown := func() bool {
		for _, n := range db.Stats().Nodes {
			if n.Up {
				return false
			}
		}
		return true
	}
	if _, ok := waitFor(ejectCeiling, allDown); !ok {
		t.Fatalf("not every node down %v after all crashed:\n%s", ejectCeiling, db.Stats())
	}
	t.Logf("measured: every node out of rotation %v after the crashes (probes only)", time.Since(crashed).Round(time.Millisecond))

	// Each call gets its own deadline and must fail on its own, quickly,
	// with the cause: the nodes refuse connections.
	check := func(what string, call func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), readDeadline)
		defer cancel()
		start := time.Now()
		err := call(ctx)
		took := time.Since(start)
		t.Logf("%s with every node down: after %v: %v", what, took.Round(time.Millisecond), err)
		switch {
		case err == nil:
			t.Errorf("%s succeeded with every node down", what)
		case took > readDeadline+500*time.Millisecond:
			t.Errorf("%s took %v, beyond its deadline of %v", what, took, readDeadline)
		case errors.Is(err, context.DeadlineExceeded):
			t.Errorf("%s ran into its deadline instead of failing with the cause: %v", what, err)
		case !errors.Is(err, rwsplit.ErrNoReplica) && !errors.Is(err, rwsplit.ErrNoPrimary) && !isConnError(err):
			t.Errorf("%s failed with %v (%T), want ErrNoReplica, ErrNoPrimary or a connection error", what, err, err)
		}
	}
	check("QueryRow", func(ctx context.Context) error {
		var p int
		return db.QueryRowContext(ctx, pgResilienceQuery).Scan(&p)
	})
	check("Query", func(ctx context.Context) error {
		rows, err := db.QueryContext(ctx, pgResilienceQuery)
		if err == nil {
			rows.Close()
		}
		return err
	})
	check("read-only BeginTx", func(ctx context.Context) error {
		tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err == nil {
			tx.Rollback()
		}
		return err
	})
	check("Exec", func(ctx context.Context) error {
		_, err := db.ExecContext(ctx, "INSERT INTO resilience_pg_w DEFAULT VALUES")
		return err
	})
	check("Begin", func(ctx context.Context) error {
		tx, err := db.BeginTx(ctx, nil)
		if err == nil {
			tx.Rollback()
		}
		return err
	})
	st := db.Stats()
	for _, n := range st.Nodes {
		if n.Up || n.Eligible {
			t.Errorf("node %s in rotation with every node down:\n%s", n.Name, st)
		}
	}
	if st.Eligible != 0 {
		t.Errorf("Stats.Eligible = %d with every node down", st.Eligible)
	}

	// Back up, primary first (the standbys stream from it).
	for _, n := range c.Nodes() {
		if err := n.Start(ctx); err != nil {
			t.Fatalf("restart %s: %v", n.Name(), err)
		}
	}
	started := time.Now()
	var wrote, read, readReplica time.Duration
	for i := 0; wrote == 0 || read == 0 || readReplica == 0; i++ {
		if time.Since(started) > 3*rejoinCeiling {
			t.Fatalf("%v after the last Start: write ok after %v, read ok after %v, read on a replica after %v (0: not yet):\n%s",
				time.Since(started), wrote, read, readReplica, db.Stats())
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		if wrote == 0 {
			if _, err := db.ExecContext(cctx, "INSERT INTO resilience_pg_w DEFAULT VALUES"); err == nil {
				wrote = time.Since(started)
			}
		}
		cancel()
		if port, err := readPort(db, pgResilienceQuery, i%2 == 1, time.Second); err == nil {
			if read == 0 {
				read = time.Since(started)
			}
			if _, ok := replicas[port]; ok && readReplica == 0 {
				readReplica = time.Since(started)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("measured after the last Start returned: first write ok %v, first read ok %v, first read on a replica %v",
		wrote.Round(time.Millisecond), read.Round(time.Millisecond), readReplica.Round(time.Millisecond))
	if _, ok := waitFor(rejoinCeiling, func() bool { return db.Stats().Eligible == 2 }); !ok {
		t.Errorf("replicas not both eligible after the restart:\n%s", db.Stats())
	}
}

// TestResiliencePGLag: a replica replaying 2s behind the primary
// (recovery_min_apply_delay) under a steady trickle of writes gets no reads
// under WithMaxReplicationLag(500ms), and Stats shows its lag; once the
// writes stop it catches up and serves reads again.
func TestResiliencePGLag(t *testing.T) {
	const applyDelay = 2 * time.Second
	c := startOwnCluster(t, rwsplittest.Postgres, rwsplittest.LocalOptions{Replicas: 2, ApplyDelay: []time.Duration{applyDelay}})
	ctx := ctxTimeout(t, time.Minute)
	s := lagScenario{
		c:          c,
		delayed:    c.Replicas()[0],
		prompt:     c.Replicas()[1],
		applyDelay: applyDelay,
		maxLag:     500 * time.Millisecond,
		insert:     "INSERT INTO lag_pg DEFAULT VALUES",
		staleQuery: "SELECT inet_server_port(), EXTRACT(EPOCH FROM clock_timestamp() - max(ts))::float8 * 1e6 FROM lag_pg",
		portQuery:  pgResilienceQuery,
	}
	s.db = openCluster(t, c, rwsplit.WithMaxReplicationLag(s.maxLag), rwsplit.WithHealthCheckInterval(fastInterval),
		rwsplit.WithPolicy(rwsplit.RoundRobin()))
	mustExec(t, ctx, s.db, "CREATE TABLE lag_pg (id bigserial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT clock_timestamp())")
	if err := c.WaitCaughtUp(ctx, c.Primary()); err != nil {
		t.Fatal(err)
	}
	checkLagBound(t, s)
}
