package rwsplittest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit"
)

// Cluster is a primary and its replicas, started by [RunPostgres],
// [StartPostgres] or [StartMariaDB]. Its methods are safe for concurrent
// use.
type Cluster struct {
	be     backend
	n      int
	mu     sync.Mutex
	closed bool
}

// backend is what differs between containers and local binaries.
type backend interface {
	driverName() string
	dsn(node int) string
	addr(node int) string
	crash(ctx context.Context, node int) error
	freeze(ctx context.Context, node int) error
	thaw(ctx context.Context, node int) error
	restart(ctx context.Context, node int) error
	promote(ctx context.Context, node int) error
	logs(ctx context.Context, node int) (string, error)
	close() error
}

// An Option configures a cluster.
type Option func(*config)

type config struct {
	replicas int
	delay    time.Duration
	settings []string
	logf     func(format string, args ...any)
}

func newConfig(opts []Option) config {
	c := config{replicas: 2, logf: func(string, ...any) {}}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithReplicas sets the number of replicas; the default is 2, and 0 is a
// primary alone.
func WithReplicas(n int) Option { return func(c *config) { c.replicas = n } }

// WithReplicaDelay makes the replicas apply changes d after the primary
// committed them (PostgreSQL recovery_min_apply_delay; MariaDB
// MASTER_DELAY, in whole seconds, rounded up). Zero, the default, is no
// delay.
func WithReplicaDelay(d time.Duration) Option { return func(c *config) { c.delay = d } }

// WithSetting adds a server setting to every node, "name = value": a line
// of postgresql.conf ("work_mem = '8MB'"), or a mariadbd option
// ("max_connections = 200").
func WithSetting(line string) Option {
	return func(c *config) { c.settings = append(c.settings, line) }
}

// WithLogf sends the cluster's progress messages to logf (t.Logf, say);
// by default they are dropped.
func WithLogf(logf func(format string, args ...any)) Option {
	return func(c *config) { c.logf = logf }
}

func (c *Cluster) node(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("rwsplittest: cluster is closed")
	}
	if i < 0 || i > c.n {
		return fmt.Errorf("rwsplittest: no node %d (nodes 0 to %d)", i, c.n)
	}
	return nil
}

// Nodes returns the number of nodes, the primary included.
func (c *Cluster) Nodes() int { return c.n + 1 }

// DriverName returns the database/sql driver name of the cluster's DSNs:
// "pgx" or "mysql". The test imports the driver itself.
func (c *Cluster) DriverName() string { return c.be.driverName() }

// DSN returns the application user's DSN of node i, reachable from the
// test process on 127.0.0.1. It stays the same for the cluster's life.
func (c *Cluster) DSN(i int) string {
	if c.node(i) != nil {
		return ""
	}
	return c.be.dsn(i)
}

// Addr returns node i's address as the test process reaches it,
// 127.0.0.1:port: the name a *rwsplit.DB from [Cluster.Open] gives the node
// in its Stats.
func (c *Cluster) Addr(i int) string {
	if c.node(i) != nil {
		return ""
	}
	return c.be.addr(i)
}

// Open returns a *rwsplit.DB over the cluster: node 0 as the primary,
// the others as replicas, named by their DSNs' addresses. The caller
// closes it.
func (c *Cluster) Open(opts ...rwsplit.Option) (*rwsplit.DB, error) {
	if err := c.node(0); err != nil {
		return nil, err
	}
	var replicas []string
	for i := 1; i <= c.n; i++ {
		replicas = append(replicas, c.be.dsn(i))
	}
	return rwsplit.Open(c.be.driverName(), c.be.dsn(0), replicas, opts...)
}

// Crash kills node i at once, as a power cut would.
func (c *Cluster) Crash(ctx context.Context, i int) error {
	if err := c.node(i); err != nil {
		return err
	}
	return c.be.crash(ctx, i)
}

// Freeze stops every process of node i without ending it, as a hung host
// or a silent network drop: connections to it stay open and get no
// answer until [Cluster.Thaw].
func (c *Cluster) Freeze(ctx context.Context, i int) error {
	if err := c.node(i); err != nil {
		return err
	}
	return c.be.freeze(ctx, i)
}

// Thaw lets a frozen node go on.
func (c *Cluster) Thaw(ctx context.Context, i int) error {
	if err := c.node(i); err != nil {
		return err
	}
	return c.be.thaw(ctx, i)
}

// Restart starts node i again after a crash, on the same address, and
// waits until it accepts connections. A replica comes back as a replica of
// the current primary.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	if err := c.node(i); err != nil {
		return err
	}
	return c.be.restart(ctx, i)
}

// Promote makes replica i the primary: it stops a still-running old
// primary first (fencing), lets i apply everything it received, promotes
// it and repoints the other running replicas to it. A PostgreSQL replica
// that cannot follow the new primary (it received more than the new
// primary had) is rebuilt from a base backup of it; a MariaDB one that
// cannot is an error.
func (c *Cluster) Promote(ctx context.Context, i int) error {
	if err := c.node(i); err != nil {
		return err
	}
	return c.be.promote(ctx, i)
}

// followWait bounds how long Promote waits for a replica to stream from
// the new primary before it rebuilds it.
const followWait = 8 * time.Second

// Logs returns the server log of node i, for a failing test to show.
func (c *Cluster) Logs(ctx context.Context, i int) (string, error) {
	if err := c.node(i); err != nil {
		return "", err
	}
	return c.be.logs(ctx, i)
}

// Close stops and removes every node and everything the cluster made
// (containers, their volumes and network; processes and files). It is
// idempotent.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	return c.be.close()
}

// BackendEnv names the environment variable [Run] reads: "containers"
// (the default) or "local".
const BackendEnv = "RWSPLITTEST_BACKEND"

// Run starts a cluster for t on the backend BackendEnv names (containers,
// from image, by default; "local" for the machine's binaries), registers
// its Close with t, and logs the end of every node's server log when t
// fails. The image says which server: a name that starts with "mariadb"
// is MariaDB, any other PostgreSQL. It fails t if the cluster cannot
// start.
func Run(t testing.TB, image string, opts ...Option) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts = append([]Option{WithLogf(t.Logf)}, opts...)
	var c *Cluster
	var err error
	maria := strings.HasPrefix(path.Base(image), "mariadb")
	switch b := os.Getenv(BackendEnv); {
	case (b == "" || b == "containers") && maria:
		c, err = RunMariaDB(ctx, image, opts...)
	case b == "" || b == "containers":
		c, err = RunPostgres(ctx, image, opts...)
	case b == "local" && maria:
		c, err = StartMariaDB(ctx, opts...)
	case b == "local":
		c, err = StartPostgres(ctx, opts...)
	default:
		t.Fatalf("rwsplittest: %s=%q: want containers or local", BackendEnv, b)
	}
	if err != nil {
		t.Fatalf("rwsplittest: starting a cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i := range c.Nodes() {
				if l, err := c.Logs(context.Background(), i); err == nil {
					t.Logf("node %d's server log:\n%s", i, tail(l, 40))
				}
			}
		}
		if err := c.Close(); err != nil {
			t.Errorf("rwsplittest: closing the cluster: %v", err)
		}
	})
	return c
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			if lines++; lines > n {
				return s[i+1:]
			}
		}
	}
	return s
}
