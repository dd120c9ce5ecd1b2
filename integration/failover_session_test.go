package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// Read-your-writes across a failover: concurrent sessions write and read
// back their own rows while the primary crashes and a replica is promoted
// from outside. The replicas apply with a delay, so that a session read
// that ignored its position would miss its write, and they have caught up
// before the crash, so that no acknowledged write is lost: any read that
// misses the session's last acknowledged write is rwsplit's doing. The
// requirement: 0 stale reads over the whole run.
//
// The run: warm-up; writes paused until the replicas have caught up (reads
// go on); the primary crashed and the writers resumed at once, so that
// they meet the outage (ErrNoPrimary; a write that returned an error is
// not acknowledged, and each attempt writes a new row, since a failed one
// may have committed); a replica promoted and the other made to follow it,
// as in runFailover; writes and reads on the new primary; writes paused
// again while the remaining replica catches up and serves the sessions.

// fsSQL is what the failover session test asks each server family.
type fsSQL struct {
	create string // the table: one row per (worker, seq)
	insert string // worker, seq, value
	last   string // seq, value and serving port of a worker's newest row
	port   string // the serving port
}

var (
	pgFsSQL = fsSQL{
		create: "CREATE TABLE IF NOT EXISTS fsess (worker int NOT NULL, seq bigint NOT NULL, v text NOT NULL, PRIMARY KEY (worker, seq))",
		insert: "INSERT INTO fsess (worker, seq, v) VALUES ($1, $2, $3)",
		last:   "SELECT seq, v, inet_server_port() FROM fsess WHERE worker = $1 ORDER BY seq DESC LIMIT 1",
		port:   "SELECT inet_server_port()",
	}
	mariaFsSQL = fsSQL{
		create: "CREATE TABLE IF NOT EXISTS fsess (worker int NOT NULL, seq bigint NOT NULL, v varchar(64) NOT NULL, PRIMARY KEY (worker, seq))",
		insert: "INSERT INTO fsess (worker, seq, v) VALUES (?, ?, ?)",
		last:   "SELECT seq, v, @@port FROM fsess WHERE worker = ? ORDER BY seq DESC LIMIT 1",
		port:   "SELECT @@port",
	}
)

const (
	fsWorkers      = 8                     // concurrent sessions
	fsTokenEvery   = 3                     // every n-th iteration also reads through a resumed token on a second handle
	fsWaitPause    = 20 * time.Millisecond // between the reads of a session's waiting reader
	fsWarmupAcks   = 20                    // writes each session has acknowledged before the crash
	fsAfterFor     = 3 * time.Second       // writes and reads on the new primary
	fsResumeLimit  = 10 * time.Second      // loose ceiling: promotion returned → every session wrote again
	fsReadDeadline = 5 * time.Second       // each read's own deadline (plus the session wait on the waiting handle): loose, for loaded machines
	fsTestCeiling  = 60 * time.Second      // loose ceiling on the scenario: cluster ready → workers stopped
)

// The phases of the run; every read and write is counted in the phase it
// began in.
const (
	fsWarmup = iota // writes and reads on the original primary
	fsPaused        // writes paused, the replicas caught up; reads go on
	fsOutage        // primary crashed, until a first write is acknowledged by the new one
	fsAfter         // writes and reads on the new primary
	fsQuiet         // writes paused again: the remaining replica catches up
	fsPhases
)

var fsPhaseNames = [fsPhases]string{"warm-up", "paused, caught up", "outage", "after failover", "quiet after failover"}

// How a read was made: through the writing session on the handle that
// wrote; through a session resumed from its token on a second handle; or,
// by a reader of its own beside each session, through a session resumed
// from its latest token on a third handle that lets session reads wait
// for a replica to apply their position (WithSessionWait).
const (
	viaSession = iota
	viaToken
	viaTokenWait
	fsVias
)

var fsViaNames = [fsVias]string{"session", "token", "token+wait"}

