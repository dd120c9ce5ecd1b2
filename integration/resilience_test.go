package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// Helpers of the resilience tests (resilience_pg_test.go,
// resilience_maria_test.go). Those tests crash, stop and freeze servers, so
// each starts a cluster of its own; the shared clusters of TestMain are
// never touched. Every claim about which node served a read is checked by
// asking the server for its port.

// Time limits. The figures the library aims at are far lower (a node
// leaves after two failed probes and returns two probes after it answers);
// the ceilings are loose because CI runs on two cores under -race.
const (
	fastInterval  = 200 * time.Millisecond // health check interval of these tests
	readDeadline  = 2 * time.Second        // each read's own deadline
	ejectCeiling  = 5 * time.Second        // failure → node out of rotation
	rejoinCeiling = 5 * time.Second        // Node.Start returned → eligible again
)

// startOwnCluster starts a throw-away cluster for one test and closes it
// when the test ends. Progress messages go to the test's log while the
// test runs, and are dropped after it.
func startOwnCluster(t *testing.T, kind rwsplittest.Kind, opts rwsplittest.LocalOptions) *rwsplittest.LocalCluster {
	t.Helper()
	var mu sync.Mutex
	done := false
	// Registered first, so it runs last: after Close has logged.
	t.Cleanup(func() {
		mu.Lock()
		done = true
		mu.Unlock()
	})
	opts.Logf = func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Logf(format, args...)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := rwsplittest.StartLocal(ctx, kind, opts)
	if err != nil {
		t.Fatalf("starting a %s cluster: %v", kind, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing the cluster: %v", err)
		}
	})
	return c
}

// healOnCleanup makes the calling (sub)test leave every node of c running,
// thawed and caught up with the primary, even when it fails half-way, so
// that the next scenario on the same cluster starts from a whole cluster.
func healOnCleanup(t *testing.T, c *rwsplittest.LocalCluster) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, n := range c.Nodes() { // the primary first
			if n.Frozen() {
				if err := n.Thaw(); err != nil {
					t.Errorf("thaw %s: %v", n.Name(), err)
				}
			}
			if !n.Running() {
				if err := n.Start(ctx); err != nil {
					t.Errorf("restart %s: %v", n.Name(), err)
				}
			}
		}
		if err := c.WaitCaughtUp(ctx, c.Primary()); err != nil {
			t.Errorf("waiting for the replicas to catch up: %v", err)
		}
	})
}

// nodeStats returns the Stats entry of cluster node n (named host:port by
// Open).
func nodeStats(t *testing.T, db *rwsplit.DB, n *rwsplittest.LocalNode) rwsplit.NodeStats {
	t.Helper()
	for _, s := range db.Stats().Nodes {
		if s.Name == n.Addr() {
			return s
		}
	}
	t.Fatalf("Stats has no node named %s:\n%s", n.Addr(), db.Stats())
	return rwsplit.NodeStats{}
}

// waitFor polls cond every 10ms until it holds or limit passes, and
// returns how long it took and whether it held.
func waitFor(limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reader is what a test reads through: a *rwsplit.DB, or the routing
// *sql.DB of one (sql.OpenDB(db.Connector())).
type reader interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// readPort runs a read that returns the serving server's port, alternating
// between QueryRowContext and QueryContext (both retry paths), under its
// own deadline.
func readPort(db reader, query string, viaQuery bool, deadline time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var port int
	if !viaQuery {
		err := db.QueryRowContext(ctx, query).Scan(&port)
		return port, err
	}
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return 0, err
		}
		return 0, sql.ErrNoRows
	}
	if err := rows.Scan(&port); err != nil {
		return 0, err
	}
	return port, rows.Close()
}

// loadResult is what a run of concurrent readers saw.
type loadResult struct {
	mu       sync.Mutex
	reads    int
	byPort   map[int]int
	failures []string
	slowest  time.Duration
}

func (r *loadResult) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("%d reads, %d failed, by port %v, slowest %v", r.reads, len(r.failures), r.byPort, r.slowest.Round(time.Millisecond))
}

