package rwsplit

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// An Observer is told what a DB does: every routed call when it ends
// ([CallEvent]), and every change worth a metric or a log line ([Event]):
// a node's state, the primary, a write outage, a promotion, a session's
// wait, a rejected token. Give it with [WithObserver]; adapters such as
// rwsplitprom and rwsplitotel are observers. [ObserverFuncs] implements it
// from functions, for an observer that needs only one of the two.
//
// ObserveCall runs on the caller's goroutine, after the call has
// returned from its node and before the DB method returns: it adds its own
// time to every call, so it must be fast (count, add to a histogram, set a
// span attribute) and must not block or call the DB. ObserveEvent runs on
// the goroutine that made the change (the health loop, or a caller's),
// also synchronously. Both may be called concurrently. An observer that
// keeps an event keeps a copy; an event's Context is the caller's and is
// not for keeping.
//
// New kinds of events are new types implementing [Event], so an observer
// written today keeps compiling; a type switch with a default case ignores
// the ones it does not know.
type Observer interface {
	ObserveCall(CallEvent)
	ObserveEvent(Event)
}

// ObserverFuncs is an [Observer] made of functions; a nil function
// ignores its events.
type ObserverFuncs struct {
	Call  func(CallEvent)
	Event func(Event)
}

var _ Observer = ObserverFuncs{}

// ObserveCall calls f.Call, if set.
func (f ObserverFuncs) ObserveCall(e CallEvent) {
	if f.Call != nil {
		f.Call(e)
	}
}

// ObserveEvent calls f.Event, if set.
func (f ObserverFuncs) ObserveEvent(e Event) {
	if f.Event != nil {
		f.Event(e)
	}
}

// WithObserver adds o to the DB's observers: given more than once, every
// observer is told of everything, in the order given. A nil o is an error
// from [New]. The default is none, and then no call pays for observing:
// calls are not timed, and no event is built.
func WithObserver(o Observer) Option {
	return optionFunc(func(c *config) { c.observers = append(c.observers, o) })
}

// Op is the kind of call a [CallEvent] reports.
type Op uint8

const (
	OpQuery Op = iota + 1 // Query, QueryRow, a prepared statement's Query
	OpExec                // Exec, a prepared statement's Exec
	OpBegin               // BeginTx: the node the transaction runs on
	OpConn                // Conn, or a routing connection pinned to the primary because a statement changed its session
)

// String returns "query", "exec", "begin" or "conn".
func (o Op) String() string {
	switch o {
	case OpQuery:
		return "query"
	case OpExec:
		return "exec"
	case OpBegin:
		return "begin"
	case OpConn:
		return "conn"
	}
	return "unknown"
}

// Reason says why a call went to its node.
type Reason uint8

const (
	// ReasonPolicy: a replica the read policy picked.
	ReasonPolicy Reason = iota + 1
	// ReasonRule: the primary, as the routing rules require: a statement
	// that writes or that the classifier does not prove a pure read, a
	// transaction that is not read-only (or is serializable), a Conn; or
	// a read on a DB with no replica.
	ReasonRule
	// ReasonForced: the primary, because the context asked for it
	// ([WithPrimary], [Strong]).
	ReasonForced
	// ReasonFallback: the primary, because no replica was eligible
	// (within the fallback limit, see [WithFallbackLimit]).
	ReasonFallback
	// ReasonSession: the node that covers the context's [Session]: a
	// replica that has replayed its writes, or the primary.
	ReasonSession
	// ReasonConsistency: the node that meets the context's
	// [BoundedStaleness].
	ReasonConsistency
	// ReasonSchema: the primary, because no replica has replayed a schema
	// change made through the DB yet.
	ReasonSchema
	// ReasonRetry: another node, after the previous attempt failed in a
	// way that allows running the call again (see [CallEvent.Retried]).
	ReasonRetry
	// ReasonHedge: the replica of a hedge (see [WithHedging]) that
	// answered before the first one.
	ReasonHedge
)

// String returns the reason as a lowercase word: "policy", "rule",
// "forced", "fallback", "session", "consistency", "schema", "retry" or
// "hedge", fit for a metric label.
func (r Reason) String() string {
	switch r {
	case ReasonPolicy:
		return "policy"
	case ReasonRule:
		return "rule"
	case ReasonForced:
		return "forced"
	case ReasonFallback:
		return "fallback"
	case ReasonSession:
		return "session"
	case ReasonConsistency:
		return "consistency"
	case ReasonSchema:
		return "schema"
	case ReasonRetry:
		return "retry"
	case ReasonHedge:
		return "hedge"
	}
	return "none"
}

