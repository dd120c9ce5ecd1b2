package rwsplit

import (
	"context"
	"time"
)

// callOptions is what the With... context functions ask of the calls made
// with a context. One context value holds them all, so a call looks them up
// once.
type callOptions struct {
	primary     bool
	session     *Session
	consistency Consistency
	concern     *WriteConcern
	info        *CallInfo // from WithCallInfo
}

type optionsKey struct{}

func optionsOf(ctx context.Context) *callOptions {
	o, _ := ctx.Value(optionsKey{}).(*callOptions)
	return o
}

func withOptions(ctx context.Context, set func(*callOptions)) context.Context {
	var o callOptions
	if p := optionsOf(ctx); p != nil {
		o = *p
	}
	set(&o)
	return context.WithValue(ctx, optionsKey{}, &o)
}

// WithPrimary returns a context that sends every call made with it to the
// primary: reads too, and read-only transactions. Use it for a read that
// must see the primary's latest state. It is [WithConsistency] with
// [Strong].
func WithPrimary(ctx context.Context) context.Context {
	return withOptions(ctx, func(o *callOptions) { o.primary = true })
}

// Consistency is what a read asks of the data it sees; see
// [WithConsistency].
type Consistency struct {
	level  consistencyLevel
	maxLag time.Duration
}

type consistencyLevel uint8

const (
	levelDefault  consistencyLevel = iota // session when the context has one, else eventual
	levelEventual                         // any eligible replica
	levelSession                          // the session's writes and earlier reads
	levelBounded                          // a replica at most maxLag behind
	levelStrong                           // the primary
)

var (
	// Eventual reads from any eligible replica (within
	// WithMaxReplicationLag, if set). It is the default without a session;
	// with a session it ignores the session's position (writes through
	// the session are still recorded).
	Eventual = Consistency{level: levelEventual}
	// ReadYourWrites reads from a replica that has applied every write of
	// the context's [Session] and everything the session read before
	// (monotonic reads), else from the primary. It is the default when
	// the context carries a session; without one it is Eventual.
	ReadYourWrites = Consistency{level: levelSession}
	// Strong reads from the primary, as [WithPrimary] does.
	Strong = Consistency{level: levelStrong}
)

// BoundedStaleness reads from a replica whose measured replication lag is
// known and at most maxLag, else from the primary. A maxLag of zero or less
// is [Strong].
func BoundedStaleness(maxLag time.Duration) Consistency {
	if maxLag <= 0 {
		return Strong
	}
	return Consistency{level: levelBounded, maxLag: maxLag}
}

func (c Consistency) String() string {
	switch c.level {
	case levelEventual:
		return "eventual"
	case levelSession:
		return "read-your-writes"
	case levelBounded:
		return "bounded staleness " + c.maxLag.String()
	case levelStrong:
		return "strong"
	}
	return "default"
}

// WithConsistency returns a context whose reads have consistency c. The
// default is [ReadYourWrites] when the context carries a [Session]
// ([WithSession]) and [Eventual] otherwise; [WithPrimary] overrides both.
func WithConsistency(ctx context.Context, c Consistency) context.Context {
	return withOptions(ctx, func(o *callOptions) { o.consistency = c })
}

// WithSession returns a context whose calls belong to session s: writes
// made with it advance the session's position, and reads see them (see
// [Session]). A nil s returns ctx unchanged.
func WithSession(ctx context.Context, s *Session) context.Context {
	if s == nil {
		return ctx
	}
	return withOptions(ctx, func(o *callOptions) { o.session = s })
}

// SessionFrom returns the session of ctx, or nil.
func SessionFrom(ctx context.Context) *Session {
	if o := optionsOf(ctx); o != nil {
		return o.session
	}
	return nil
}

// readLevel is the consistency a read made with o asks for.
func (o *callOptions) readLevel() consistencyLevel {
	if o.primary {
		return levelStrong
	}
	if o.consistency.level == levelDefault {
		if o.session != nil {
			return levelSession
		}
		return levelEventual
	}
	if o.consistency.level == levelSession && o.session == nil {
		return levelEventual
	}
	return o.consistency.level
}

func forcedPrimary(ctx context.Context) bool {
	o := optionsOf(ctx)
	return o != nil && o.readLevel() == levelStrong
}

// WithWriteConcern returns a context whose writes (ExecContext and
// [DB.RunInTx]) wait, after the primary has committed them, until wc's
// number of replicas have applied them, as synchronous or semi-synchronous
// replication would, on the client side. When the wait times out the
// write's sql.Result comes back together with a [*WriteConcernError]: the
// write is committed on the primary; do not retry it blindly.
func WithWriteConcern(ctx context.Context, wc WriteConcern) context.Context {
	return withOptions(ctx, func(o *callOptions) { o.concern = &wc })
}