// runReaders runs workers goroutines that read in a loop until stop is
// closed, each read under readDeadline, and returns once all have stopped.
// Worker w reads through dbs[w % len(dbs)].
func runReaders(dbs []reader, query string, workers int, stop <-chan struct{}) *loadResult {
	res := &loadResult{byPort: map[int]int{}}
	begin := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				port, err := readPort(dbs[w%len(dbs)], query, (w+i)%2 == 1, readDeadline)
				took := time.Since(start)
				res.mu.Lock()
				res.reads++
				res.slowest = max(res.slowest, took)
				if err != nil {
					res.failures = append(res.failures, fmt.Sprintf("t+%v: %v", start.Sub(begin).Round(time.Millisecond), err))
				} else {
					res.byPort[port]++
				}
				res.mu.Unlock()
			}
		})
	}
	wg.Wait()
	return res
}

// checkNoFailures reports the reads of res that failed.
func checkNoFailures(t *testing.T, what string, res *loadResult) {
	t.Helper()
	t.Logf("%s: %s", what, res)
	res.mu.Lock()
	defer res.mu.Unlock()
	if len(res.failures) > 0 {
		show := res.failures
		if len(show) > 10 {
			show = show[:10]
		}
		t.Errorf("%s: %d of %d reads failed, first ones:\n  %s", what, len(res.failures), res.reads, strings.Join(show, "\n  "))
	}
}

// waitOut waits until node n is out of rotation in db (Stats: not Up) and
// returns how long that took.
func waitOut(t *testing.T, db *rwsplit.DB, n *rwsplittest.LocalNode, limit time.Duration) time.Duration {
	t.Helper()
	took, ok := waitFor(limit, func() bool { return !nodeStats(t, db, n).Up })
	if !ok {
		t.Fatalf("%s still in rotation %v after it failed:\n%s", n.Name(), limit, db.Stats())
	}
	return took
}

// waitRejoin waits until node n is eligible for reads in db again, then
// until a read is served by it (asked of the server: query returns the
// port). It returns both times, measured from since (typically the moment
// Node.Start returned). Every read made meanwhile must succeed.
func waitRejoin(t *testing.T, db *rwsplit.DB, n *rwsplittest.LocalNode, query string, since time.Time, limit time.Duration) (eligible, served time.Duration) {
	t.Helper()
	if _, ok := waitFor(limit, func() bool { return nodeStats(t, db, n).Eligible }); !ok {
		t.Fatalf("%s not eligible %v after it came back:\n%s", n.Name(), limit, db.Stats())
	}
	eligible = time.Since(since)
	if s := nodeStats(t, db, n); !s.Up {
		t.Errorf("%s eligible but not Up: %+v", n.Name(), s)
	}
	deadline := time.Now().Add(limit)
	for i := 0; ; i++ {
		port, err := readPort(db, query, i%2 == 1, readDeadline)
		if err != nil {
			t.Errorf("read while %s rejoins: %v", n.Name(), err)
		} else if port == n.Port() {
			return eligible, time.Since(since)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is eligible but served none of %d reads in %v:\n%s", n.Name(), i+1, limit, db.Stats())
		}
	}
}

// isConnError reports whether err is a connection-level failure: a refused,
// reset or lost connection, as a driver reports a server that is down.
func isConnError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "connect: ")
}

// trickle writes one row every period through db (the primary) until stop
// is closed, and returns a channel that yields the number of rows written
// and the write errors once it has stopped.
func trickle(db *rwsplit.DB, insert string, period time.Duration, stop <-chan struct{}) <-chan trickleResult {
	out := make(chan trickleResult, 1)
	go func() {
		var res trickleResult
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				out <- res
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), readDeadline)
			_, err := db.ExecContext(ctx, insert)
			cancel()
			if err != nil {
				res.errs = append(res.errs, err)
			} else {
				res.rows++
			}
		}
	}()
	return out
}

type trickleResult struct {
	rows int
	errs []error
}

