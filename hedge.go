package rwsplit

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Hedging configures hedged reads (see [WithHedging]). Zero fields take
// their defaults.
type Hedging struct {
	// Multiplier times the node's latency estimate is how long a read may
	// go unanswered before a second replica is asked. Default 3.
	Multiplier float64
	// Floor and Ceiling bound that delay. Defaults 10ms and 1s; a node
	// without a latency estimate waits Ceiling.
	Floor, Ceiling time.Duration
	// Budget caps the extra reads at this fraction of the hedgeable reads,
	// with a burst of 10, so that a slow cluster is not sent twice the
	// load. Default 0.1.
	Budget float64
}

// WithHedging turns on hedged reads: a read sent to a replica that has not
// answered within an adaptive delay (a multiple of that node's latency
// estimate, bounded by a floor and a ceiling) is sent to a second eligible
// replica as well, and the first answer wins. A hung replica then costs a
// read that delay, not the caller's whole deadline. Hedging applies to
// QueryContext and QueryRowContext on replicas. The hedge goes to another
// eligible replica; if that fails too, to the next; and with none left, to
// the primary within [WithFallbackLimit]; three nodes at most per read.
//
// "Answer" is the first response: QueryContext returning. An error met
// later, while iterating rows, is not hedged. The losing attempt's rows
// are closed and its context cancelled, which returns its connection to
// its pool; on the server the losing statement may run on until its
// connection notices (pgx sends the server a cancel request,
// go-sql-driver/mysql closes the connection).
//
// Hedging is off by default because it costs: an armed read runs under a
// context of its own, with a timer, which takes a few allocations per
// read even when no hedge is sent. That context keeps the caller's values
// and deadline; the caller's cancellation reaches the read while it is in
// flight, but once QueryContext has returned, cancelling the caller's
// context no longer closes the rows (its deadline still bounds them).
func WithHedging(h Hedging) Option {
	return optionFunc(func(c *config) {
		if h.Multiplier == 0 {
			h.Multiplier = 3
		}
		if h.Floor == 0 {
			h.Floor = 10 * time.Millisecond
		}
		if h.Ceiling == 0 {
			h.Ceiling = time.Second
		}
		if h.Budget == 0 {
			h.Budget = 0.1
		}
		c.hedging = &h
	})
}

func (h *Hedging) validate() error {
	switch {
	case h.Multiplier < 0 || h.Budget < 0 || h.Floor < 0 || h.Ceiling < 0:
		return fmt.Errorf("WithHedging: negative setting")
	case h.Floor > h.Ceiling:
		return fmt.Errorf("WithHedging: floor %s above ceiling %s", h.Floor, h.Ceiling)
	}
	return nil
}

// hedgeTokens is the hedging budget in thousandths of a read.
type hedgeTokens struct{ v atomic.Int64 }

const hedgeBurst = 10_000 // ten reads

func (t *hedgeTokens) earn(budget float64) {
	if v := t.v.Load(); v < hedgeBurst {
		t.v.Add(int64(budget * 1000))
	}
}

func (t *hedgeTokens) spend() bool {
	for {
		v := t.v.Load()
		if v < 1000 {
			return false
		}
		if t.v.CompareAndSwap(v, v-1000) {
			return true
		}
	}
}

// delay is how long a read on r may go unanswered before it is hedged.
func (h *Hedging) delay(r *Replica) time.Duration {
	est := r.latencyAt(monotime())
	if est == 0 {
		return h.Ceiling
	}
	return min(max(time.Duration(est*h.Multiplier), h.Floor), h.Ceiling)
}

// detach returns a context for one hedged attempt: it carries ctx's values
// and deadline but is cancelled only by the returned function, and by
// ctx's cancellation until the returned stop is called.
func detach(ctx context.Context) (context.Context, context.CancelFunc, func() bool) {
	base := context.WithoutCancel(ctx)
	var c context.Context
	var cancel context.CancelFunc
	if d, ok := ctx.Deadline(); ok {
		c, cancel = context.WithDeadline(base, d)
	} else {
		c, cancel = context.WithCancel(base)
	}
	stop := context.AfterFunc(ctx, cancel)
	return c, cancel, stop
}

// attempt is one try of a hedged read.
type attempt struct {
	r      *Replica
	rows   *sql.Rows
	row    *sql.Row
	err    error
	cancel context.CancelFunc
	stop   func() bool
}

// release discards an attempt that lost: closes its rows and cancels it.
func (a *attempt) release() {
	if a.rows != nil {
		a.rows.Close()
	}
	if a.row != nil {
		a.row.Scan() // closes the row's rows; the error is of no interest
	}
	a.stop()
	a.cancel()
}

// hedged is a read that may be sent to two replicas.
type hedged struct {
	db      *DB
	ctx     context.Context
	query   string
	prep    *sharedStmt
	args    []any
	wantRow bool

	mu       sync.Mutex
	decided  bool          // a winner is chosen (guarded by mu)
	first    *attempt      // the first attempt, set before the timer can fire
	second   *attempt      // the hedge that won (guarded by mu)
	hedges   []*attempt    // every hedge sent (guarded by mu)
	answered chan struct{} // closed when every hedge has answered (nil until hedging starts)
}

