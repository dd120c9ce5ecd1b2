// Command observe is a small HTTP service whose *rwsplit.DB is watched by
// both of rwsplit's observer adapters at once: rwsplitprom, served on
// GET /metrics, and rwsplitotel, with its metrics on an OpenTelemetry SDK
// meter provider (GET /otel shows them as text) and the serving node on
// each request's span. Its two app endpoints, POST /visits (a write) and
// GET /visits (a read), answer as JSON with the node rwsplit sent the call
// to (rwsplit.WithCallInfo), the server's own word on who it is
// (inet_server_port()), and the attributes rwsplitotel set on the span.
//
// By default it runs a demo and exits: clients drive traffic through
// HTTP, one replica is frozen (every process stopped, as a hung host), the
// program scrapes /metrics while it is out and prints the lines that show
// it, thaws it and waits until it is back. It exits with status 1 if the
// frozen replica never shows as down, or if an answer's node is not the
// server that says it answered. With -serve it serves until interrupted.
//
// With RWSPLIT_PRIMARY unset it starts a local PostgreSQL primary with two
// streaming replicas in a temporary directory (the server binaries come
// from `make deps`) and stops them at the end, also on error or Ctrl-C.
// Otherwise it uses the PostgreSQL DSNs RWSPLIT_PRIMARY and the
// comma-separated RWSPLIT_REPLICAS, and the demo skips the freeze.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplitotel"
	"github.com/rwsplit/rwsplit/rwsplitpgx"
	"github.com/rwsplit/rwsplit/rwsplitprom"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

const (
	// dbName is the DB's name in the Prometheus series (db="app").
	dbName = "app"
	// frozenNode is the cluster node the demo freezes: the second replica.
	frozenNode = 2
	// requestTimeout bounds each request's database call.
	requestTimeout = 5 * time.Second
	// demoTimeout bounds the demo once the cluster is up.
	demoTimeout = 90 * time.Second
)

type options struct {
	port  int
	serve bool
	spans bool
}

func main() {
	log.SetFlags(0)
	var o options
	flag.IntVar(&o.port, "port", 0, "port to serve on, on 127.0.0.1 (0: a free one)")
	flag.BoolVar(&o.serve, "serve", false, "serve until interrupted instead of running the demo")
	flag.BoolVar(&o.spans, "spans", false, "print every span on stdout as JSON (stdouttrace)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, os.Stdout, o); err != nil {
		log.Printf("observe: %v", err)
		stop()
		os.Exit(1)
	}
}