// readers is a running set of concurrent readers (see runReaders).
type readers struct {
	stop chan struct{}
	done chan *loadResult
	once sync.Once
	res  *loadResult
}

func startReaders(query string, workers int, dbs ...reader) *readers {
	r := &readers{stop: make(chan struct{}), done: make(chan *loadResult, 1)}
	go func() { r.done <- runReaders(dbs, query, workers, r.stop) }()
	return r
}

// Stop stops the readers, waits for them and returns what they saw. It is
// idempotent, so that a test can defer it and also call it.
func (r *readers) Stop() *loadResult {
	r.once.Do(func() {
		close(r.stop)
		r.res = <-r.done
	})
	return r.res
}

// replicaCrashUnderLoad crashes victim (a replica of c) while 8 goroutines
// read, four through a *rwsplit.DB and four through its routing *sql.DB
// (DB.Connector), each read under its own 2s deadline, and checks
// that no read fails (reads in flight on the victim and reads sent to it
// before it is taken out are retried elsewhere), that the victim is taken
// out of rotation, and that it comes back once restarted. query returns
// the serving server's port.
func replicaCrashUnderLoad(t *testing.T, c *rwsplittest.LocalCluster, victim *rwsplittest.LocalNode, query string, policy rwsplit.Policy) {
	healOnCleanup(t, c)
	ctx := ctxTimeout(t, time.Minute)
	db := openCluster(t, c, rwsplit.WithHealthCheckInterval(fastInterval), rwsplit.WithPolicy(policy))
	primary, replicas := ports(c)
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	routed := sql.OpenDB(db.Connector())
	defer routed.Close()
	routed.SetMaxIdleConns(8)

	const loadFor, crashAfter = 3 * time.Second, time.Second
	begin := time.Now()
	rd := startReaders(query, 8, db, routed)
	defer rd.Stop()
	time.Sleep(crashAfter)
	crashing := time.Now()
	if err := victim.Crash(); err != nil {
		t.Fatalf("crash %s: %v", victim.Name(), err)
	}
	crashed := time.Now()
	waitOut(t, db, victim, ejectCeiling)
	t.Logf("measured: %s out of rotation %v after Crash was called (Crash itself took %v: kill, wait for the port to close)",
		victim.Name(), time.Since(crashing).Round(time.Millisecond), crashed.Sub(crashing).Round(time.Millisecond))
	time.Sleep(time.Until(begin.Add(loadFor)))
	res := rd.Stop()
	checkNoFailures(t, "8 readers across the crash (4 through the DB, 4 through its routing *sql.DB)", res)
	if res.byPort[victim.Port()] == 0 {
		t.Errorf("the victim served no reads before its crash (%v): the test proves nothing", res.byPort)
	}
	if res.byPort[primary] != 0 {
		t.Logf("note: %d reads fell back to the primary", res.byPort[primary])
	}
	for port := range res.byPort {
		if _, ok := replicas[port]; !ok && port != primary {
			t.Errorf("a read was served by port %d, which is no node of the cluster", port)
		}
	}

	s := nodeStats(t, db, victim)
	t.Logf("victim after the crash: Up=%v Eligible=%v Ejections=%d Errors=%d Retries=%d LastError=%q",
		s.Up, s.Eligible, s.Ejections, s.Errors, s.Retries, s.LastError)
	if s.Up || s.Eligible {
		t.Errorf("crashed replica still in rotation: %+v", s)
	}
	if s.Ejections < 1 {
		t.Errorf("crashed replica: Ejections = %d, want ≥ 1", s.Ejections)
	}
	if s.LastError == "" {
		t.Errorf("crashed replica has no LastError")
	}
	if st := db.Stats(); st.Eligible != 1 {
		t.Errorf("Stats.Eligible = %d with one replica crashed, want 1:\n%s", st.Eligible, st)
	}

	if err := victim.Start(ctx); err != nil {
		t.Fatalf("restart %s: %v", victim.Name(), err)
	}
	started := time.Now()
	eligible, served := waitRejoin(t, db, victim, query, started, rejoinCeiling)
	t.Logf("measured: %s eligible %v after Start returned (down %v in all), first read served by it after %v",
		victim.Name(), eligible.Round(time.Millisecond), started.Sub(crashed).Round(time.Millisecond), served.Round(time.Millisecond))
	if eligible > rejoinCeiling {
		t.Errorf("%s took %v to rejoin, want ≤ %v", victim.Name(), eligible, rejoinCeiling)
	}
	if s := nodeStats(t, db, victim); s.Ejections != 1 {
		t.Logf("note: victim ejected %d times", s.Ejections)
	}
}

