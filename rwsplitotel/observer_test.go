package rwsplitotel_test

import (
	"context"
	"database/sql/driver"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplitotel"
)

// The tests in this file give the Observer events directly, as a DB
// would, for what a healthy cluster does not do on demand: retries,
// refusals, promotions, write outages.

type unit struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tracer trace.Tracer
	obs    *rwsplitotel.Observer
}

func newUnit(t *testing.T, opts ...rwsplitotel.Option) *unit {
	u := &unit{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(u.reader))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(u.spans))
	t.Cleanup(func() {
		require.NoError(t, mp.Shutdown(context.Background()))
		require.NoError(t, tp.Shutdown(context.Background()))
	})
	u.tracer = tp.Tracer("unit")
	obs, err := rwsplitotel.New(append([]rwsplitotel.Option{rwsplitotel.WithMeterProvider(mp)}, opts...)...)
	require.NoError(t, err)
	u.obs = obs
	return u
}

// pgError is a driver error with a SQLSTATE, as pgconn.PgError.
type pgError struct{ code string }

func (e *pgError) Error() string    { return "ERROR: canceling statement due to conflict with recovery" }
func (e *pgError) SQLState() string { return e.code }

func TestRetryAndRefusal(t *testing.T) {
	u := newUnit(t, rwsplitotel.WithSystem("postgresql"), rwsplitotel.WithNamespace("app"),
		rwsplitotel.WithAttributes(attribute.String("db.handle", "orders")))
	ctx, span := u.tracer.Start(context.Background(), "handler")
	// A read fails on one replica and is retried on the other.
	u.obs.ObserveCall(rwsplit.CallEvent{Context: ctx, Op: rwsplit.OpQuery, Node: "10.0.0.2:5432", Role: rwsplit.RoleReplica,
		Reason: rwsplit.ReasonPolicy, Attempt: 1, Latency: 3 * time.Millisecond, Err: driver.ErrBadConn, Retried: true})
	u.obs.ObserveCall(rwsplit.CallEvent{Context: ctx, Op: rwsplit.OpQuery, Node: "10.0.0.3:5432", Role: rwsplit.RoleReplica,
		Reason: rwsplit.ReasonRetry, Attempt: 2, Latency: 2 * time.Millisecond})
	span.End()
	// A read refused before reaching any node, outside any span.
	u.obs.ObserveCall(rwsplit.CallEvent{Context: context.Background(), Op: rwsplit.OpQuery, Attempt: 1, Err: rwsplit.ErrNoReplica})
	// A failed write with a SQLSTATE, on a node not named host:port, and
	// without a context.
	u.obs.ObserveCall(rwsplit.CallEvent{Op: rwsplit.OpExec, Node: "primary", Role: rwsplit.RolePrimary,
		Reason: rwsplit.ReasonRule, Attempt: 1, Latency: time.Millisecond, Err: &pgError{"40001"}})

	ms := collect(t, u.reader)
	hist := points(ms["db.client.operation.duration"])
	require.Len(t, hist, 3, "the refused call has no duration")
	for _, p := range hist {
		assert.Equal(t, "postgresql", str(p.attrs, "db.system.name"))
		assert.Equal(t, "app", str(p.attrs, "db.namespace"))
		assert.Equal(t, "orders", str(p.attrs, "db.handle"))
		switch str(p.attrs, rwsplitotel.NodeNameKey) {
		case "10.0.0.2:5432":
			assert.Equal(t, "driver.ErrBadConn", str(p.attrs, "error.type"))
			assert.Equal(t, "policy", str(p.attrs, rwsplitotel.RouteReasonKey))
			assert.Equal(t, "10.0.0.2", str(p.attrs, "server.address"))
			assert.Equal(t, "5432", str(p.attrs, "server.port"))
			assert.Empty(t, str(p.attrs, rwsplitotel.AttemptKey))
			assert.InDelta(t, 0.003, p.sum, 1e-9)
		case "10.0.0.3:5432":
			assert.Empty(t, str(p.attrs, "error.type"))
			assert.Equal(t, "retry", str(p.attrs, rwsplitotel.RouteReasonKey))
			assert.Equal(t, "2", str(p.attrs, rwsplitotel.AttemptKey))
		case "primary":
			assert.Equal(t, "exec", str(p.attrs, "db.operation.name"))
			assert.Equal(t, "40001", str(p.attrs, "error.type"))
			assert.Equal(t, "40001", str(p.attrs, "db.response.status_code"))
			_, ok := p.attrs.Value("server.address")
			assert.False(t, ok, "server.address for a node not named host:port")
		default:
			t.Errorf("unexpected point %v", p.attrs.ToSlice())
		}
	}
	outcomes := map[string]string{}
	for _, p := range points(ms["rwsplit.calls"]) {
		assert.Equal(t, 1.0, p.value)
		outcomes[str(p.attrs, rwsplitotel.NodeNameKey)+"/"+str(p.attrs, "error.type")] = str(p.attrs, rwsplitotel.OutcomeKey)
	}
	assert.Equal(t, map[string]string{
		"10.0.0.2:5432/driver.ErrBadConn": rwsplitotel.OutcomeError,
		"10.0.0.3:5432/":                  rwsplitotel.OutcomeOK,
		"/rwsplit.ErrNoReplica":           rwsplitotel.OutcomeRefused,
		"primary/40001":                   rwsplitotel.OutcomeError,
	}, outcomes)

	spans := u.spans.Ended()
	require.Len(t, spans, 1)
	s := spans[0]
	assert.Equal(t, "10.0.0.3:5432", spanAttr(s, rwsplitotel.NodeNameKey))
	assert.Equal(t, "retry", spanAttr(s, rwsplitotel.RouteReasonKey))
	assert.Equal(t, "2", spanAttr(s, rwsplitotel.AttemptKey))
	assert.Equal(t, "5432", spanAttr(s, "server.port"))
	require.Len(t, s.Events(), 1)
	ev := s.Events()[0]
	assert.Equal(t, "rwsplit.retry", ev.Name)
	evAttrs := attribute.NewSet(ev.Attributes...)
	assert.Equal(t, "10.0.0.2:5432", str(evAttrs, rwsplitotel.NodeNameKey))
	assert.Equal(t, "driver.ErrBadConn", str(evAttrs, "error.type"))
}

