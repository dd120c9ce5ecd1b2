package rwsplit

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// sessionWaits is what session reads that wait for a replica share: a
// channel closed when a cached position changes, and the position
// pollers (see pollPositions).
type sessionWaits struct {
	posEvent atomic.Pointer[chan struct{}]
	mu       sync.Mutex // guards stopped and the start of a poller
	stopped  bool       // Close has stopped the pollers: none may start
	pollers  sync.WaitGroup
}

// awaitCoverage waits up to the WithSessionWait bound for an eligible
// replica to apply the session's position. While sessions wait, one poller
// per replica reads its position every few milliseconds, however many
// sessions wait; each new position wakes the waiters. It returns nil when
// no replica caught up in time.
func (db *DB) awaitCoverage(ctx context.Context, snap *snapshot, d *dialect, v *sessionView, tried *triedNodes) *Replica {
	wait := db.cfg.sessionWait
	if wait <= 0 {
		return nil
	}
	deadline := time.Now().Add(wait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	began := monotime()
	until := began + int64(time.Until(deadline))
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for waited := false; ; waited = true {
		changed := db.positionsChanged()
		for _, r := range snap.replicas {
			if !tried.has(r) && db.sessionCovers(r, d, v) {
				if waited {
					db.emit(SessionWaited{Context: ctx, Node: r.name, Waited: time.Duration(monotime() - began)})
				}
				return r
			}
		}
		for _, r := range snap.replicas {
			if !tried.has(r) {
				db.pollPositions(r, until)
			}
		}
		select {
		case <-changed:
		case <-timer.C:
			db.emit(SessionWaited{Context: ctx, Waited: time.Duration(monotime() - began)})
			return nil
		case <-ctx.Done():
			db.emit(SessionWaited{Context: ctx, Waited: time.Duration(monotime() - began)})
			return nil
		}
	}
}

// positionPoll is how often a replica's position is read while sessions
// wait for it.
const positionPoll = 3 * time.Millisecond

// positionsChanged returns a channel closed at the next change of a
// cached node position.
func (db *DB) positionsChanged() <-chan struct{} {
	for {
		if ch := db.waits.posEvent.Load(); ch != nil {
			return *ch
		}
		ch := make(chan struct{})
		db.waits.posEvent.CompareAndSwap(nil, &ch)
	}
}

// notifyPositions wakes the sessions waiting for positions.
func (db *DB) notifyPositions() {
	if ch := db.waits.posEvent.Swap(nil); ch != nil {
		close(*ch)
	}
}

// pollPositions has r's position read every positionPoll until monotime
// until, by one goroutine per replica that stops when nobody waits any
// more, or when the DB closes.
func (db *DB) pollPositions(r *Replica, until int64) {
	for {
		old := r.pollUntil.Load()
		if old >= until || r.pollUntil.CompareAndSwap(old, until) {
			break
		}
	}
	if !r.polling.CompareAndSwap(false, true) {
		return
	}
	db.waits.mu.Lock()
	if db.waits.stopped {
		db.waits.mu.Unlock()
		r.polling.Store(false)
		return
	}
	db.waits.pollers.Add(1)
	db.waits.mu.Unlock()
	go func() {
		defer db.waits.pollers.Done()
		for {
			for monotime() < r.pollUntil.Load() && db.health.ctx.Err() == nil {
				ctx, cancel := context.WithTimeout(db.health.ctx, db.cfg.timeout())
				db.refreshPosition(ctx, r)
				cancel()
				t := time.NewTimer(positionPoll)
				select {
				case <-db.health.ctx.Done():
				case <-t.C:
				}
				t.Stop()
			}
			r.polling.Store(false)
			// A waiter may have extended the deadline after the check
			// above but before polling was cleared.
			if monotime() >= r.pollUntil.Load() || db.health.ctx.Err() != nil || !r.polling.CompareAndSwap(false, true) {
				return
			}
		}
	}()
}