// fsCounts are one phase's figures.
type fsCounts struct {
	reads    [fsVias]atomic.Int64    // reads that returned (a row or no row)
	stale    [fsVias]atomic.Int64    // reads that missed the session's last acknowledged write
	readErrs [fsVias]atomic.Int64    // reads that failed
	byNode   [fsVias][3]atomic.Int64 // reads that returned a row, by serving node
	wrong    atomic.Int64            // rows with a wrong value or a sequence number never written
	unacked  atomic.Int64            // reads in the writing goroutine that saw a write whose call had failed (allowed)

	writes     atomic.Int64 // writes acknowledged
	writeFails atomic.Int64 // writes that returned an error
	noPrimary  atomic.Int64 // of which ErrNoPrimary

	lastReadErr, lastWE atomic.Value
}

// fsSum adds the counters of every way of reading.
func fsSum(a *[fsVias]atomic.Int64) int64 {
	var n int64
	for i := range a {
		n += a[i].Load()
	}
	return n
}

func TestFailoverSessionReadsPostgres(t *testing.T) {
	t.Parallel()
	runFailoverSessionReads(t, rwsplittest.Postgres)
}

func TestFailoverSessionReadsMariaDB(t *testing.T) {
	t.Parallel()
	runFailoverSessionReads(t, rwsplittest.MariaDB)
}

// fsToken is a session's token taken right after a write it acknowledged.
type fsToken struct {
	token string
	acked int64
}

