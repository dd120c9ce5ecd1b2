package rwsplitotel

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/rwsplit/rwsplit"
)

// ScopeName is the instrumentation scope of the Observer's meter.
const ScopeName = "github.com/rwsplit/rwsplit/rwsplitotel"

// durationBuckets are the explicit bucket boundaries the semantic
// conventions give db.client.operation.duration.
var durationBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10}

// maxCached bounds the attribute sets kept for calls: nodes × operations
// × reasons × outcomes stays far below it, unless errors of ever new
// types keep coming; past it, a call builds its attributes anew.
const maxCached = 4096

// Observer turns a DB's calls and events into OpenTelemetry metrics and
// annotates the caller's span with the node that served each call. It
// implements [rwsplit.Observer]: give it to the DB with
// [rwsplit.WithObserver], then hand the DB to [Observer.Track] for the
// metrics that come from [rwsplit.DB.Stats]. Create it with [New]. It is
// safe for concurrent use.
type Observer struct {
	cfg   config
	meter metric.Meter

	duration    metric.Float64Histogram // db.client.operation.duration
	calls       metric.Int64Counter     // rwsplit.calls
	changes     metric.Int64Counter     // rwsplit.node.state_changes
	outages     metric.Float64Histogram // rwsplit.write_outage.duration
	promotions  metric.Float64Histogram // rwsplit.promotion.duration
	sessionWait metric.Float64Histogram // rwsplit.session.wait.duration

	stats statsInstruments // observed from Stats by Track's callbacks

	// attrs is the current base attributes and the attribute sets of the
	// calls seen, replaced whole (copy on write) under mu: a call's lookup
	// is one atomic load and a map read.
	attrs atomic.Pointer[attrCache]
	mu    sync.Mutex
	// systemFrom is the DB whose dialect gives db.system.name when
	// WithSystem did not: the first one tracked. Guarded by mu.
	systemFrom *rwsplit.DB
}

var _ rwsplit.Observer = (*Observer)(nil)

// attrCache is an immutable set of attributes: the ones on every
// measurement, and those of each kind of call seen.
type attrCache struct {
	system string // db.system.name, "" while unknown
	base   []attribute.KeyValue
	calls  map[callKey]*callAttrs
}

// callKey is what a call's attributes depend on.
type callKey struct {
	node    string
	role    rwsplit.Role
	op      rwsplit.Op
	reason  rwsplit.Reason
	attempt int // 0 for the first
	outcome string
	errType string
	status  string
}

// callAttrs are a kind of call's attributes, built once.
type callAttrs struct {
	// The instruments' options, as slices: passing them on allocates
	// nothing.
	duration []metric.RecordOption // the histogram's attribute set
	calls    []metric.AddOption    // the same with the outcome
	span     []attribute.KeyValue  // for the caller's span
}

// New returns an Observer whose instruments are created with the options'
// meter provider (by default the global one), in the scope [ScopeName].
// It fails only when the provider refuses an instrument.
func New(opts ...Option) (*Observer, error) {
	var cfg config
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	if cfg.provider == nil {
		cfg.provider = otel.GetMeterProvider()
	}
	o := &Observer{cfg: cfg}
	o.meter = cfg.provider.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))
	if err := o.newInstruments(); err != nil {
		return nil, err
	}
	o.attrs.Store(newAttrCache(&cfg, cfg.system))
	return o, nil
}

func newAttrCache(cfg *config, system string) *attrCache {
	c := &attrCache{system: system, calls: map[callKey]*callAttrs{}}
	if system != "" {
		c.base = append(c.base, semconv.DBSystemNameKey.String(system))
	}
	if cfg.namespace != "" {
		c.base = append(c.base, semconv.DBNamespace(cfg.namespace))
	}
	c.base = append(c.base, cfg.attrs...)
	return c
}

