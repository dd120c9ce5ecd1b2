package rwsplitprom

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rwsplit/rwsplit"
)

// outcome is the outcome label of rwsplit_calls_total.
type outcome uint8

const (
	outcomeOK       outcome = iota // the node answered
	outcomeError                   // the node, or the statement, failed
	outcomeCanceled                // the caller's context ended
	outcomeRefused                 // refused before reaching any node
)

var outcomeNames = [...]string{outcomeOK: "ok", outcomeError: "error", outcomeCanceled: "canceled", outcomeRefused: "refused"}

// outcomeOf classifies an attempt: a failure while the caller's context
// is done is the caller's (canceled), even when no node was reached.
func outcomeOf(e *rwsplit.CallEvent) outcome {
	switch {
	case e.Err == nil:
		return outcomeOK
	case e.Context != nil && e.Context.Err() != nil:
		return outcomeCanceled
	case e.Node == "":
		return outcomeRefused
	}
	return outcomeError
}

// callKey is the labels of one rwsplit_calls_total series of a DB.
type callKey struct {
	node    string
	role    int8 // rwsplit.Role, or -1 for no node
	op      rwsplit.Op
	reason  rwsplit.Reason
	outcome outcome
}

// callSeries is what one attempt counts into.
type callSeries struct {
	calls    prometheus.Counter
	duration prometheus.Observer // nil for an attempt that reached no node
}

// dbObserver is the rwsplit.Observer of one DB. ObserveCall finds its
// series in an immutable map that it loads atomically, and allocates
// nothing once the series exists; the map is copied, under mu, only to
// add a series, which happens a bounded number of times (nodes × roles ×
// operations × reasons × outcomes seen).
type dbObserver struct {
	m  *metrics
	db string

	series atomic.Pointer[map[callKey]*callSeries]
	mu     sync.Mutex // serialises additions to series

	outage prometheus.Observer
}

var _ rwsplit.Observer = (*dbObserver)(nil)

func newDBObserver(m *metrics, db string) *dbObserver {
	o := &dbObserver{m: m, db: db, outage: m.outage.WithLabelValues(db)}
	empty := map[callKey]*callSeries{}
	o.series.Store(&empty)
	return o
}

// ObserveCall counts the attempt e and, when it reached a node, adds its
// latency to the node's histogram.
func (o *dbObserver) ObserveCall(e rwsplit.CallEvent) {
	k := callKey{node: e.Node, role: int8(e.Role), op: e.Op, reason: e.Reason, outcome: outcomeOf(&e)}
	if e.Node == "" {
		k.role = -1
	}
	s := (*o.series.Load())[k]
	if s == nil {
		s = o.add(k)
	}
	s.calls.Inc()
	if s.duration != nil {
		s.duration.Observe(e.Latency.Seconds())
	}
}

// add returns the series of k, made if need be.
func (o *dbObserver) add(k callKey) *callSeries {
	o.mu.Lock()
	defer o.mu.Unlock()
	old := *o.series.Load()
	if s := old[k]; s != nil {
		return s
	}
	role := ""
	if k.role >= 0 {
		role = rwsplit.Role(k.role).String()
	}
	s := &callSeries{calls: o.m.calls.WithLabelValues(o.db, k.node, role, k.op.String(), k.reason.String(), outcomeNames[k.outcome])}
	if k.node != "" {
		s.duration = o.m.callDuration.WithLabelValues(o.db, k.node, k.op.String())
	}
	next := make(map[callKey]*callSeries, len(old)+1)
	for kk, v := range old {
		next[kk] = v
	}
	next[k] = s
	o.series.Store(&next)
	return s
}

// ObserveEvent counts node state changes and records write outages,
// session waits and promotions; it ignores the other events.
func (o *dbObserver) ObserveEvent(ev rwsplit.Event) {
	switch e := ev.(type) {
	case rwsplit.WriteOutage:
		o.outage.Observe(e.Duration.Seconds())
	case rwsplit.SessionWaited:
		where := "replica"
		if e.Node == "" {
			where = "primary"
		}
		o.m.sessionWait.WithLabelValues(o.db, where).Observe(e.Waited.Seconds())
	case rwsplit.PromotionEvent:
		result := "promoted"
		if e.Err != nil {
			result = "failed"
		}
		o.m.promotion.WithLabelValues(o.db, result).Observe(e.Duration.Seconds())
	case rwsplit.NodeEvent:
		o.m.transitions.WithLabelValues(o.db, e.Node, e.State.String()).Inc()
	}
}
