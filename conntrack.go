package rwsplit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"
	"sync"
)

// A ConnTracker records the network connections of each node of a DB as
// they are dialed, so that the DB can close those of a node it takes out
// of rotation: calls stuck on a hung host (a frozen process, a silent
// network drop) then fail at once with a connection error instead of
// waiting for their deadline, and a read among them is retried on another
// node. A write among them fails too, and is never retried: it may have
// reached the server.
//
// The modules rwsplitpgx and rwsplitmysql open a DB with one. With [New],
// build each node's handle with a connector whose dial function is
// [ConnTracker.DialFunc] of that node, and pass [WithConnTracker]. Tracking
// costs nothing per call: it happens when a connection is opened and
// closed. A ConnTracker is safe for concurrent use and serves one DB.
type ConnTracker struct {
	mu    sync.Mutex
	nodes map[int]map[*trackedConn]struct{} // guarded by mu
}

// NewConnTracker returns an empty ConnTracker.
func NewConnTracker() *ConnTracker {
	return &ConnTracker{nodes: map[int]map[*trackedConn]struct{}{}}
}

// DialFunc returns dial wrapped so that the connections it opens belong
// to node, numbered as [New] takes its handles: 0 the primary, then 1, 2,
// ... the replicas in order. A nil dial dials with a net.Dialer. The
// result has the signature of pgx's and go-sql-driver/mysql's DialFunc.
func (t *ConnTracker) DialFunc(node int, dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := &trackedConn{Conn: c, t: t, node: node}
		t.mu.Lock()
		set := t.nodes[node]
		if set == nil {
			set = map[*trackedConn]struct{}{}
			t.nodes[node] = set
		}
		set[tc] = struct{}{}
		t.mu.Unlock()
		return tc, nil
	}
}

// abort closes every connection of node and returns how many it closed.
func (t *ConnTracker) abort(node int) int {
	t.mu.Lock()
	set := t.nodes[node]
	delete(t.nodes, node)
	t.mu.Unlock()
	for c := range set {
		c.Conn.Close()
	}
	return len(set)
}

// open returns the number of open connections of node.
func (t *ConnTracker) open(node int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.nodes[node])
}

// trackedConn is a connection a ConnTracker knows of, until it is closed.
type trackedConn struct {
	net.Conn
	t    *ConnTracker
	node int
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.nodes[c.node], c)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}

// WithConnTracker makes the DB close the connections t tracked for a node
// when it takes the node out of rotation (consecutive failed probes, or
// failing traffic; see [WithHysteresis]), so that the calls in flight on
// it fail at once and reads among them are retried elsewhere. By default
// the DB tracks no connections: calls on a hung node wait for their
// context's deadline. See [ConnTracker].
func WithConnTracker(t *ConnTracker) Option {
	return optionFunc(func(c *config) { c.tracker = t })
}

// OpenTracked opens the primary and each replica from its DSN with
// connect, which gets the node's number and a dial function to build its
// connector around (a [ConnTracker.DialFunc]), and returns the connector
// with the node's host:port ("" if it has none). The nodes are then put
// behind one DB as [Open] puts them, named by their addresses, with
// [WithConnTracker] before opts. This is how the rwsplitpgx and rwsplitmysql
// modules open a DB; a driver with a dial hook can be used the same way. It does not
// connect. Errors name the node and never contain a DSN or a password (so
// connect's error text is not repeated); empty and repeated DSNs are
// errors; on error, every handle opened is closed.
func OpenTracked(primaryDSN string, replicaDSNs []string,
	connect func(node int, dsn string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (driver.Connector, string, error),
	opts ...Option) (*DB, error) {
	tracker := NewConnTracker()
	opts = append([]Option{WithConnTracker(tracker)}, opts...)
	return openNodes(primaryDSN, replicaDSNs, opts, func(i int, dsn string) (*sql.DB, string, error) {
		conn, addr, err := connect(i, dsn, tracker.DialFunc(i, nil))
		if err != nil {
			// The driver's message may repeat the DSN.
			return nil, "", errors.New("malformed DSN")
		}
		return sql.OpenDB(conn), addr, nil
	})
}