// run starts the cluster (unless RWSPLIT_PRIMARY is set), the service and
// its HTTP server, and then either serves until ctx ends or runs the demo,
// whose report it returns. Everything it started is stopped when it
// returns.
func run(ctx context.Context, out io.Writer, o options) (*report, error) {
	primaryDSN := os.Getenv("RWSPLIT_PRIMARY")
	var replicaDSNs []string
	if r := os.Getenv("RWSPLIT_REPLICAS"); r != "" {
		replicaDSNs = strings.Split(r, ",")
	}
	var c *rwsplittest.Cluster
	if primaryDSN == "" {
		fmt.Fprintln(out, "Starting a local PostgreSQL primary with 2 streaming replicas...")
		start := time.Now()
		var err error
		c, err = rwsplittest.StartPostgres(ctx)
		if err != nil {
			return nil, err
		}
		defer func() {
			c.Close()
			fmt.Fprintln(out, "\nLocal cluster stopped and removed.")
		}()
		fmt.Fprintf(out, "Cluster up in %s.\n", time.Since(start).Round(100*time.Millisecond))
		primaryDSN = c.DSN(0)
		for i := 1; i < c.Nodes(); i++ {
			replicaDSNs = append(replicaDSNs, c.DSN(i))
		}
	}

	var spans io.Writer
	if o.spans {
		spans = out
	}
	svc, err := newService(ctx, primaryDSN, replicaDSNs, spans)
	if err != nil {
		return nil, err
	}
	defer svc.close()

	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(o.port)))
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: svc.routes(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(out, "Serving on %s: POST /visits, GET /visits, GET /metrics, GET /otel\n", base)

	if o.serve {
		fmt.Fprintln(out, "Ctrl-C to stop.")
		<-ctx.Done()
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	return demo(ctx, out, base, svc, c)
}

// service is the app: a DB with its two observers, and the HTTP
// handlers.
type service struct {
	db     *rwsplit.DB
	prom   *rwsplitprom.Collector
	reg    *prometheus.Registry // has prom
	otel   *rwsplitotel.Observer
	track  metric.Registration // otel's Track of db
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
}

// newService opens the DB with both observers, tracks it in both, and
// creates the visits table on every node. With spans set, every span is
// written to it as JSON.
func newService(ctx context.Context, primaryDSN string, replicaDSNs []string, spans io.Writer) (_ *service, err error) {
	s := &service{reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			s.close()
		}
	}()

	// Prometheus: one Collector; an observer and a Track per DB.
	if s.prom, err = rwsplitprom.New(); err != nil {
		return nil, err
	}
	if err := s.reg.Register(s.prom); err != nil {
		return nil, err
	}

	// OpenTelemetry: a meter provider read on demand (a real service
	// would use a periodic reader with an OTLP or Prometheus exporter),
	// and a tracer provider.
	s.reader = sdkmetric.NewManualReader()
	s.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.reader))
	var tpOpts []sdktrace.TracerProviderOption
	if spans != nil {
		exp, err := stdouttrace.New(stdouttrace.WithWriter(spans))
		if err != nil {
			return nil, err
		}
		tpOpts = append(tpOpts, sdktrace.WithSyncer(exp))
	}
	s.tp = sdktrace.NewTracerProvider(tpOpts...)
	s.tracer = s.tp.Tracer("github.com/rwsplit/rwsplit/examples/observe")
	if s.otel, err = rwsplitotel.New(rwsplitotel.WithMeterProvider(s.mp)); err != nil {
		return nil, err
	}

	// Observers compose: each is told of every call and event, in order.
	// rwsplitpgx.Open is rwsplit.Open("pgx", ...) plus connection
	// tracking: the calls stuck on a node taken out of rotation (a hung
	// host) fail at once, and reads among them are retried elsewhere.
	s.db, err = rwsplitpgx.Open(primaryDSN, replicaDSNs,
		rwsplit.WithObserver(s.prom.Observer(dbName)),
		rwsplit.WithObserver(s.otel))
	if err != nil {
		return nil, err
	}
	s.prom.Track(dbName, s.db)
	if s.track, err = s.otel.Track(s.db); err != nil {
		return nil, err
	}

	if err := s.db.PingContext(ctx); err != nil {
		return nil, err
	}
	// Wait until every replica has the table too, so that no read fails
	// on a replica that has not created it yet.
	all := rwsplit.WithWriteConcern(ctx, rwsplit.WriteConcern{Replicas: rwsplit.AllReplicas, Timeout: 30 * time.Second})
	if _, err := s.db.ExecContext(all, "CREATE TABLE IF NOT EXISTS visits (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return nil, err
	}
	return s, nil
}

// close stops what newService started, in reverse order; it works on a
// service that newService left half made.
func (s *service) close() {
	if s.track != nil {
		s.track.Unregister()
	}
	if s.db != nil {
		s.prom.Untrack(dbName)
		s.db.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.tp != nil {
		s.tp.Shutdown(ctx)
	}
	if s.mp != nil {
		s.mp.Shutdown(ctx)
	}
}

func (s *service) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /otel", s.otelMetrics)
	mux.HandleFunc("POST /visits", s.visit)
	mux.HandleFunc("GET /visits", s.visits)
	return mux
}

// answer is the JSON of POST /visits and GET /visits.
type answer struct {
	Visits int64 `json:"visits"` // the new visit's id, or the number of visits
	// From CallInfo: where rwsplit sent the call, and why.
	Node     string `json:"node"`
	Role     string `json:"role"`
	Reason   string `json:"reason"`
	Attempts int    `json:"attempts"`
	// The server's own word: inet_server_port() of the server that ran
	// the statement.
	ServerPort int `json:"server_port"`
	// The request's span, and the attributes rwsplitotel set on it.
	TraceID string            `json:"trace_id"`
	Span    map[string]string `json:"span"`

	at time.Time // when the client got it (demo only)
}