// statsDump is db's Stats table followed by each node's LastError, which
// the table leaves out.
func statsDump(db *rwsplit.DB) string {
	s := db.Stats()
	var b strings.Builder
	b.WriteString(s.String())
	for _, n := range s.Nodes {
		if n.LastError != "" {
			fmt.Fprintf(&b, "%s last error: %s\n", n.Name, n.LastError)
		}
	}
	return b.String()
}

// lagScenario describes a cluster with one replica replaying behind the
// primary, for checkLagBound.
type lagScenario struct {
	c               *rwsplittest.LocalCluster
	db              *rwsplit.DB // with WithMaxReplicationLag(maxLag) and the RoundRobin policy
	delayed, prompt *rwsplittest.LocalNode
	applyDelay      time.Duration // the delayed replica's configured apply delay
	maxLag          time.Duration
	insert          string // writes one row (with the time of writing) on the primary
	// staleQuery returns the serving server's port and how old, in
	// microseconds, the newest row it has is (NULL while it has none):
	// the ground truth of how far behind the server is, give or take the
	// trickle's period.
	staleQuery string
	portQuery  string // returns the serving server's port
}

// trickleEvery is the period of the writes that keep a delayed replica
// behind.
const trickleEvery = 100 * time.Millisecond

// readStale runs s.staleQuery.
func (s *lagScenario) readStale(i int) (port int, stale time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), readDeadline)
	defer cancel()
	var us sql.NullFloat64
	if i%2 == 0 {
		err = s.db.QueryRowContext(ctx, s.staleQuery).Scan(&port, &us)
	} else {
		var rows *sql.Rows
		if rows, err = s.db.QueryContext(ctx, s.staleQuery); err != nil {
			return 0, 0, err
		}
		defer rows.Close()
		if !rows.Next() {
			return 0, 0, errors.Join(sql.ErrNoRows, rows.Err())
		}
		err = rows.Scan(&port, &us)
	}
	return port, time.Duration(us.Float64 * float64(time.Microsecond)), err
}

// staleRange is the smallest and largest staleness of the reads one
// server served.
type staleRange struct {
	n      int
	lo, hi time.Duration
}

func (r *staleRange) add(d time.Duration) {
	if r.n == 0 || d < r.lo {
		r.lo = d
	}
	r.hi = max(r.hi, d)
	r.n++
}

func (r staleRange) String() string {
	return fmt.Sprintf("%d reads of data %v..%v old", r.n, r.lo.Round(time.Millisecond), r.hi.Round(time.Millisecond))
}