// CallEvent reports one attempt of a routed call, when it ends: a call
// that is retried on another node reports each attempt. Statements in a
// transaction or on a Conn run on the node their BeginTx or Conn reported
// and are not reported again.
type CallEvent struct {
	// Context is the caller's context, e.g. for the active trace span.
	Context context.Context
	Op      Op
	// Node is the node's name (see [Replica.Name]); empty when the call
	// was refused before reaching any node (Err says why: [ErrNoReplica],
	// [ErrNoPrimary], [ErrSplitBrain], ...).
	Node string
	// Role is the node's role when the call ended; meaningless (zero)
	// when Node is empty.
	Role   Role
	Reason Reason
	// Attempt numbers the attempts of one call from 1.
	Attempt int
	// Hedges is the number of hedges a hedged read sent (see
	// [WithHedging]); the attempt reported is the one that answered.
	Hedges int
	// Latency is the attempt's time on its node, from sending the call to
	// its first response (as [Replica.Latency] measures it). A hedged read
	// reports its whole time, hedges included.
	Latency time.Duration
	// Err is the attempt's error, nil on success; it may be the caller's
	// context error. With Retried, the call went on to another node.
	Err     error
	Retried bool
}

// Event is a change in a DB's nodes or sessions, delivered to
// [Observer.ObserveEvent]: [NodeEvent], [PrimaryChanged], [WriteOutage],
// [PromotionEvent], [SessionWaited] or [TokenRejected].
type Event interface {
	event()
}

// NodeState is what a [NodeEvent] reports.
type NodeState uint8

const (
	NodeEjected    NodeState = iota + 1 // taken out of rotation after consecutive failures
	NodeReinstated                      // back in rotation after consecutive good probes
	NodeFenced                          // takes writes on an old timeline: neither written to nor read from
	NodeUnfenced                        // no longer fenced
	NodeLagging                         // replication lag over WithMaxReplicationLag: no reads go to it
	NodeCaughtUp                        // lag within the bound again
	NodeJoined                          // added to the node set (DB.AddNode, discovery); probed before it serves
	NodeLeft                            // removed from the node set (DB.RemoveNode, discovery)
)

// String returns "ejected", "reinstated", "fenced", "unfenced",
// "lagging", "caught-up", "joined" or "left".
func (s NodeState) String() string {
	switch s {
	case NodeEjected:
		return "ejected"
	case NodeReinstated:
		return "reinstated"
	case NodeFenced:
		return "fenced"
	case NodeUnfenced:
		return "unfenced"
	case NodeLagging:
		return "lagging"
	case NodeCaughtUp:
		return "caught-up"
	case NodeJoined:
		return "joined"
	case NodeLeft:
		return "left"
	}
	return "unknown"
}

// NodeEvent reports a node's change of state.
type NodeEvent struct {
	Node  string
	Role  Role
	State NodeState
	// Cause is the failure that took the node out (NodeEjected), as text
	// without a DSN; empty otherwise.
	Cause string
	// Lag is the node's measured lag (NodeLagging, NodeCaughtUp).
	Lag time.Duration
}

// PrimaryChanged reports that writes now go to another node.
type PrimaryChanged struct {
	From, To string
}

// WriteOutage reports the end of a write outage: the first successful
// write after a primary change. Duration runs from the first sign of
// trouble with the old primary (as [Stats.LastWriteOutage]).
type WriteOutage struct {
	Primary  string // the node that took the write
	Duration time.Duration
}

// PromotionEvent reports an attempt of automatic promotion (see
// [WithAutoFailover]): Node was promoted in place of Old, or Err says why
// none was.
type PromotionEvent struct {
	Node, Old string
	Duration  time.Duration
	Err       error
}

// SessionWaited reports a session read that waited for a replica to
// replay the session's writes (see [WithSessionWait]): Node is the replica
// that caught up, or empty when none did in time and the read went to the
// primary.
type SessionWaited struct {
	Context context.Context
	Node    string
	Waited  time.Duration
}

// TokenRejected reports a session token that the DB did not accept: one
// [ResumeSession] read whose signature or position the DB refuses when the
// session is first used with it (the session then starts empty), or one
// that [DB.SessionMiddleware] could not read at all (ignored). Reason says
// why, without the token's content.
type TokenRejected struct {
	Reason string
}

func (NodeEvent) event()      {}
func (PrimaryChanged) event() {}
func (WriteOutage) event()    {}
func (PromotionEvent) event() {}
func (SessionWaited) event()  {}
func (TokenRejected) event()  {}

// observers is several observers as one.
type observers []Observer

func (os observers) ObserveCall(e CallEvent) {
	for _, o := range os {
		o.ObserveCall(e)
	}
}

func (os observers) ObserveEvent(e Event) {
	for _, o := range os {
		o.ObserveEvent(e)
	}
}

// observerOf returns the one observer a DB calls for os: nil for none.
func observerOf(os []Observer) Observer {
	switch len(os) {
	case 0:
		return nil
	case 1:
		return os[0]
	}
	return observers(os)
}

