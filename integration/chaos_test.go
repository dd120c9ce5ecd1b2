package integration

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// TestChaos runs a PostgreSQL primary with three streaming replicas under
// a steady read and write load through one handle, while a chaos goroutine
// keeps crashing, freezing and restarting replicas (never more than two at
// a time, never the primary). No read may fail, every acknowledged write
// must be on the primary exactly once, the replicas must end up with the
// primary's rows and no write may have reached a replica.
//
// It runs for 60s; RWSPLIT_CHAOS_DURATION (a Go duration) overrides that,
// and RWSPLIT_CHAOS_SEED (an unsigned integer) replays a chaos sequence.
func TestChaos(t *testing.T) {
	duration := 60 * time.Second
	if s := os.Getenv("RWSPLIT_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("RWSPLIT_CHAOS_DURATION=%q: want a positive Go duration (%v)", s, err)
		}
		duration = d
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RWSPLIT_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RWSPLIT_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("chaos: duration %v, seed %d (RWSPLIT_CHAOS_SEED=%d replays it)", duration, seed, seed)

	c := startOwnCluster(t, rwsplittest.Postgres, rwsplittest.LocalOptions{Replicas: 3})
	healOnCleanup(t, c)
	ctx := ctxTimeout(t, duration+3*time.Minute)
	primaryNode, replicaNodes := c.Primary(), c.Replicas()
	primaryPort, replicaPorts := ports(c)

	goroutinesBefore := runtime.NumGoroutine()

	var replicaDSNs []string
	for _, n := range replicaNodes {
		replicaDSNs = append(replicaDSNs, n.DSN())
	}
	db, err := rwsplit.Open(c.DriverName(), primaryNode.DSN(), replicaDSNs,
		rwsplit.WithHealthCheckInterval(fastInterval),
		rwsplit.WithHealthCheckTimeout(300*time.Millisecond),
		rwsplit.WithHedging(rwsplit.Hedging{Floor: 20 * time.Millisecond, Ceiling: 200 * time.Millisecond, Budget: 1}))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			db.Close()
		}
	}()

	if _, err := db.ExecContext(ctx, "CREATE TABLE chaos (id bigserial primary key, writer int, seq int)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	if err := c.WaitCaughtUp(ctx, primaryNode); err != nil {
		t.Fatalf("waiting for the replicas to have the table: %v", err)
	}
	const query = "SELECT inet_server_port()"
	for i := range 30 { // warm the pools and the latency estimates
		if _, err := readPort(db, query, i%2 == 1, readDeadline); err != nil {
			t.Fatalf("read before the chaos: %v", err)
		}
	}

	begin := time.Now()
	rel := func(at time.Time) time.Duration { return at.Sub(begin).Round(time.Millisecond) }

	// Chaos bookkeeping. A replica is disturbed from just before the
	// action until the node answers again (Start or Thaw returned).
	type chaosEvent struct {
		at     time.Time
		node   string
		kind   string // crash, freeze, restart
		phase  string // begin, end
		detail string
		err    error
	}
	type disturbance struct {
		node       int
		kind       string
		start, end time.Time // end is zero while it lasts
	}
	var (
		chaosMu      sync.Mutex
		events       []chaosEvent
		disturbances []*disturbance
		disturbed    = make([]bool, len(replicaNodes))
		nowDisturbed int
		maxDisturbed int
		skipped      int
	)
	logEvent := func(e chaosEvent) {
		chaosMu.Lock()
		events = append(events, e)
		chaosMu.Unlock()
	}

	// Readers.
	type readSample struct {
		start time.Time
		took  time.Duration
		port  int
		err   error
		query bool
	}
	var (
		readMu  sync.Mutex
		samples []readSample
	)
	stopLoad := make(chan struct{})
	var loadWG sync.WaitGroup
	for w := range 8 {
		loadWG.Go(func() {
			var mine []readSample
			defer func() {
				readMu.Lock()
				samples = append(samples, mine...)
				readMu.Unlock()
			}()
			for i := 0; ; i++ {
				select {
				case <-stopLoad:
					return
				default:
				}
				viaQuery := (w+i)%2 == 1
				start := time.Now()
				port, err := readPort(db, query, viaQuery, readDeadline)
				mine = append(mine, readSample{start, time.Since(start), port, err, viaQuery})
			}
		})
	}

	// Writers.
	type writeFailure struct {
		at     time.Time
		writer int
		seq    int
		err    error
	}
	type writeKey struct{ writer, seq int }
	var (
		writeMu   sync.Mutex
		acked     = map[writeKey]bool{}
		wFailures []writeFailure
		writeLat  []time.Duration
	)
	for w := range 2 {
		loadWG.Go(func() {
			for seq := 1; ; seq++ {
				select {
				case <-stopLoad:
					return
				default:
				}
				wctx, cancel := context.WithTimeout(context.Background(), readDeadline)
				start := time.Now()
				_, err := db.ExecContext(wctx, "INSERT INTO chaos (writer, seq) VALUES ($1, $2)", w, seq)
				took := time.Since(start)
				cancel()
				writeMu.Lock()
				if err != nil {
					wFailures = append(wFailures, writeFailure{start, w, seq, err})
				} else {
					acked[writeKey{w, seq}] = true
					writeLat = append(writeLat, took)
				}
				writeMu.Unlock()
			}
		})
	}

	// The handle's view of the replicas, sampled every 50ms, to explain
	// failures.
	type eligSample struct {
		at    time.Time
		state string
	}
	var eligSamples []eligSample
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopLoad:
				return
			case <-tick.C:
			}
			var parts []string
			for _, ns := range db.Stats().Nodes {
				name := ns.Name
				for _, n := range c.Nodes() {
					if n.Addr() == ns.Name {
						name = n.Name()
					}
				}
				st := "down"
				if ns.Eligible {
					st = "eligible"
				} else if ns.Up {
					st = "up"
				}
				parts = append(parts, fmt.Sprintf("%s %s inflight %d", name, st, ns.InFlight))
			}
			eligSamples = append(eligSamples, eligSample{time.Now(), strings.Join(parts, ", ")})
		}
	}()
	eligAt := func(at time.Time) string {
		i, _ := slices.BinarySearchFunc(eligSamples, at, func(e eligSample, t time.Time) int { return e.at.Compare(t) })
		if i >= len(eligSamples) {
			return "(no sample)"
		}
		return fmt.Sprintf("[t+%v: %s]", rel(eligSamples[i].at), eligSamples[i].state)
	}

	// Chaos. The random source is used by this goroutine only, so that a
	// seed replays the same choices (not the same timings).
	var recoverWG sync.WaitGroup
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		kinds := []string{"crash", "freeze", "restart"}
		for {
			wait := 1200*time.Millisecond + time.Duration(rng.Int64N(int64(600*time.Millisecond)))
			if time.Since(begin)+wait >= duration {
				return
			}
			time.Sleep(wait)
			idx := rng.IntN(len(replicaNodes))
			kind := kinds[rng.IntN(len(kinds))]
			hold := time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))

			chaosMu.Lock()
			if disturbed[idx] || nowDisturbed >= 2 {
				skipped++
				chaosMu.Unlock()
				continue
			}
			disturbed[idx] = true
			nowDisturbed++
			maxDisturbed = max(maxDisturbed, nowDisturbed)
			d := &disturbance{node: idx, kind: kind, start: time.Now()}
			disturbances = append(disturbances, d)
			chaosMu.Unlock()

			n := replicaNodes[idx]
			var actErr error
			detail := ""
			switch kind {
			case "crash":
				actErr = n.Crash()
				detail = fmt.Sprintf("restart after %v", hold.Round(time.Millisecond))
			case "freeze":
				actErr = n.Freeze()
				detail = fmt.Sprintf("thaw after %v", hold.Round(time.Millisecond))
			case "restart":
				actErr = n.Stop()
			}
			logEvent(chaosEvent{at: d.start, node: n.Name(), kind: kind, phase: "begin", detail: detail, err: actErr})

			recoverWG.Go(func() {
				var err error
				switch kind {
				case "crash":
					time.Sleep(hold)
					err = n.Start(ctx)
				case "freeze":
					time.Sleep(hold)
					err = n.Thaw()
				case "restart":
					err = n.Start(ctx)
				}
				end := time.Now()
				logEvent(chaosEvent{at: end, node: n.Name(), kind: kind, phase: "end", err: err})
				chaosMu.Lock()
				d.end = end
				disturbed[idx] = false
				nowDisturbed--
				chaosMu.Unlock()
			})
		}
	}()

	<-chaosDone
	recoverWG.Wait()
	// Let the load run on a whole cluster for a moment, so that the reads
	// around the last recovery are measured too.
	time.Sleep(time.Second)
	close(stopLoad)
	loadWG.Wait()
	<-samplerDone
	loadTook := time.Since(begin)
	statsAfterLoad := statsDump(db)
	stats := db.Stats()

	// Heal everything and wait for the replicas to catch up.
	for _, n := range c.Nodes() {
		if n.Frozen() {
			if err := n.Thaw(); err != nil {
				t.Errorf("thaw %s: %v", n.Name(), err)
			}
		}
		if !n.Running() {
			if err := n.Start(ctx); err != nil {
				t.Errorf("start %s: %v", n.Name(), err)
			}
		}
	}
	caughtUpStart := time.Now()
	if err := c.WaitCaughtUp(ctx, primaryNode); err != nil {
		t.Errorf("waiting for the replicas to catch up: %v", err)
	}
	caughtUpTook := time.Since(caughtUpStart)

	slices.SortFunc(events, func(a, b chaosEvent) int { return a.at.Compare(b.at) })
	eventsAround := func(from, to time.Time) string {
		var b strings.Builder
		for _, e := range events {
			if e.at.Before(from) || e.at.After(to) {
				continue
			}
			fmt.Fprintf(&b, "\n      t+%v %s %s %s", rel(e.at), e.node, e.kind, e.phase)
			if e.err != nil {
				fmt.Fprintf(&b, " (error: %v)", e.err)
			}
		}
		if b.Len() == 0 {
			return " (no chaos event within 3s)"
		}
		return b.String()
	}

	// Chaos timeline.
	var timeline strings.Builder
	byKind := map[string]int{}
	for _, e := range events {
		if e.phase == "begin" {
			byKind[e.kind]++
		}
		fmt.Fprintf(&timeline, "\n  t+%v %s %s %s %s", rel(e.at), e.node, e.kind, e.phase, e.detail)
		if e.err != nil {
			fmt.Fprintf(&timeline, " ERROR: %v", e.err)
			t.Errorf("chaos %s %s %s at t+%v: %v", e.node, e.kind, e.phase, rel(e.at), e.err)
		}
	}
	t.Logf("chaos timeline:%s", timeline.String())

	// Reads.
	slices.SortFunc(samples, func(a, b readSample) int { return a.start.Compare(b.start) })
	var (
		failedReads   []readSample
		noneHealthy   int // reads that started with every replica disturbed
		noneWhole     int // reads during which every replica was disturbed at some moment
		lat           []time.Duration
		byPort        = map[int]int{}
		unknownPorts  = map[int]int{}
		duringChaos   int
		viaQueryCount int
	)
	for _, s := range samples {
		end := s.start.Add(s.took)
		undisturbed, undisturbedAtStart := len(replicaNodes), len(replicaNodes)
		for _, d := range disturbances {
			if !d.start.After(s.start) && (d.end.IsZero() || d.end.After(s.start)) {
				undisturbedAtStart--
			}
		}
		if undisturbedAtStart == 0 {
			noneHealthy++
		}
		for i := range replicaNodes {
			for _, d := range disturbances {
				if d.node != i {
					continue
				}
				dEnd := d.end
				if dEnd.IsZero() {
					dEnd = time.Now()
				}
				if d.start.Before(end) && dEnd.After(s.start) {
					undisturbed--
					break
				}
			}
		}
		if undisturbed < len(replicaNodes) {
			duringChaos++
		}
		if undisturbed == 0 {
			noneWhole++
		}
		if s.query {
			viaQueryCount++
		}
		lat = append(lat, s.took)
		if s.err != nil {
			failedReads = append(failedReads, s)
			continue
		}
		if _, ok := replicaPorts[s.port]; ok || s.port == primaryPort {
			byPort[s.port]++
		} else {
			unknownPorts[s.port]++
		}
	}
	slices.Sort(lat)
	pct := func(d []time.Duration, p float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[min(len(d)-1, int(float64(len(d))*p))].Round(100 * time.Microsecond)
	}
	var portSummary []string
	portSummary = append(portSummary, fmt.Sprintf("primary %s: %d", primaryNode.Name(), byPort[primaryPort]))
	for _, n := range replicaNodes {
		portSummary = append(portSummary, fmt.Sprintf("%s: %d", n.Name(), byPort[n.Port()]))
	}

	// Writes: every acknowledged (writer, seq) on the primary exactly once.
	pctx := rwsplit.WithPrimary(ctx)
	type chaosRow struct{ id, writer, seq int64 }
	readRows := func(q interface {
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	}, qctx context.Context) ([]chaosRow, error) {
		rows, err := q.QueryContext(qctx, "SELECT id, writer, seq FROM chaos ORDER BY id")
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []chaosRow
		for rows.Next() {
			var r chaosRow
			if err := rows.Scan(&r.id, &r.writer, &r.seq); err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		return out, rows.Err()
	}
	primaryRows, err := readRows(db, pctx)
	if err != nil {
		t.Fatalf("reading the rows on the primary: %v", err)
	}
	count := map[writeKey]int{}
	for _, r := range primaryRows {
		count[writeKey{int(r.writer), int(r.seq)}]++
	}
	failedKeys := map[writeKey]bool{}
	for _, f := range wFailures {
		failedKeys[writeKey{f.writer, f.seq}] = true
	}
	var missing, dup, unexpected []string
	for k := range acked {
		switch n := count[k]; {
		case n == 0:
			missing = append(missing, fmt.Sprintf("(%d,%d)", k.writer, k.seq))
		case n > 1:
			dup = append(dup, fmt.Sprintf("(%d,%d)x%d", k.writer, k.seq, n))
		}
	}
	for k, n := range count {
		if !acked[k] {
			what := "never attempted"
			if failedKeys[k] {
				what = "reported failed"
			}
			unexpected = append(unexpected, fmt.Sprintf("(%d,%d)x%d %s", k.writer, k.seq, n, what))
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d acknowledged writes are missing on the primary: %s", len(missing), firstN(missing, 20))
	}
	if len(dup) > 0 {
		t.Errorf("%d acknowledged writes are on the primary more than once: %s", len(dup), firstN(dup, 20))
	}
	if len(unexpected) > 0 {
		t.Errorf("%d rows on the primary were not acknowledged: %s", len(unexpected), firstN(unexpected, 20))
	}
	if len(wFailures) > 0 {
		var b strings.Builder
		for i, f := range wFailures {
			if i == 10 {
				break
			}
			fmt.Fprintf(&b, "\n  t+%v writer %d seq %d: %v%s", rel(f.at), f.writer, f.seq, f.err,
				eventsAround(f.at.Add(-3*time.Second), f.at.Add(readDeadline+time.Second)))
		}
		t.Errorf("%d writes failed although the primary was never touched:%s", len(wFailures), b.String())
	}
	for _, f := range wFailures {
		msg := strings.ToLower(f.err.Error())
		if strings.Contains(msg, "read-only") || strings.Contains(msg, "25006") {
			t.Errorf("write (%d,%d) at t+%v was refused as on a read-only node (it reached a replica): %v", f.writer, f.seq, rel(f.at), f.err)
		}
	}

	// No write reached a replica: each replica has exactly the primary's
	// rows, and the handle counted no write on one.
	for _, n := range replicaNodes {
		rdb, err := sql.Open(c.DriverName(), n.DSN())
		if err != nil {
			t.Errorf("open %s: %v", n.Name(), err)
			continue
		}
		rows, err := readRows(rdb, ctx)
		rdb.Close()
		if err != nil {
			t.Errorf("reading the rows on %s: %v", n.Name(), err)
			continue
		}
		if !slices.Equal(rows, primaryRows) {
			t.Errorf("%s has %d rows, the primary %d: they differ", n.Name(), len(rows), len(primaryRows))
		}
	}
	for _, ns := range stats.Nodes {
		if ns.Name != primaryNode.Addr() && ns.Writes > 0 {
			t.Errorf("Stats: replica %s served %d writes", ns.Name, ns.Writes)
		}
	}

	// Reads: none may fail.
	if len(failedReads) > 0 {
		var b strings.Builder
		for i, s := range failedReads {
			if i == 10 {
				break
			}
			method := "QueryRowContext"
			if s.query {
				method = "QueryContext"
			}
			fmt.Fprintf(&b, "\n  t+%v (took %v, %s): %v\n    handle at start %s\n    +500ms %s\n    chaos around it:%s", rel(s.start), s.took.Round(time.Millisecond), method, s.err,
				eligAt(s.start), eligAt(s.start.Add(500*time.Millisecond)),
				eventsAround(s.start.Add(-3*time.Second), s.start.Add(s.took+time.Second)))
		}
		t.Errorf("%d of %d reads failed, the first ones:%s", len(failedReads), len(samples), b.String())
	}
	if len(unknownPorts) > 0 {
		t.Errorf("reads answered with ports of no cluster node: %v", unknownPorts)
	}
	if noneHealthy > 0 {
		t.Errorf("%d reads started while no replica was undisturbed (the chaos rule was broken)", noneHealthy)
	}
	if maxDisturbed > 2 {
		t.Errorf("%d replicas were disturbed at once", maxDisturbed)
	}

	// The slowest reads, with the chaos around them.
	slowest := slices.Clone(samples)
	slices.SortFunc(slowest, func(a, b readSample) int { return cmp.Compare(b.took, a.took) })
	var slow strings.Builder
	for _, s := range slowest[:min(5, len(slowest))] {
		fmt.Fprintf(&slow, "\n  t+%v took %v (port %d, err %v); chaos around it:%s", rel(s.start), s.took.Round(time.Millisecond), s.port, s.err,
			eventsAround(s.start.Add(-3*time.Second), s.start.Add(s.took+time.Second)))
	}
	t.Logf("slowest reads:%s", slow.String())

	// Close the handle and check that the goroutines settle.
	if err := db.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	closed = true
	var goroutinesAfter int
	settled, ok := waitFor(5*time.Second, func() bool {
		goroutinesAfter = runtime.NumGoroutine()
		return goroutinesAfter <= goroutinesBefore+5
	})
	if !ok {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("goroutines: %d before the handle was opened, %d 5s after Close:\n%s", goroutinesBefore, goroutinesAfter, buf)
	}

	var hedges, hedgeWins, retries uint64
	var perNode []string
	for _, ns := range stats.Nodes {
		hedges += ns.Hedges
		hedgeWins += ns.HedgeWins
		retries += ns.Retries
		perNode = append(perNode, fmt.Sprintf("%s ejections %d, retries %d, hedges %d, hedge wins %d, errors %d, reads %d, writes %d",
			ns.Name, ns.Ejections, ns.Retries, ns.Hedges, ns.HedgeWins, ns.Errors, ns.Reads, ns.Writes))
	}
	slices.Sort(writeLat)
	t.Logf("chaos summary (seed %d, load %v):\n"+
		"  reads: %d (%d via QueryContext), failed %d, %d overlapped a disturbance, %d started with no undisturbed replica, %d met every replica disturbed at some moment\n"+
		"  reads by server: %s\n"+
		"  read latency: p50 %v, p99 %v, max %v\n"+
		"  writes: %d acknowledged, %d failed; rows on the primary %d; write latency p50 %v, p99 %v, max %v\n"+
		"  chaos events: crash %d, freeze %d, restart %d (skipped %d picks by the two-at-most rule, at most %d disturbed at once)\n"+
		"  hedges %d (won by the second replica %d), retries %d, fallbacks to the primary %d, rejected %d\n"+
		"  per node:\n    %s\n"+
		"  replicas caught up %v after healing; goroutines %d before Open, %d after Close (settled in %v)\n"+
		"stats after the load:\n%s",
		seed, loadTook.Round(time.Millisecond),
		len(samples), viaQueryCount, len(failedReads), duringChaos, noneHealthy, noneWhole,
		strings.Join(portSummary, ", "),
		pct(lat, 0.5), pct(lat, 0.99), pct(lat, 1),
		len(acked), len(wFailures), len(primaryRows), pct(writeLat, 0.5), pct(writeLat, 0.99), pct(writeLat, 1),
		byKind["crash"], byKind["freeze"], byKind["restart"], skipped, maxDisturbed,
		hedges, hedgeWins, retries, stats.Fallbacks, stats.FallbackRejected,
		strings.Join(perNode, "\n    "),
		caughtUpTook.Round(time.Millisecond), goroutinesBefore, goroutinesAfter, settled.Round(time.Millisecond),
		statsAfterLoad)
}

// firstN joins the first n of items, saying how many more there are.
func firstN(items []string, n int) string {
	slices.Sort(items)
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(" and %d more", len(items)-n)
}