func (o *Observer) newInstruments() error {
	var err error
	m := o.meter
	if o.duration, err = m.Float64Histogram("db.client.operation.duration",
		metric.WithDescription("Duration of database client operations: one attempt of a call routed by rwsplit, on its node."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return err
	}
	if o.calls, err = m.Int64Counter("rwsplit.calls",
		metric.WithDescription("Attempts of calls routed by rwsplit, by node, operation, route reason and outcome."),
		metric.WithUnit("{call}")); err != nil {
		return err
	}
	if o.changes, err = m.Int64Counter("rwsplit.node.state_changes",
		metric.WithDescription("Changes of a node's state: ejected, reinstated, fenced, unfenced, lagging, caught-up."),
		metric.WithUnit("{change}")); err != nil {
		return err
	}
	if o.outages, err = m.Float64Histogram("rwsplit.write_outage.duration",
		metric.WithDescription("Write outages after a primary change: from the first sign of trouble with the old primary to the first successful write on the new one."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)); err != nil {
		return err
	}
	if o.promotions, err = m.Float64Histogram("rwsplit.promotion.duration",
		metric.WithDescription("Attempts of automatic promotion of a replica, by outcome."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)); err != nil {
		return err
	}
	if o.sessionWait, err = m.Float64Histogram("rwsplit.session.wait.duration",
		metric.WithDescription("Time session reads waited for a replica to replay the session's writes, by where the read went."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)); err != nil {
		return err
	}
	return o.stats.create(m)
}

// ObserveCall records one attempt of a routed call: in
// db.client.operation.duration (unless it was refused before reaching a
// node) and rwsplit.calls (with rwsplit.call.outcome), and on the span of
// e.Context when it is recording: the attempt that ended the call sets
// rwsplit.node.name, rwsplit.node.role, rwsplit.route.reason,
// server.address and server.port (a later call on the same span
// overwrites them); a failed attempt that was retried adds an event
// "rwsplit.retry", and a refused call an event "rwsplit.refused". It
// never sets the span's status: the error is the caller's to record.
//
// A kind of call seen before costs an atomic load, a map read and the
// instruments' own work: no attributes are built.
func (o *Observer) ObserveCall(e rwsplit.CallEvent) {
	ctx := e.Context
	if ctx == nil {
		ctx = context.Background()
	}
	k := callKey{node: e.Node, role: e.Role, op: e.Op, reason: e.Reason, outcome: outcomeOf(ctx, &e)}
	if e.Attempt > 1 {
		k.attempt = e.Attempt
	}
	if e.Node == "" {
		k.role, k.reason = 0, 0
	}
	if e.Err != nil {
		k.errType, k.status = errorType(e.Err)
	}
	a := o.callAttrs(k)
	if e.Node != "" {
		o.duration.Record(ctx, e.Latency.Seconds(), a.duration...)
	}
	o.calls.Add(ctx, 1, a.calls...)

	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	switch {
	case e.Node == "":
		span.AddEvent("rwsplit.refused", trace.WithAttributes(
			semconv.DBOperationName(e.Op.String()), semconv.ErrorTypeKey.String(k.errType)))
	case e.Retried:
		span.AddEvent("rwsplit.retry", trace.WithAttributes(
			append(a.span[:len(a.span):len(a.span)], semconv.ErrorTypeKey.String(k.errType))...))
	default:
		span.SetAttributes(a.span...)
		if e.Hedges > 0 {
			span.SetAttributes(HedgesKey.Int(e.Hedges))
		}
	}
}

// outcomeOf classifies an attempt as rwsplit.call.outcome does.
func outcomeOf(ctx context.Context, e *rwsplit.CallEvent) string {
	switch {
	case e.Err == nil:
		return OutcomeOK
	case ctx.Err() != nil:
		return OutcomeCanceled
	case e.Node == "":
		return OutcomeRefused
	}
	return OutcomeError
}

// callAttrs returns the attributes of the calls of k, built on first use.
func (o *Observer) callAttrs(k callKey) *callAttrs {
	if a, ok := o.attrs.Load().calls[k]; ok {
		return a
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.attrs.Load()
	if a, ok := c.calls[k]; ok {
		return a
	}
	a := buildCallAttrs(c.base, k)
	if len(c.calls) >= maxCached {
		return a
	}
	next := &attrCache{system: c.system, base: c.base, calls: make(map[callKey]*callAttrs, len(c.calls)+1)}
	for kk, v := range c.calls {
		next.calls[kk] = v
	}
	next.calls[k] = a
	o.attrs.Store(next)
	return a
}

func buildCallAttrs(base []attribute.KeyValue, k callKey) *callAttrs {
	kv := append([]attribute.KeyValue(nil), base...)
	kv = append(kv, semconv.DBOperationName(k.op.String()))
	var span []attribute.KeyValue
	if k.node != "" {
		span = append(span, NodeNameKey.String(k.node), NodeRoleKey.String(k.role.String()), RouteReasonKey.String(k.reason.String()))
		span = append(span, serverAttrs(k.node)...)
		if k.attempt > 1 {
			span = append(span, AttemptKey.Int(k.attempt))
		}
		kv = append(kv, span...)
	}
	if k.errType != "" {
		kv = append(kv, semconv.ErrorTypeKey.String(k.errType))
	}
	if k.status != "" {
		kv = append(kv, semconv.DBResponseStatusCode(k.status))
	}
	a := &callAttrs{span: span}
	a.duration = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(kv...))}
	a.calls = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(append(kv, OutcomeKey.String(k.outcome))...))}
	return a
}

