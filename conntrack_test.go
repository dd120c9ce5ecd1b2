package rwsplit

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit/internal/fakedriver"
)

// A replica whose probe goes unanswered while the other nodes' probes
// answer gets no new reads, well before its probes' timeouts eject it.
func TestHungReplicaSuspectedBeforeEjection(t *testing.T) {
	c := newCluster(t, 2, WithDialect("generic"), WithNodeNames("p", "r1", "r2"), WithHealthCheckInterval(200*time.Millisecond))
	waitFor(t, 5*time.Second, "replicas eligible", func() bool { return c.db.Stats().Eligible == 2 })
	release := c.replicas[0].Block()
	defer release()
	start := time.Now()
	waitFor(t, 2*time.Second, "r1 out of rotation", func() bool { return !nodeStats(c.db, "r1").Eligible })
	took := time.Since(start)
	if s := nodeStats(c.db, "r1"); !s.Up && took < 700*time.Millisecond {
		t.Errorf("r1 ejected after %v, before two probe timeouts could", took)
	}
	t.Logf("hung replica out of rotation after %v", took)
	for range 20 {
		if got := served(t, context.Background(), c.db, "SELECT 1"); got != "r2" {
			t.Fatalf("read with r1 hung served by %s", got)
		}
	}
	release()
	waitFor(t, 5*time.Second, "r1 back", func() bool { return nodeStats(c.db, "r1").Eligible })
}

// The DB closes a node's tracked connections when it takes the node out
// of rotation: a call blocked reading from it fails at once.
func TestConnTrackerClosesConnectionsOnEjection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // a host that accepts and never answers
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	tr := NewConnTracker()
	c := newRoleCluster(t, "generic", 1, WithConnTracker(tr))
	dial := tr.DialFunc(1, nil)
	conn, err := dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	other, err := tr.DialFunc(0, nil)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	read := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1))
		read <- err
	}()
	c.db.setHealthy(c.db.nodeList()[1], false, errRefused)
	select {
	case err := <-read:
		if err == nil {
			t.Error("read on an aborted connection returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read blocked on the ejected node's connection was not released")
	}
	if n := tr.open(1); n != 0 {
		t.Errorf("%d connections of the ejected node still tracked", n)
	}
	if n := tr.open(0); n != 1 {
		t.Errorf("the primary's connection was touched: %d tracked, want 1", n)
	}
	// A connection closed by its user leaves the tracker.
	other.Close()
	if n := tr.open(0); n != 0 {
		t.Errorf("%d connections tracked after Close", n)
	}
}

func TestOpenTracked(t *testing.T) {
	servers := map[string]*fakedriver.Server{}
	connect := func(node int, dsn string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (driver.Connector, string, error) {
		if strings.Contains(dsn, "bad") {
			return nil, "", errors.New("cannot parse " + dsn)
		}
		s := fakedriver.NewServer(dsn)
		servers[dsn] = s
		if dial == nil {
			t.Errorf("node %d got no dial function", node)
		}
		addr, _, _ := strings.Cut(dsn, "/")
		return s.Connector(), addr, nil
	}
	db, err := OpenTracked("10.0.0.1:5432/a", []string{"10.0.0.2:5432/a", "10.0.0.2:5432/b"}, connect, WithDialect("generic"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var names []string
	for _, n := range db.Stats().Nodes {
		names = append(names, n.Name)
	}
	if got := strings.Join(names, " "); got != "10.0.0.1:5432 10.0.0.2:5432 10.0.0.2:5432#2" {
		t.Errorf("names %q", got)
	}
	if db.cfg.tracker == nil {
		t.Error("no tracker set")
	}
	_, err = OpenTracked("10.0.0.1:5432/a", []string{"user:s3cret@bad"}, connect)
	if err == nil || !strings.Contains(err.Error(), "replica 1") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("bad DSN: %v; want the node named and no DSN", err)
	}
	if _, err := OpenTracked("", nil, connect); err == nil {
		t.Error("empty primary DSN accepted")
	}
}
