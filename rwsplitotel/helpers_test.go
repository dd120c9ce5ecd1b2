package rwsplitotel_test

import (
	"context"
	"database/sql"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplitotel"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// engine is what differs between the servers under test.
type engine struct {
	name    string
	cluster func() *rwsplittest.Cluster
	dialect string // Stats().Dialect once settled
	system  string // db.system.name
	whoami  string // the server's own port
	create  string
	insert  string // a write that records the port of the server that ran it
	count   string // the writes of a run, by server port
}

var engines = []engine{
	{
		name:    "postgres",
		cluster: func() *rwsplittest.Cluster { return pgCluster },
		dialect: "postgres",
		system:  "postgresql",
		whoami:  "SELECT inet_server_port()",
		create:  "CREATE TABLE IF NOT EXISTS otel_writes (port int NOT NULL, run text NOT NULL)",
		insert:  "INSERT INTO otel_writes (port, run) VALUES (inet_server_port(), $1)",
		count:   "SELECT port, count(*) FROM otel_writes WHERE run = $1 GROUP BY port",
	},
	{
		name:    "mariadb",
		cluster: func() *rwsplittest.Cluster { return mariaCluster },
		dialect: "mariadb",
		system:  "mariadb",
		whoami:  "SELECT @@port",
		create:  "CREATE TABLE IF NOT EXISTS otel_writes (port int NOT NULL, run varchar(100) NOT NULL)",
		insert:  "INSERT INTO otel_writes (port, run) VALUES (@@port, ?)",
		count:   "SELECT port, count(*) FROM otel_writes WHERE run = ? GROUP BY port",
	},
}

// harness is a DB over a cluster, observed by an Observer that exports
// to an in-memory reader and annotates spans kept by a recorder.
type harness struct {
	t      *testing.T
	e      engine
	c      *rwsplittest.Cluster
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tracer trace.Tracer
	obs    *rwsplitotel.Observer
	db     *rwsplit.DB
	reg    metric.Registration
	byPort map[int]string // server port -> node name
}

func newHarness(t *testing.T, e engine, obsOpts []rwsplitotel.Option, dbOpts ...rwsplit.Option) *harness {
	t.Helper()
	h := &harness{t: t, e: e, c: e.cluster(), byPort: map[int]string{}}
	h.reader = sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	h.spans = tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	h.tracer = tp.Tracer("rwsplitotel_test")
	t.Cleanup(func() {
		require.NoError(t, mp.Shutdown(context.Background()))
		require.NoError(t, tp.Shutdown(context.Background()))
	})

	obs, err := rwsplitotel.New(append([]rwsplitotel.Option{rwsplitotel.WithMeterProvider(mp)}, obsOpts...)...)
	require.NoError(t, err)
	h.obs = obs
	db, err := h.c.Open(append([]rwsplit.Option{
		rwsplit.WithObserver(obs),
		rwsplit.WithHealthCheckInterval(100 * time.Millisecond),
	}, dbOpts...)...)
	require.NoError(t, err)
	h.db = db
	t.Cleanup(func() { require.NoError(t, db.Close()) })

	// The MySQL driver's dialect is settled by the first probe (MySQL or
	// MariaDB); wait for it, so that db.system.name is known from the
	// first call on.
	require.Eventually(t, func() bool { return db.Stats().Dialect == e.dialect }, 10*time.Second, 10*time.Millisecond)
	h.reg, err = obs.Track(db)
	require.NoError(t, err)

	for i := range h.c.Nodes() {
		addr := h.c.Addr(i)
		_, p, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		port, err := strconv.Atoi(p)
		require.NoError(t, err)
		h.byPort[port] = addr
	}
	return h
}

// queryRower is what can run the who-am-I query: the DB, a Tx, a Conn.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// whoAnswered runs the who-am-I query and returns the name of the node
// whose server says it answered.
func (h *harness) whoAnswered(ctx context.Context, q queryRower) string {
	h.t.Helper()
	var port int
	require.NoError(h.t, q.QueryRowContext(ctx, h.e.whoami).Scan(&port))
	node, ok := h.byPort[port]
	require.True(h.t, ok, "server port %d is none of the cluster's", port)
	return node
}

// primaryDB is a plain handle on the cluster's first primary, for
// fixtures and for asking it what it ran.
func (h *harness) primaryDB() *sql.DB {
	h.t.Helper()
	db, err := sql.Open(h.c.DriverName(), h.c.DSN(0))
	require.NoError(h.t, err)
	h.t.Cleanup(func() { db.Close() })
	return db
}

func (h *harness) collect() map[string]metricdata.Metrics {
	h.t.Helper()
	return collect(h.t, h.reader)
}

func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, rwsplitotel.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// point is one data point of any kind, reduced to what the tests read.
type point struct {
	attrs attribute.Set
	value float64 // a sum's or gauge's value; a histogram's count
	sum   float64 // a histogram's sum
}

func points(m metricdata.Metrics) []point {
	var out []point
	switch d := m.Data.(type) {
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			out = append(out, point{p.Attributes, float64(p.Count), p.Sum})
		}
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out = append(out, point{attrs: p.Attributes, value: float64(p.Value)})
		}
	case metricdata.Sum[float64]:
		for _, p := range d.DataPoints {
			out = append(out, point{attrs: p.Attributes, value: p.Value})
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			out = append(out, point{attrs: p.Attributes, value: float64(p.Value)})
		}
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			out = append(out, point{attrs: p.Attributes, value: p.Value})
		}
	}
	return out
}

// str returns the attribute k of set as a string ("" when absent).
func str(set attribute.Set, k attribute.Key) string {
	v, ok := set.Value(k)
	if !ok {
		return ""
	}
	return v.Emit()
}

// byNode returns the points of m by rwsplit.node.name.
func byNode(t *testing.T, ms map[string]metricdata.Metrics, name string) map[string]point {
	t.Helper()
	m, ok := ms[name]
	require.True(t, ok, "no metric %s", name)
	out := map[string]point{}
	for _, p := range points(m) {
		n := str(p.attrs, rwsplitotel.NodeNameKey)
		_, dup := out[n]
		require.False(t, dup, "%s: two points for node %q", name, n)
		out[n] = p
	}
	return out
}

// spanAttr returns the attribute k of a recorded span.
func spanAttr(s sdktrace.ReadOnlySpan, k attribute.Key) string {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value.Emit()
		}
	}
	return ""
}