func runFailoverSessionReads(t *testing.T, kind rwsplittest.Kind) {
	testStart := time.Now()
	q, delay, quietFor := pgFsSQL, 300*time.Millisecond, 2*time.Second
	if kind == rwsplittest.MariaDB {
		// MASTER_DELAY has a resolution of whole seconds.
		q, delay, quietFor = mariaFsSQL, time.Second, 3*time.Second
	}
	sessionWait := 2*delay + time.Second
	c := startOwnCluster(t, kind, rwsplittest.LocalOptions{Replicas: 2, ApplyDelay: []time.Duration{delay, delay}})
	ctx := ctxTimeout(t, 3*time.Minute)
	oldPrimary, promoted, other := c.Primary(), c.Replicas()[0], c.Replicas()[1]
	nodes := [3]*rwsplittest.LocalNode{oldPrimary, promoted, other}
	nodeIndex := map[int]int{}
	for i, n := range nodes {
		nodeIndex[n.Port()] = i
	}
	e := &sessionEnv{c: c}
	db := e.open(t)                                        // sessions write and read through it
	db2 := e.open(t)                                       // resumed tokens read through it, as another process would
	db3 := e.open(t, rwsplit.WithSessionWait(sessionWait)) // the same, waiting for replicas
	handles := [fsVias]*rwsplit.DB{db, db2, db3}
	if _, err := db.ExecContext(ctx, q.create); err != nil {
		t.Fatalf("create table: %v", err)
	}
	e.caughtUp(t)
	clusterReady := time.Since(testStart)

	var (
		cnt      [fsPhases]fsCounts
		phase    atomic.Int32
		stop     atomic.Bool
		gate     sync.RWMutex            // writers hold it shared; the test takes it to pause writes
		acked    [fsWorkers]atomic.Int64 // each session's last acknowledged write
		tried    [fsWorkers]atomic.Int64 // each session's last attempted write
		tokens   [fsWorkers]atomic.Pointer[fsToken]
		wg       sync.WaitGroup
		detailMu sync.Mutex
		details  []string // the first stale or wrong reads
	)
	note := func(format string, args ...any) {
		detailMu.Lock()
		defer detailMu.Unlock()
		if len(details) < 20 {
			details = append(details, fmt.Sprintf(format, args...))
		}
	}
	value := func(w int, seq int64) string { return fmt.Sprintf("w%d-%d", w, seq) }

	// check reads worker w's newest row through handles[via] with rctx and
	// judges it against lastAcked, the worker's last acknowledged write
	// when rctx's session was taken, and its writes attempted so far.
	check := func(rctx context.Context, via int, w int, lastAcked int64, ph int32) {
		pc := &cnt[ph]
		h := handles[via]
		deadline := fsReadDeadline
		if via == viaTokenWait {
			deadline += sessionWait
		}
		cctx, cancel := context.WithTimeout(rctx, deadline)
		defer cancel()
		var (
			seq  int64
			v    string
			port int
		)
		err := h.QueryRowContext(cctx, q.last, w).Scan(&seq, &v, &port)
		lastTried := tried[w].Load()
		found := err == nil
		if errors.Is(err, sql.ErrNoRows) {
			err = nil
		}
		if err != nil {
			pc.readErrs[via].Add(1)
			pc.lastReadErr.Store(fmt.Sprintf("%s: %v", fsViaNames[via], err))
			return
		}
		pc.reads[via].Add(1)
		if i, ok := nodeIndex[port]; ok && found {
			pc.byNode[via][i].Add(1)
		}
		if found && (v != value(w, seq) || seq > lastTried || seq <= 0) {
			pc.wrong.Add(1)
			note("%s: wrong data: %s read of worker %d: seq %d value %q (last tried %d) from port %d",
				fsPhaseNames[ph], fsViaNames[via], w, seq, v, lastTried, port)
		}
		if seq < lastAcked {
			pc.stale[via].Add(1)
			note("%s: STALE %s read: worker %d acknowledged seq %d, read %d (found %v) from port %d\n%s",
				fsPhaseNames[ph], fsViaNames[via], w, lastAcked, seq, found, port, h.Stats())
		} else if seq > lastAcked && via != viaTokenWait {
			pc.unacked.Add(1)
		}
	}

	// The sessions: each writes its next row, reads it back through the
	// session, and every few iterations through a session resumed from
	// its token on another handle. Beside each, a reader resumes its
	// latest token on the waiting handle.
	for w := range fsWorkers {
		wg.Go(func() {
			s := rwsplit.NewSession()
			sctx := rwsplit.WithSession(ctx, s)
			var lastAcked, lastTried int64
			for iter := 0; !stop.Load(); iter++ {
				if gate.TryRLock() {
					ph := phase.Load()
					lastTried++
					seq := lastTried // a new number for each attempt: a failed one may have committed
					tried[w].Store(seq)
					wctx, cancel := context.WithTimeout(sctx, 2*time.Second)
					_, err := db.ExecContext(wctx, q.insert, w, seq, value(w, seq))
					cancel()
					gate.RUnlock()
					pc := &cnt[ph]
					if err == nil {
						lastAcked = seq
						acked[w].Store(seq)
						tokens[w].Store(&fsToken{token: s.Token(), acked: seq})
						pc.writes.Add(1)
					} else {
						pc.writeFails.Add(1)
						pc.lastWE.Store(err.Error())
						if errors.Is(err, rwsplit.ErrNoPrimary) {
							pc.noPrimary.Add(1)
						}
						time.Sleep(10 * time.Millisecond)
					}
				}
				ph := phase.Load()
				check(sctx, viaSession, w, lastAcked, ph)
				if iter%fsTokenEvery == 0 {
					s2, err := rwsplit.ResumeSession(s.Token())
					if err != nil {
						t.Errorf("ResumeSession: %v", err)
						return
					}
					check(rwsplit.WithSession(ctx, s2), viaToken, w, lastAcked, ph)
				}
				time.Sleep(time.Duration(5+w) * time.Millisecond)
			}
		})
		wg.Go(func() {
			for !stop.Load() {
				tok := tokens[w].Load()
				if tok == nil {
					time.Sleep(fsWaitPause)
					continue
				}
				ph := phase.Load()
				s, err := rwsplit.ResumeSession(tok.token)
				if err != nil {
					t.Errorf("ResumeSession: %v", err)
					return
				}
				check(rwsplit.WithSession(ctx, s), viaTokenWait, w, tok.acked, ph)
				time.Sleep(fsWaitPause)
			}
		})
	}
	stopWorkers := func() {
		if !stop.Swap(true) {
			wg.Wait()
		}
	}
	defer stopWorkers()
	ackedAll := func(base [fsWorkers]int64) bool {
		for w := range fsWorkers {
			if acked[w].Load() <= base[w] {
				return false
			}
		}
		return true
	}

	// Warm-up: every session has written and read on the original primary.
	var floor [fsWorkers]int64
	for w := range floor {
		floor[w] = fsWarmupAcks - 1
	}
	if _, ok := waitFor(30*time.Second, func() bool { return ackedAll(floor) }); !ok {
		t.Fatalf("the sessions made no progress: %v\n%s", cnt[fsWarmup].lastWE.Load(), db.Stats())
	}

	// Pause the writers (the lock waits for the writes in flight) until the
	// replicas have everything, so that the promoted node has every
	// acknowledged write. Reads go on, and move to the replicas once the
	// probes see them caught up.
	gate.Lock()
	phase.Store(fsPaused)
	e.caughtUp(t)
	time.Sleep(3 * fastInterval)
	var atCrash [fsWorkers]int64
	for w := range atCrash {
		atCrash[w] = acked[w].Load()
	}

	// Crash the primary; the writers resume at once and meet the outage.
	crashAt := time.Now()
	if err := oldPrimary.Crash(); err != nil {
		gate.Unlock()
		t.Fatal(err)
	}
	phase.Store(fsOutage)
	gate.Unlock()
	if err := promoted.Promote(ctx); err != nil {
		t.Fatalf("promote: %v", err)
	}
	promotedAt := time.Now()
	tookFirst, ok := waitFor(fsResumeLimit, func() bool { return cnt[fsOutage].writes.Load() > 0 })
	if !ok {
		t.Fatalf("no write succeeded within %v of the promotion (last write error: %v)\n%s",
			fsResumeLimit, cnt[fsOutage].lastWE.Load(), db.Stats())
	}
	phase.Store(fsAfter)
	took, ok := waitFor(fsResumeLimit, func() bool { return ackedAll(atCrash) })
	if !ok {
		t.Fatalf("not every session wrote again within %v of the promotion (last write error: %v)\n%s",
			fsResumeLimit, cnt[fsAfter].lastWE.Load(), db.Stats())
	}
	took += tookFirst
	resumedAt := time.Now()
	// The other replica follows the new primary.
	if err := c.Follow(ctx, other, promoted); err != nil {
		t.Fatalf("follow: %v", err)
	}
	followedAt := time.Now()

	// Writes go to the promoted node; every handle knows it.
	serverPort := func(h *rwsplit.DB) (int, error) {
		var port int
		err := h.Primary().QueryRowContext(ctx, q.port).Scan(&port)
		return port, err
	}
	if port, err := serverPort(db); err != nil || port != promoted.Port() {
		t.Errorf("db.Primary() is the server on port %d (err %v), want the promoted %s on %d\n%s", port, err, promoted.Name(), promoted.Port(), db.Stats())
	}
	for _, h := range handles {
		if _, ok := waitFor(5*time.Second, func() bool { port, err := serverPort(h); return err == nil && port == promoted.Port() }); !ok {
			t.Errorf("a handle's Primary() is not the promoted node\n%s", h.Stats())
		}
		if r := nodeStats(t, h, promoted).Role; r != rwsplit.RolePrimary {
			t.Errorf("the promoted node has role %v, want primary\n%s", r, h.Stats())
		}
		if n := h.Stats().PrimaryChanges; n != 1 {
			t.Errorf("PrimaryChanges = %d, want 1", n)
		}
	}

	time.Sleep(fsAfterFor)
	// Quiet: writes pause again; the other replica catches up with the
	// sessions' positions on the new timeline / primary and serves them.
	gate.Lock()
	phase.Store(fsQuiet)
	time.Sleep(quietFor)
	stopWorkers()
	gate.Unlock()
	total := time.Since(testStart)
	scenario := total - clusterReady

	// The figures.
	var reads, stale, wrong, readErrs int64
	var rb, wb strings.Builder
	fmt.Fprintf(&rb, "reads:\n%-22s %-10s %7s %6s %8s %8s %8s %8s\n", "phase", "via", "reads", "stale", "failed",
		"on "+oldPrimary.Name(), "on "+promoted.Name(), "on "+other.Name())
	fmt.Fprintf(&wb, "writes:\n%-22s %8s %8s %10s %8s %8s\n", "phase", "acked", "failed", "NoPrimary", "wrong", "unacked")
	for ph := range fsPhases {
		pc := &cnt[ph]
		reads += fsSum(&pc.reads)
		stale += fsSum(&pc.stale)
		readErrs += fsSum(&pc.readErrs)
		wrong += pc.wrong.Load()
		for via := range fsVias {
			fmt.Fprintf(&rb, "%-22s %-10s %7d %6d %8d %8d %8d %8d\n", fsPhaseNames[ph], fsViaNames[via],
				pc.reads[via].Load(), pc.stale[via].Load(), pc.readErrs[via].Load(),
				pc.byNode[via][0].Load(), pc.byNode[via][1].Load(), pc.byNode[via][2].Load())
		}
		fmt.Fprintf(&wb, "%-22s %8d %8d %10d %8d %8d\n", fsPhaseNames[ph],
			pc.writes.Load(), pc.writeFails.Load(), pc.noPrimary.Load(), pc.wrong.Load(), pc.unacked.Load())
	}
	t.Logf("%d sessions, apply delay %v, session wait of the third handle %v; cluster ready after %v; crash → promotion returned %v; → first write acknowledged %v, every session wrote again %v; Follow took %v; rwsplit's write outage (Stats.LastWriteOutage) %v; scenario %v, whole test %v\n%s%s",
		fsWorkers, delay, sessionWait, clusterReady.Round(time.Millisecond), promotedAt.Sub(crashAt).Round(time.Millisecond), tookFirst.Round(time.Millisecond), took.Round(time.Millisecond),
		followedAt.Sub(resumedAt).Round(time.Millisecond), db.Stats().LastWriteOutage.Round(time.Millisecond), scenario.Round(time.Millisecond), total.Round(time.Millisecond), rb.String(), wb.String())
	for ph := range fsPhases {
		if err := cnt[ph].lastReadErr.Load(); err != nil {
			t.Logf("%s: last read error: %v", fsPhaseNames[ph], err)
		}
		if err := cnt[ph].lastWE.Load(); err != nil {
			t.Logf("%s: last write error: %v", fsPhaseNames[ph], err)
		}
	}
	var afterReplica, quietReplica int64
	for via := range fsVias {
		afterReplica += cnt[fsAfter].byNode[via][2].Load()
		quietReplica += cnt[fsQuiet].byNode[via][2].Load()
	}
	t.Logf("reads %d, stale %d, wrong data %d, failed %d; write failures during the outage %d (%d ErrNoPrimary); reads on the replica %s after the failover: %d while writing, %d in the quiet phase",
		reads, stale, wrong, readErrs, cnt[fsOutage].writeFails.Load(), cnt[fsOutage].noPrimary.Load(), other.Name(), afterReplica, quietReplica)
	for via, h := range handles {
		t.Logf("%s handle:\n%s", fsViaNames[via], h.Stats())
	}

	// The requirement.
	if stale != 0 || wrong != 0 {
		t.Errorf("%d stale reads and %d reads of wrong data of %d:\n%s", stale, wrong, reads, strings.Join(details, "\n"))
	}
	// The run itself.
	if n := cnt[fsWarmup].writeFails.Load(); n != 0 {
		t.Errorf("%d writes failed before the crash (last: %v)", n, cnt[fsWarmup].lastWE.Load())
	}
	// Once the failover is over and the pools are warm, no read fails.
	// (Read errors before, cold connections on a loaded machine included,
	// are logged above.)
	if n := fsSum(&cnt[fsQuiet].readErrs); n != 0 {
		t.Errorf("%s: %d reads failed with the cluster whole again (last: %v)", fsPhaseNames[fsQuiet], n, cnt[fsQuiet].lastReadErr.Load())
	}
	if cnt[fsAfter].writes.Load() == 0 || fsSum(&cnt[fsAfter].reads) == 0 {
		t.Errorf("no writes or reads after the failover:\n%s", db.Stats())
	}
	for via := range fsVias {
		if n := cnt[fsAfter].byNode[via][0].Load() + cnt[fsQuiet].byNode[via][0].Load(); n != 0 {
			t.Errorf("%d %s reads after the failover were served by the crashed primary", n, fsViaNames[via])
		}
	}
	if quietReplica == 0 {
		t.Errorf("no session read was served by the replica %s once it had caught up after the failover:\n%s", other.Name(), db.Stats())
	}
	for via, h := range handles {
		if n := h.Stats().TokensRejected; n != 0 {
			t.Errorf("%s handle: %d genuine session tokens were rejected", fsViaNames[via], n)
		}
	}
	// Cluster start-up is the test kit's business (and the machine's
	// load); the ceiling bounds what rwsplit's behaviour can stretch.
	if scenario > fsTestCeiling {
		t.Errorf("the scenario took %v (whole test %v); want less than %v", scenario, total, fsTestCeiling)
	}
}