// ObserveEvent records a DB's event: a [rwsplit.NodeEvent] in
// rwsplit.node.state_changes, a [rwsplit.WriteOutage] in
// rwsplit.write_outage.duration, a [rwsplit.PromotionEvent] in
// rwsplit.promotion.duration, and a [rwsplit.SessionWaited] in
// rwsplit.session.wait.duration and as an event "rwsplit.session.wait" on
// the waiting caller's span. Primary changes and rejected tokens are
// counted from Stats (see [Observer.Track]); other events are ignored.
func (o *Observer) ObserveEvent(ev rwsplit.Event) {
	base := o.attrs.Load().base
	with := func(kv ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append(append([]attribute.KeyValue(nil), base...), kv...)...))
	}
	bg := context.Background()
	switch e := ev.(type) {
	case rwsplit.NodeEvent:
		o.changes.Add(bg, 1, with(NodeNameKey.String(e.Node), NodeRoleKey.String(e.Role.String()), NodeStateKey.String(e.State.String())))
	case rwsplit.WriteOutage:
		o.outages.Record(bg, e.Duration.Seconds(), with(NodeNameKey.String(e.Primary)))
	case rwsplit.PromotionEvent:
		if e.Err != nil {
			o.promotions.Record(bg, e.Duration.Seconds(), with(PromotionOutcomeKey.String("failed")))
			return
		}
		o.promotions.Record(bg, e.Duration.Seconds(), with(PromotionOutcomeKey.String("promoted"), NodeNameKey.String(e.Node)))
	case rwsplit.SessionWaited:
		ctx := e.Context
		if ctx == nil {
			ctx = bg
		}
		kv := []attribute.KeyValue{SessionTargetKey.String("primary")}
		if e.Node != "" {
			kv = []attribute.KeyValue{SessionTargetKey.String("replica"), NodeNameKey.String(e.Node)}
		}
		o.sessionWait.Record(ctx, e.Waited.Seconds(), with(kv...))
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.AddEvent("rwsplit.session.wait", trace.WithAttributes(append(kv, attribute.Float64("rwsplit.session.waited", e.Waited.Seconds()))...))
		}
	}
}

// settle sets db.system.name from db's dialect, unless WithSystem gave it
// or another DB was tracked first; it starts the call cache anew when the
// name changes (the MySQL driver's dialect turns into mariadb at the
// first probe).
func (o *Observer) settle(db *rwsplit.DB, dialect string) {
	if o.cfg.system != "" {
		return
	}
	sys := systemOf(dialect)
	if c := o.attrs.Load(); c.system == sys {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.systemFrom == nil {
		o.systemFrom = db
	}
	if o.systemFrom != db || o.attrs.Load().system == sys {
		return
	}
	o.attrs.Store(newAttrCache(&o.cfg, sys))
}