// visit records a visit: a write, on the primary.
func (s *service) visit(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, "POST /visits", func(ctx context.Context) (n int64, port int, err error) {
		err = s.db.QueryRowContext(ctx, "INSERT INTO visits DEFAULT VALUES RETURNING id, inet_server_port()").Scan(&n, &port)
		return n, port, err
	})
}

// visits counts the visits: a read, on a replica.
func (s *service) visits(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, "GET /visits", func(ctx context.Context) (n int64, port int, err error) {
		err = s.db.QueryRowContext(ctx, "SELECT count(*), inet_server_port() FROM visits").Scan(&n, &port)
		return n, port, err
	})
}

// serve runs call under a span named name and a CallInfo, and answers
// with what both say and what the server said.
func (s *service) serve(w http.ResponseWriter, r *http.Request, name string, call func(context.Context) (int64, int, error)) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	ctx, span := s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	ctx, info := rwsplit.WithCallInfo(ctx)

	n, port, err := call(ctx)
	if err != nil {
		span.SetStatus(codes.Error, "database call failed")
		log.Printf("%s: %v", name, err)
		http.Error(w, "database call failed", http.StatusServiceUnavailable)
		return
	}
	last, _ := info.Last()
	a := answer{
		Visits:     n,
		Node:       last.Node,
		Role:       last.Role.String(),
		Reason:     last.Reason.String(),
		Attempts:   info.Calls(),
		ServerPort: port,
		TraceID:    span.SpanContext().TraceID().String(),
		Span:       spanAttributes(span),
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(a)
}

// spanAttributes returns the attributes set on span so far. An SDK span
// can be read back; an exporter is the usual way to see them.
func spanAttributes(span trace.Span) map[string]string {
	ro, ok := span.(sdktrace.ReadOnlySpan)
	if !ok {
		return nil
	}
	m := map[string]string{}
	for _, kv := range ro.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// otelMetrics collects the OpenTelemetry meter provider and writes each
// data point as a line: name{attributes} value (a histogram's count and
// sum).
func (s *service) otelMetrics(w http.ResponseWriter, r *http.Request) {
	var rm metricdata.ResourceMetrics
	if err := s.reader.Collect(r.Context(), &rm); err != nil {
		log.Printf("GET /otel: %v", err)
		http.Error(w, "collecting failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	bw := bufio.NewWriter(w)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			writeOTel(bw, m)
		}
	}
	bw.Flush()
}

func writeOTel(w io.Writer, m metricdata.Metrics) {
	switch d := m.Data.(type) {
	case metricdata.Gauge[int64]:
		writePoints(w, m.Name, d.DataPoints)
	case metricdata.Gauge[float64]:
		writePoints(w, m.Name, d.DataPoints)
	case metricdata.Sum[int64]:
		writePoints(w, m.Name, d.DataPoints)
	case metricdata.Sum[float64]:
		writePoints(w, m.Name, d.DataPoints)
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			a := attrs(p.Attributes.ToSlice())
			fmt.Fprintf(w, "%s_count{%s} %d\n%s_sum{%s} %g\n", m.Name, a, p.Count, m.Name, a, p.Sum)
		}
	}
}

// writePoints writes a gauge's or a sum's data points, one line each.
func writePoints[N int64 | float64](w io.Writer, name string, points []metricdata.DataPoint[N]) {
	for _, p := range points {
		fmt.Fprintf(w, "%s{%s} %v\n", name, attrs(p.Attributes.ToSlice()), p.Value)
	}
}

// attrs formats attributes as k=v pairs, in the set's (sorted) order.
func attrs(kvs []attribute.KeyValue) string {
	var b strings.Builder
	for i, kv := range kvs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(string(kv.Key) + "=" + kv.Value.Emit())
	}
	return b.String()
}
