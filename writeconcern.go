package rwsplit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// WriteConcern asks a write to wait until replicas have applied it; see
// [WithWriteConcern].
type WriteConcern struct {
	// Replicas is how many replicas must have applied the write;
	// AllReplicas means every node that is a replica, eligible or not,
	// and 0 no wait. Any other negative number is an error: the write is
	// refused before it is sent.
	Replicas int
	// Timeout bounds the wait; 0 means the context's deadline alone. A
	// negative timeout is an error, as a bad Replicas is.
	Timeout time.Duration
}

// AllReplicas in [WriteConcern.Replicas] asks for every replica.
const AllReplicas = -1

// WriteConcernError reports a write that committed on the primary but was
// not seen applied by as many replicas as its [WriteConcern] asked in time.
type WriteConcernError struct {
	Wanted   int    // replicas asked for; AllReplicas for all
	Acked    int    // replicas that had applied the write when the wait ended
	Replicas int    // replicas there were
	Position string // the write's position on the primary
	Err      error  // why the wait ended: a timeout, the context, no positions
}

func (e *WriteConcernError) Error() string {
	want := fmt.Sprint(e.Wanted)
	if e.Wanted == AllReplicas {
		want = fmt.Sprintf("all %d", e.Replicas)
	}
	return fmt.Sprintf("rwsplit: write committed on the primary, but %d of %s replicas applied it: %v", e.Acked, want, e.Err)
}

func (e *WriteConcernError) Unwrap() error { return e.Err }

// check refuses a write concern that asks for a negative number of
// replicas other than AllReplicas, before the write is sent.
func (wc *WriteConcern) check(op string) error {
	if wc.Replicas < AllReplicas {
		return &Error{Op: op, Err: fmt.Errorf("WithWriteConcern: %d replicas; want AllReplicas, 0 or more", wc.Replicas)}
	}
	if wc.Timeout < 0 {
		return &Error{Op: op, Err: fmt.Errorf("WithWriteConcern: negative timeout %s", wc.Timeout)}
	}
	return nil
}

// awaitReplicas waits until wc's number of replicas have applied pos.
func (db *DB) awaitReplicas(ctx context.Context, d *dialect, pos position, wc WriteConcern) error {
	var replicas []*Replica
	for _, r := range db.nodeList() {
		if r.Role() == RoleReplica {
			replicas = append(replicas, r)
		}
	}
	want := wc.Replicas
	if want == AllReplicas || want > len(replicas) {
		want = len(replicas)
	}
	fail := func(acked int, err error) error {
		return &WriteConcernError{Wanted: wc.Replicas, Acked: acked, Replicas: len(replicas), Position: pos.String(), Err: err}
	}
	if wc.Replicas > len(replicas) {
		return fail(0, fmt.Errorf("%d replicas asked for, %d configured", wc.Replicas, len(replicas)))
	}
	if want <= 0 {
		return nil
	}
	if wc.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wc.Timeout)
		defer cancel()
	}
	acked := make([]bool, len(replicas))
	count := 0
	delay := time.Millisecond
	for {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i, r := range replicas {
			if acked[i] {
				continue
			}
			wg.Go(func() {
				if have, ok := db.learnPosition(ctx, r, d); ok && d.historyCovers(have, pos) {
					mu.Lock()
					acked[i] = true
					count++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if count >= want {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			err := ctx.Err()
			if errors.Is(err, context.DeadlineExceeded) && wc.Timeout > 0 {
				err = fmt.Errorf("timed out after %v: %w", wc.Timeout, err)
			}
			return fail(count, err)
		case <-t.C:
		}
		delay = min(2*delay, 20*time.Millisecond)
	}
}