func TestRefusalOnSpan(t *testing.T) {
	u := newUnit(t)
	ctx, span := u.tracer.Start(context.Background(), "handler")
	u.obs.ObserveCall(rwsplit.CallEvent{Context: ctx, Op: rwsplit.OpExec, Attempt: 1, Err: rwsplit.ErrNoPrimary})
	span.End()
	s := u.spans.Ended()[0]
	require.Len(t, s.Events(), 1)
	assert.Equal(t, "rwsplit.refused", s.Events()[0].Name)
	assert.Equal(t, "rwsplit.ErrNoPrimary", str(attribute.NewSet(s.Events()[0].Attributes...), "error.type"))
	assert.Empty(t, spanAttr(s, rwsplitotel.NodeNameKey))
	// Without WithSystem and before Track, db.system.name is unknown.
	p := points(collect(t, u.reader)["rwsplit.calls"])
	require.Len(t, p, 1)
	_, ok := p[0].attrs.Value("db.system.name")
	assert.False(t, ok)
}

func TestCanceled(t *testing.T) {
	u := newUnit(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// The caller's context ended during the call, and before another.
	u.obs.ObserveCall(rwsplit.CallEvent{Context: ctx, Op: rwsplit.OpQuery, Node: "10.0.0.2:5432", Role: rwsplit.RoleReplica,
		Reason: rwsplit.ReasonPolicy, Attempt: 1, Latency: time.Millisecond, Err: context.Canceled})
	u.obs.ObserveCall(rwsplit.CallEvent{Context: ctx, Op: rwsplit.OpExec, Attempt: 1, Err: rwsplit.ErrNoPrimary})
	ms := collect(t, u.reader)
	got := map[string]string{}
	for _, p := range points(ms["rwsplit.calls"]) {
		got[str(p.attrs, "db.operation.name")] = str(p.attrs, rwsplitotel.OutcomeKey) + "/" + str(p.attrs, "error.type")
	}
	assert.Equal(t, map[string]string{"query": "canceled/context.Canceled", "exec": "canceled/rwsplit.ErrNoPrimary"}, got)
	assert.Len(t, points(ms["db.client.operation.duration"]), 1, "only the attempt that reached a node")
}

func TestEvents(t *testing.T) {
	u := newUnit(t, rwsplitotel.WithSystem("mariadb"))
	u.obs.ObserveEvent(rwsplit.NodeEvent{Node: "db2:3306", Role: rwsplit.RoleReplica, State: rwsplit.NodeEjected, Cause: "dial tcp: connection refused"})
	u.obs.ObserveEvent(rwsplit.NodeEvent{Node: "db2:3306", Role: rwsplit.RoleReplica, State: rwsplit.NodeReinstated})
	u.obs.ObserveEvent(rwsplit.NodeEvent{Node: "db2:3306", Role: rwsplit.RoleReplica, State: rwsplit.NodeEjected})
	u.obs.ObserveEvent(rwsplit.PrimaryChanged{From: "db1:3306", To: "db2:3306"})
	u.obs.ObserveEvent(rwsplit.WriteOutage{Primary: "db2:3306", Duration: 1500 * time.Millisecond})
	u.obs.ObserveEvent(rwsplit.PromotionEvent{Node: "db2:3306", Old: "db1:3306", Duration: 800 * time.Millisecond})
	u.obs.ObserveEvent(rwsplit.PromotionEvent{Old: "db1:3306", Duration: 200 * time.Millisecond, Err: rwsplit.ErrNoPrimary})
	u.obs.ObserveEvent(rwsplit.TokenRejected{Reason: "bad signature"})
	ctx, span := u.tracer.Start(context.Background(), "handler")
	u.obs.ObserveEvent(rwsplit.SessionWaited{Context: ctx, Node: "db3:3306", Waited: 20 * time.Millisecond})
	u.obs.ObserveEvent(rwsplit.SessionWaited{Context: ctx, Waited: 100 * time.Millisecond})
	span.End()

	ms := collect(t, u.reader)
	changes := map[string]float64{}
	for _, p := range points(ms["rwsplit.node.state_changes"]) {
		assert.Equal(t, "db2:3306", str(p.attrs, rwsplitotel.NodeNameKey))
		assert.Equal(t, "replica", str(p.attrs, rwsplitotel.NodeRoleKey))
		assert.Equal(t, "mariadb", str(p.attrs, "db.system.name"))
		changes[str(p.attrs, rwsplitotel.NodeStateKey)] += p.value
	}
	assert.Equal(t, map[string]float64{"ejected": 2, "reinstated": 1}, changes)

	out := points(ms["rwsplit.write_outage.duration"])
	require.Len(t, out, 1)
	assert.Equal(t, 1.0, out[0].value)
	assert.InDelta(t, 1.5, out[0].sum, 1e-9)
	assert.Equal(t, "db2:3306", str(out[0].attrs, rwsplitotel.NodeNameKey))

	prom := map[string]float64{}
	for _, p := range points(ms["rwsplit.promotion.duration"]) {
		prom[str(p.attrs, rwsplitotel.PromotionOutcomeKey)+"/"+str(p.attrs, rwsplitotel.NodeNameKey)] = p.sum
	}
	assert.InDeltaMapValues(t, map[string]float64{"promoted/db2:3306": 0.8, "failed/": 0.2}, prom, 1e-9)

	wait := map[string]float64{}
	for _, p := range points(ms["rwsplit.session.wait.duration"]) {
		wait[str(p.attrs, rwsplitotel.SessionTargetKey)] = p.sum
	}
	assert.InDeltaMapValues(t, map[string]float64{"replica": 0.02, "primary": 0.1}, wait, 1e-9)
	s := u.spans.Ended()[0]
	require.Len(t, s.Events(), 2)
	assert.Equal(t, "rwsplit.session.wait", s.Events()[0].Name)
	assert.Equal(t, "db3:3306", str(attribute.NewSet(s.Events()[0].Attributes...), rwsplitotel.NodeNameKey))
	assert.Equal(t, "primary", str(attribute.NewSet(s.Events()[1].Attributes...), rwsplitotel.SessionTargetKey))

	// The cause of an ejection is text: it is in no attribute.
	for name, m := range ms {
		for _, p := range points(m) {
			for _, kv := range p.attrs.ToSlice() {
				assert.NotContains(t, kv.Value.Emit(), "refused", name)
				assert.NotContains(t, kv.Value.Emit(), "signature", name)
			}
		}
	}
}

func TestTrackNilDB(t *testing.T) {
	u := newUnit(t)
	_, err := u.obs.Track(nil)
	assert.Error(t, err)
}

// TestConcurrentCalls observes calls of new kinds from many goroutines
// at once (the cache is filled under -race) and counts every one.
func TestConcurrentCalls(t *testing.T) {
	u := newUnit(t, rwsplitotel.WithSystem("postgresql"))
	const goroutines, each = 8, 200
	done := make(chan struct{})
	for g := range goroutines {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				u.obs.ObserveCall(rwsplit.CallEvent{Context: context.Background(), Op: rwsplit.Op(1 + i%4),
					Node: []string{"a:1", "b:2", "c:3"}[(g+i)%3], Reason: rwsplit.Reason(1 + i%9), Attempt: 1, Latency: time.Millisecond})
			}
		}()
	}
	for range goroutines {
		<-done
	}
	var total float64
	for _, p := range points(collect(t, u.reader)["rwsplit.calls"]) {
		total += p.value
	}
	assert.Equal(t, float64(goroutines*each), total)
}