// run runs attempt one on rt.r and, if it is slow, a hedge; it returns the
// attempt whose answer the caller gets.
func (h *hedged) run(rt route) *attempt {
	db := h.db
	db.hedgeTokens.earn(db.cfg.hedging.Budget)
	ctx1, cancel1, stop1 := detach(h.ctx)
	a1 := &attempt{r: rt.r, cancel: cancel1, stop: stop1}
	h.first = a1
	timer := time.AfterFunc(db.cfg.hedging.delay(rt.r), h.hedge)

	c1 := a1.r.begin(callOther)
	h.call(ctx1, a1)
	a1.r.end(h.ctx, c1, a1.err)
	timer.Stop()

	h.mu.Lock()
	if h.decided { // the hedge won and cancelled us
		h.mu.Unlock()
		a1.release()
		return h.second
	}
	if a1.err == nil || h.answered == nil {
		h.decided = true // ours, with no hedge in flight, or first
		losers := h.losersLocked(a1)
		h.mu.Unlock()
		for _, l := range losers {
			l.cancel() // a hedge still out: it releases itself when it returns
		}
		a1.stop()
		if a1.err != nil {
			a1.cancel()
		}
		return a1
	}
	// We failed while the hedge is out: its answer may still save the read.
	answered := h.answered
	h.mu.Unlock()
	select {
	case <-answered:
	case <-h.ctx.Done():
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.decided { // the hedge succeeded
		a1.release()
		return h.second
	}
	h.decided = true // keep our error; the hedge's answer, if late, is released by it
	a1.stop()
	a1.cancel()
	return a1
}

// hedge runs on the timer's goroutine. Within the budget it sends the read
// to another eligible replica, and, whenever the latest hedge fails or is
// itself left unanswered past the delay, to the next node: replicas first,
// the primary last (within the fallback limit); three nodes at most per
// read. The first attempt to answer wins and the others are released: a
// winning hedge cancels the first attempt.
func (h *hedged) hedge() {
	db := h.db
	h.mu.Lock()
	// The budget pays for hedges sent, not for timers that fire after
	// the read was decided.
	if h.decided || !db.hedgeTokens.spend() {
		h.mu.Unlock()
		return
	}
	h.answered = make(chan struct{})
	h.mu.Unlock()
	h.first.r.hedges.Add(1)

	var tried triedNodes
	tried.add(h.first.r)
	var wg sync.WaitGroup
	failed := make(chan struct{}, maxReadAttempts) // one per hedge that failed
	delay := db.cfg.hedging.delay(h.first.r)
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for launched := 0; tried.n < maxReadAttempts; {
		next, err := db.routeReplica(h.ctx, h.query, &tried)
		if err != nil || tried.has(next.r) {
			db.done(next)
			break
		}
		tried.add(next.r)
		if !h.launch(next, &wg, failed) {
			break // decided meanwhile
		}
		launched++
		if tried.n >= maxReadAttempts {
			break
		}
		// Wait until this hedge fails, outlives the delay, or the read is
		// decided; then try the next node.
		timer.Reset(delay)
		select {
		case <-failed:
		case <-timer.C:
		case <-h.ctx.Done():
		}
		h.mu.Lock()
		decided := h.decided
		h.mu.Unlock()
		if decided || h.ctx.Err() != nil {
			break
		}
	}
	// Close answered once every hedge has answered, so that a first attempt
	// that failed waits for them all.
	go func() {
		wg.Wait()
		h.mu.Lock()
		close(h.answered)
		h.mu.Unlock()
	}()
}

// losersLocked returns every attempt but the winner, to cancel.
func (h *hedged) losersLocked(winner *attempt) []*attempt {
	losers := make([]*attempt, 0, len(h.hedges)+1)
	if h.first != winner {
		losers = append(losers, h.first)
	}
	for _, a := range h.hedges {
		if a != winner {
			losers = append(losers, a)
		}
	}
	return losers
}

// launch sends one hedge attempt on rt in a goroutine of its own and
// returns false if the read was decided before it could be sent.
func (h *hedged) launch(rt route, wg *sync.WaitGroup, failed chan<- struct{}) bool {
	db := h.db
	h.mu.Lock()
	if h.decided {
		h.mu.Unlock()
		db.done(rt)
		return false
	}
	ctx2, cancel2, stop2 := detach(h.ctx)
	a := &attempt{r: rt.r, cancel: cancel2, stop: stop2}
	h.hedges = append(h.hedges, a)
	h.mu.Unlock()
	db.sent(rt)
	db.cfg.logger.Debug("rwsplit: read slow; hedging on another node", "node", h.first.r.name, "hedge", rt.r.name)
	wg.Go(func() {
		c := a.r.begin(callOther)
		h.call(ctx2, a)
		a.r.end(h.ctx, c, a.err)
		db.done(rt)
		h.mu.Lock()
		won := !h.decided && a.err == nil
		var losers []*attempt
		if won {
			h.decided = true
			h.second = a
			a.r.hedgeWins.Add(1)
			losers = h.losersLocked(a)
		}
		h.mu.Unlock()
		if won {
			a.stop()
			for _, l := range losers {
				l.cancel() // unblocks it; it then releases itself
			}
			return
		}
		a.release()
		failed <- struct{}{}
	})
	return true
}

func (h *hedged) call(ctx context.Context, a *attempt) {
	a.rows, a.row, a.err = queryOn(ctx, a.r, h.query, h.prep, h.args, h.wantRow)
}

// hedgedRead runs a read with hedging and returns the attempt whose answer
// counts, and the number of hedges sent; every replica it sent the read to
// is added to tried.
func (db *DB) hedgedRead(ctx context.Context, rt route, query string, prep *sharedStmt, args []any, wantRow bool, tried *triedNodes) (*attempt, int) {
	h := &hedged{db: db, ctx: ctx, query: query, prep: prep, args: args, wantRow: wantRow}
	a := h.run(rt)
	h.mu.Lock()
	hedges := len(h.hedges)
	h.mu.Unlock()
	if a == h.first {
		// The read failed everywhere it was sent: a retry goes to a node
		// it was not sent to.
		tried.add(a.r)
		h.mu.Lock()
		for _, x := range h.hedges {
			tried.add(x.r)
		}
		h.mu.Unlock()
	}
	return a, hedges
}