// CallInfo records where the calls made with a context from [WithCallInfo]
// went, for logs and tests that want to know without an observer. It is
// safe for concurrent use.
type CallInfo struct {
	mu    sync.Mutex
	last  CallEvent // without its Context
	calls int
}

// WithCallInfo returns a context whose calls record, in the returned
// CallInfo, the node that served them and why. A middleware can put one on
// a request's context and log it afterwards.
func WithCallInfo(ctx context.Context) (context.Context, *CallInfo) {
	info := new(CallInfo)
	return withOptions(ctx, func(o *callOptions) { o.info = info }), info
}

// CallInfoFrom returns the CallInfo of ctx, or nil.
func CallInfoFrom(ctx context.Context) *CallInfo {
	if o := optionsOf(ctx); o != nil {
		return o.info
	}
	return nil
}

// Last returns the last attempt of the last call made with the context
// (its Context field is nil), and false before any call.
func (c *CallInfo) Last() (CallEvent, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.calls > 0
}

// Node returns the name of the node that served the last call, or ""
// before any call or when it was refused.
func (c *CallInfo) Node() string {
	e, _ := c.Last()
	return e.Node
}

// Calls returns the number of call attempts recorded.
func (c *CallInfo) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

func (c *CallInfo) record(e CallEvent) {
	e.Context = nil
	c.mu.Lock()
	c.last = e
	c.calls++
	c.mu.Unlock()
}

// watching says whether a call made with ctx and its options o is
// observed: by an observer, a CallInfo or a debug log. Without any it is
// two loads, and the call is neither timed nor reported.
func (db *DB) watching(ctx context.Context, o *callOptions) bool {
	return db.cfg.observer != nil || (o != nil && o.info != nil) ||
		(db.cfg.debugLog != nil && db.cfg.debugLog.Enabled(ctx, slog.LevelDebug))
}

// reason says why rt's node was chosen for its attempt-th attempt.
func (rt route) reason(attempt int) Reason {
	if attempt > 1 {
		return ReasonRetry
	}
	switch rt.pin {
	case pinSession:
		return ReasonSession
	case pinBounded:
		return ReasonConsistency
	case pinForced:
		return ReasonForced
	case pinSchemaFloor:
		return ReasonSchema
	}
	switch {
	case rt.fallback:
		return ReasonFallback
	case rt.read && rt.r.Role() == RoleReplica:
		return ReasonPolicy
	}
	return ReasonRule
}

// observeCall reports an attempt of a call on rt that began at start
// (monotime) to the DB's observer, the CallInfo of o and the debug log.
func (db *DB) observeCall(ctx context.Context, o *callOptions, op Op, rt route, reason Reason, attempt, hedges int, start int64, err error, retried bool) {
	e := CallEvent{Context: ctx, Op: op, Reason: reason, Attempt: attempt, Hedges: hedges, Err: err, Retried: retried}
	if rt.r != nil {
		e.Node, e.Role = rt.r.name, rt.r.Role()
		e.Latency = time.Duration(monotime() - start)
	}
	if obs := db.cfg.observer; obs != nil {
		obs.ObserveCall(e)
	}
	if o != nil && o.info != nil {
		o.info.record(e)
	}
	if l := db.cfg.debugLog; l != nil && l.Enabled(ctx, slog.LevelDebug) {
		attrs := [...]slog.Attr{
			slog.String("op", op.String()),
			slog.String("node", e.Node),
			slog.String("role", e.Role.String()),
			slog.String("reason", reason.String()),
			slog.Duration("latency", e.Latency),
			slog.Int("attempt", attempt),
		}
		if err != nil {
			l.LogAttrs(ctx, slog.LevelDebug, "rwsplit: call", append(attrs[:], slog.String("err", errorText(err)))...)
			return
		}
		l.LogAttrs(ctx, slog.LevelDebug, "rwsplit: call", attrs[:]...)
	}
}

// observeRead reports an attempt of a read: hedgeWon says a hedge
// answered it.
func (db *DB) observeRead(ctx context.Context, o *callOptions, rt route, attempt, hedges int, hedgeWon bool, start int64, err error, retried bool) {
	reason := ReasonHedge
	if !hedgeWon {
		reason = rt.reason(attempt)
	}
	db.observeCall(ctx, o, OpQuery, rt, reason, attempt, hedges, start, err, retried)
}

// observeRefused reports a call refused before reaching any node.
func (db *DB) observeRefused(ctx context.Context, o *callOptions, op Op, err error) {
	db.observeCall(ctx, o, op, route{}, 0, 1, 0, 0, err, false)
}

// emit reports an event to the DB's observer, if any.
func (db *DB) emit(e Event) {
	if obs := db.cfg.observer; obs != nil {
		obs.ObserveEvent(e)
	}
}
