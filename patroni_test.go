package rwsplit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const clusterJSON = `{"members": [
 {"name": "m1", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:8008/patroni", "host": "127.0.0.1", "port": 5432, "timeline": 2},
 {"name": "m2", "role": "sync_standby", "state": "streaming", "host": "127.0.0.1", "port": 5433, "timeline": 2, "lag": 0},
 {"name": "m3", "role": "replica", "state": "running", "host": "10.0.0.3", "port": 5434, "timeline": 2, "lag": "unknown"},
 {"name": "m4", "role": "replica", "state": "stopped", "host": "10.0.0.4", "port": 5435}
], "scope": "demo"}`

func patroniServer(t *testing.T, body string, status int) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/cluster" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(s.Close)
	return s, &hits
}

func TestPatroniListsRunningMembers(t *testing.T) {
	s, _ := patroniServer(t, clusterJSON, 200)
	p, err := NewPatroni("postgres://app:secret@{host}:{port}/app", nil, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := p.Discover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []DiscoveredNode{
		{Name: "127.0.0.1:5432", DSN: "postgres://app:secret@127.0.0.1:5432/app", Role: RolePrimary},
		{Name: "127.0.0.1:5433", DSN: "postgres://app:secret@127.0.0.1:5433/app", Role: RoleReplica},
		{Name: "10.0.0.3:5434", DSN: "postgres://app:secret@10.0.0.3:5434/app", Role: RoleReplica},
	}
	if !slices.Equal(nodes, want) {
		t.Errorf("Discover = %+v\nwant %+v", nodes, want)
	}
	if !p.ManagesFailover() {
		t.Error("Patroni does not manage failover")
	}
}

// An endpoint that is down or answers garbage is passed over for the
// next; the one that answered is asked first next time.
func TestPatroniFallsOverBetweenEndpoints(t *testing.T) {
	garbage, garbageHits := patroniServer(t, "<html>proxy error</html>", 200)
	failing, _ := patroniServer(t, "", 503)
	empty, _ := patroniServer(t, `{"members": []}`, 200)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	good, goodHits := patroniServer(t, clusterJSON, 200)
	p, err := NewPatroni("host={host} port={port} user=app password=secret", nil,
		"http://user:pw@"+strings.TrimPrefix(down.URL, "http://"), garbage.URL, failing.URL, empty.URL, good.URL)
	if err != nil {
		t.Fatal(err)
	}
	p.next.Store(0) // it starts at a random endpoint: here, the first
	nodes, err := p.Discover(context.Background())
	if err != nil || len(nodes) != 3 || nodes[0].DSN != "host=127.0.0.1 port=5432 user=app password=secret" {
		t.Fatalf("Discover = %+v, %v", nodes, err)
	}
	if _, err := p.Discover(context.Background()); err != nil || goodHits.Load() != 2 || garbageHits.Load() != 1 {
		t.Errorf("second Discover: %v; the good endpoint asked %d times, the garbage one %d", err, goodHits.Load(), garbageHits.Load())
	}

	p, _ = NewPatroni("host={host} port={port} password=secret", nil, "http://user:pw@"+strings.TrimPrefix(down.URL, "http://"), garbage.URL, failing.URL, empty.URL)
	_, err = p.Discover(context.Background())
	if err == nil {
		t.Fatal("Discover with no usable endpoint succeeded")
	}
	for _, leak := range []string{"secret", "pw@", "user:"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("error %q contains %q", err, leak)
		}
	}
	for _, want := range []string{"not a Patroni /cluster answer", "status 503", "no member listed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestPatroniBadInput(t *testing.T) {
	for _, tt := range []struct {
		dsn       string
		endpoints []string
		want      string
	}{
		{"postgres://app:secret@db:5432/app", []string{"http://x:8008"}, "{host} and {port}"},
		{"postgres://app:secret@{host}/app", []string{"http://x:8008"}, "{host} and {port}"},
		{"postgres://app@{host}:{port}/app", nil, "no endpoint"},
		{"postgres://app@{host}:{port}/app", []string{"x:8008"}, "not an http(s) URL"},
		{"postgres://app@{host}:{port}/app", []string{"ftp://x"}, "not an http(s) URL"},
	} {
		_, err := NewPatroni(tt.dsn, nil, tt.endpoints...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("NewPatroni(%q, %q) = %v, want an error saying %q", tt.dsn, tt.endpoints, err, tt.want)
		}
	}
	s, _ := patroniServer(t, `{"members": [{"name": "m1", "role": "leader", "state": "running", "host": "", "port": 5432}]}`, 200)
	p, _ := NewPatroni("postgres://{host}:{port}/app", nil, s.URL)
	if _, err := p.Discover(context.Background()); err == nil {
		t.Error("a member without a host was listed")
	}
}

func TestNewDNSBadInput(t *testing.T) {
	for _, tt := range []struct {
		name string
		port int
		dsn  string
	}{
		{"", 5432, "host={host}"},
		{"replicas", -1, "host={host}"},
		{"replicas", 70000, "host={host}"},
		{"replicas", 5432, "host=db"},
	} {
		if _, err := NewDNS(tt.name, tt.port, tt.dsn, nil); err == nil {
			t.Errorf("NewDNS(%q, %d, %q) succeeded", tt.name, tt.port, tt.dsn)
		}
	}
}

// An endpoint that accepts but never answers costs its share of the
// listing's time, not all of it: the next endpoint still answers.
func TestPatroniHungEndpointAhead(t *testing.T) {
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hung.Close()
	good, _ := patroniServer(t, clusterJSON, 200)
	p, err := NewPatroni("postgres://{host}:{port}/app", nil, hung.URL, good.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if nodes, err := p.Discover(ctx); err != nil || len(nodes) != 3 {
		t.Fatalf("Discover with a hung endpoint first: %d nodes, %v", len(nodes), err)
	}
}

// Processes given the same endpoints start at different ones.
func TestPatroniStartsAtARandomEndpoint(t *testing.T) {
	seen := map[int32]bool{}
	for range 64 {
		p, err := NewPatroni("postgres://{host}:{port}/app", nil, "http://a:8008", "http://b:8008", "http://c:8008")
		if err != nil {
			t.Fatal(err)
		}
		seen[p.next.Load()] = true
	}
	if len(seen) != 3 {
		t.Errorf("64 discoverers started at endpoints %v; want all 3", seen)
	}
}