// checkLagBound: while a steady trickle of writes keeps s.delayed about
// s.applyDelay behind, it gets no reads and Stats shows it up, not
// eligible, with a known lag beyond s.maxLag; once the writes stop it
// catches up and serves reads again.
func checkLagBound(t *testing.T, s lagScenario) {
	db := s.db
	// Without a known lag nothing below can hold: stop here.
	if took, ok := waitFor(3*time.Second, func() bool {
		return db.Stats().Eligible == 2 && nodeStats(t, db, s.delayed).LagKnown && nodeStats(t, db, s.prompt).LagKnown
	}); !ok {
		t.Fatalf("replicas not both eligible with their lag known %v after Open, while caught up and idle:\n%s", took.Round(time.Millisecond), statsDump(db))
	}
	for _, n := range []*rwsplittest.LocalNode{s.delayed, s.prompt} {
		st := nodeStats(t, db, n)
		t.Logf("caught up, idle: %s lag %v (known %v), eligible %v", n.Name(), st.Lag, st.LagKnown, st.Eligible)
	}

	stopWrites := make(chan struct{})
	stopped := false
	written := trickle(db, s.insert, trickleEvery, stopWrites)
	stopTrickle := func() trickleResult {
		stopped = true
		close(stopWrites)
		return <-written
	}
	defer func() {
		if !stopped {
			stopTrickle()
		}
	}()
	writing := time.Now()
	out, ok := waitFor(3*s.applyDelay, func() bool { return !nodeStats(t, db, s.delayed).Eligible })
	if !ok {
		t.Fatalf("delayed replica still eligible %v into the writes:\n%s", out.Round(time.Millisecond), statsDump(db))
	}
	t.Logf("measured: delayed replica ineligible %v after the writes began (bound %v)", out.Round(time.Millisecond), s.maxLag)

	// For 2s of reads the replica stays out, and Stats says why; each
	// read also tells how old the data it saw was.
	stale := map[int]*staleRange{}
	var lagLo, lagHi, promptHi time.Duration
	bad := 0
	for i := 0; time.Since(writing) < out+2*time.Second; i++ {
		port, age, err := s.readStale(i)
		if err != nil {
			t.Errorf("read while the replica lags: %v", err)
			continue
		}
		if stale[port] == nil {
			stale[port] = &staleRange{}
		}
		stale[port].add(age)
		st := nodeStats(t, db, s.delayed)
		if st.Eligible || !st.Up || !st.LagKnown || st.Lag <= s.maxLag {
			if bad++; bad <= 5 {
				t.Errorf("delayed replica under writes: Eligible=%v Up=%v LagKnown=%v Lag=%v; want not eligible, up, lag known and > %v",
					st.Eligible, st.Up, st.LagKnown, st.Lag, s.maxLag)
			}
		}
		if lagLo == 0 || st.Lag < lagLo {
			lagLo = st.Lag
		}
		lagHi = max(lagHi, st.Lag)
		promptHi = max(promptHi, nodeStats(t, db, s.prompt).Lag)
		time.Sleep(5 * time.Millisecond)
	}
	if bad > 5 {
		t.Errorf("... %d such Stats samples in all", bad)
	}
	t.Logf("measured: under writes every %v, Stats gives the delayed replica (apply delay %v) a lag of %v..%v, the other at most %v",
		trickleEvery, s.applyDelay, lagLo.Round(time.Millisecond), lagHi.Round(time.Millisecond), promptHi.Round(time.Millisecond))
	for port, r := range stale {
		t.Logf("measured: port %d served %v", port, r)
	}
	if r := stale[s.delayed.Port()]; r != nil {
		t.Errorf("the delayed replica served %v while lagging (bound %v, Stats lag %v..%v)", r, s.maxLag, lagLo, lagHi)
	}
	if stale[s.prompt.Port()] == nil {
		t.Errorf("the prompt replica served no reads while the other lagged")
	}

	res := stopTrickle()
	last := time.Now()
	if len(res.errs) > 0 {
		t.Errorf("%d of the trickle's writes failed, first: %v", len(res.errs), res.errs[0])
	}
	t.Logf("trickle: %d rows written", res.rows)
	if st := nodeStats(t, db, s.delayed); st.Eligible {
		t.Errorf("delayed replica eligible as soon as the writes stopped (lag %v, apply delay %v)", st.Lag, s.applyDelay)
	}
	back, ok := waitFor(s.applyDelay+rejoinCeiling, func() bool { return nodeStats(t, db, s.delayed).Eligible })
	if !ok {
		t.Fatalf("delayed replica not eligible %v after the writes stopped:\n%s", back.Round(time.Millisecond), statsDump(db))
	}
	t.Logf("measured: delayed replica eligible again %v after the last write (apply delay %v)", back.Round(time.Millisecond), s.applyDelay)
	_, served := waitRejoin(t, db, s.delayed, s.portQuery, last, rejoinCeiling)
	t.Logf("measured: first read served by the delayed replica %v after the last write", served.Round(time.Millisecond))
}
