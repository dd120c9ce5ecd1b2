package rwsplittest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rwsplit/rwsplit/rwsplittest/internal/localos"
)

// Kind selects the database engine of a cluster.
type Kind string

// Supported cluster kinds.
const (
	Postgres Kind = "postgres"
	MariaDB  Kind = "mariadb"
)

// Accounts created on every cluster. The passwords are test-only secrets;
// they appear in DSNs and replication connection strings, never in errors.
const (
	AppUser         = "app"
	AppPassword     = "app-secret-pw"
	AppDatabase     = "app"
	MonitorUser     = "monitor"
	MonitorPassword = "monitor-secret-pw"
	ReplUser        = "repl"
	ReplPassword    = "repl-secret-pw"
	// AdminPassword is the password of the superuser ("postgres" for
	// PostgreSQL, "root" for MariaDB; see LocalNode.AdminUser).
	AdminPassword = "admin-secret-pw"
)

// defaultWait bounds waits whose context has no deadline.
const defaultWait = time.Minute

// LocalOptions configures a cluster.
type LocalOptions struct {
	// Replicas is the number of replicas. Zero means the default of 2; a
	// primary without replicas cannot be requested. Negative values are an
	// error.
	Replicas int
	// ApplyDelay optionally delays replay on replica i (Replicas()[i]):
	// PostgreSQL recovery_min_apply_delay, MariaDB MASTER_DELAY (whole
	// seconds, rounded up; since binlog timestamps have a resolution of one
	// second, MariaDB may apply a transaction up to a second early).
	// Missing entries mean no delay. Start waits for delayed replicas only
	// as far as needed (MariaDB: until the accounts have replicated).
	ApplyDelay []time.Duration
	// Logf, when not nil, receives progress messages (for example
	// testing.T.Logf or log.Printf).
	Logf func(format string, args ...any)
	// Settings are server settings for every node, one "name = value"
	// per entry: lines of postgresql.conf, or mariadbd options.
	Settings []string
}

// LocalCluster is a running primary with its replicas. Create it with Start,
// startLocalPostgres or startLocalMariaDB and always Close it.
type LocalCluster struct {
	kind     Kind
	nodes    []*LocalNode
	logf     func(format string, args ...any)
	settings []string
	created  time.Time
	cred     *credential // server user when running as root, else nil
	pg       pgBins
	maria    mariaBins

	closeOnce sync.Once
	closeErr  error
}

// LocalNode is one database server of a cluster.
type LocalNode struct {
	c        *LocalCluster
	name     string
	dir      string // the node's temporary directory
	dataDir  string
	logPath  string
	serverID int           // MariaDB server_id
	delay    time.Duration // apply delay when replicating

	life sync.Mutex // serializes lifecycle operations

	mu       sync.Mutex
	port     int
	srv      *server
	frozen   bool
	readOnly bool // MariaDB: start with --read-only=1
	closed   bool
}

// server is one started server process.
type server struct {
	pid  int
	done chan struct{}
	err  error // valid after done is closed
}

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

type signal int

const (
	sigInt signal = iota + 1
	sigTerm
	sigQuit
	sigStop
	sigCont
	sigKill
)

type credential = localos.Credential

// Start starts a cluster of the given kind: a primary and opts.Replicas
// replicas (default 2), and returns once replication works. On failure
// everything started so far is stopped and removed.
func StartLocal(ctx context.Context, kind Kind, opts LocalOptions) (*LocalCluster, error) {
	switch kind {
	case Postgres:
		return startLocalPostgres(ctx, opts)
	case MariaDB:
		return startLocalMariaDB(ctx, opts)
	default:
		return nil, fmt.Errorf("rwsplittest: unknown cluster kind %q (want %q or %q)", kind, Postgres, MariaDB)
	}
}

// newCluster validates opts and creates the node directories.
func newCluster(kind Kind, opts LocalOptions) (*LocalCluster, error) {
	if err := localos.Supported(); err != nil {
		return nil, fmt.Errorf("rwsplittest: %w", err)
	}
	replicas := opts.Replicas
	if replicas == 0 {
		replicas = 2
	}
	if replicas < 0 {
		return nil, fmt.Errorf("rwsplittest: LocalOptions.Replicas = %d; want a positive number (0 means 2)", opts.Replicas)
	}
	if len(opts.ApplyDelay) > replicas {
		return nil, fmt.Errorf("rwsplittest: LocalOptions.ApplyDelay has %d entries for %d replicas", len(opts.ApplyDelay), replicas)
	}
	for i, d := range opts.ApplyDelay {
		if d < 0 {
			return nil, fmt.Errorf("rwsplittest: LocalOptions.ApplyDelay[%d] = %v is negative", i, d)
		}
	}
	c := &LocalCluster{kind: kind, logf: opts.Logf, settings: opts.Settings, created: time.Now()}
	var err error
	serverUser, prefix, pattern := "postgres", "pg", "rwsplit-pg-*"
	if kind == MariaDB {
		serverUser, prefix, pattern = "mysql", "maria", "rwsplit-maria-*"
		c.maria, err = findMariaDB()
	} else {
		c.pg, err = findPostgres()
	}
	if err != nil {
		return nil, err
	}
	if c.cred, err = serverCredential(serverUser); err != nil {
		return nil, err
	}
	base := localos.BaseTempDir()
	c.sweepStale(base)
	for i := 0; i <= replicas; i++ {
		n := &LocalNode{c: c, name: prefix + strconv.Itoa(i), serverID: i + 1, readOnly: i > 0}
		if i > 0 && i-1 < len(opts.ApplyDelay) {
			n.delay = opts.ApplyDelay[i-1]
		}
		dir, err := os.MkdirTemp(base, pattern)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("rwsplittest: %s: create temporary directory: %w", n.name, err)
		}
		n.dir = dir
		n.dataDir = filepath.Join(dir, "data")
		n.logPath = filepath.Join(dir, "server.log")
		c.nodes = append(c.nodes, n)
		if err := os.Chmod(dir, 0o700); err != nil {
			c.Close()
			return nil, fmt.Errorf("rwsplittest: %s: chmod %s: %w", n.name, dir, err)
		}
		if err := localos.WriteOwner(dir, ownerFile); err != nil {
			c.Close()
			return nil, fmt.Errorf("rwsplittest: %s: %w", n.name, err)
		}
		if err := c.chown(dir); err != nil {
			c.Close()
			return nil, fmt.Errorf("rwsplittest: %s: %w", n.name, err)
		}
		if n.port, err = localos.PickPort(); err != nil {
			c.Close()
			return nil, fmt.Errorf("rwsplittest: %s: %w", n.name, err)
		}
	}
	return c, nil
}

// serverCredential returns the account servers must run as: the named
// system user when running as root, nil (the current user) otherwise.
func serverCredential(name string) (*credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	c, err := localos.LookupUser(name)
	if err != nil {
		return nil, fmt.Errorf("rwsplittest: running as root, but the %q system user needed to run the server is not usable (%v); run \"make deps\" or run the tests as a non-root user", name, err)
	}
	return c, nil
}

// chown gives path to the server user (no-op when not root).
func (c *LocalCluster) chown(path string) error {
	if c.cred == nil {
		return nil
	}
	if err := os.Lchown(path, int(c.cred.UID), int(c.cred.GID)); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, c.cred.Name, err)
	}
	return nil
}

// chownTree gives a directory tree to the server user.
func (c *LocalCluster) chownTree(root string) error {
	if c.cred == nil {
		return nil
	}
	return filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return c.chown(p)
	})
}

func (c *LocalCluster) log(format string, args ...any) {
	if c.logf != nil {
		c.logf("rwsplittest: [+%.3fs] %s", time.Since(c.created).Seconds(), fmt.Sprintf(format, args...))
	}
}

// withDefaultWait adds the default deadline to contexts that have none.
func withDefaultWait(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, defaultWait)
}

// ---- LocalCluster accessors ----

// Kind returns the database engine of the cluster.
func (c *LocalCluster) Kind() Kind { return c.kind }

// Nodes returns all nodes: index 0 is the node started as primary, followed
// by the replicas in order.
func (c *LocalCluster) Nodes() []*LocalNode { return append([]*LocalNode(nil), c.nodes...) }

// Primary returns the node started as primary. It is not updated by
// Promote.
func (c *LocalCluster) Primary() *LocalNode { return c.nodes[0] }

// Replicas returns the nodes started as replicas.
func (c *LocalCluster) Replicas() []*LocalNode { return append([]*LocalNode(nil), c.nodes[1:]...) }

// DriverName returns the database/sql driver name the DSNs are meant for:
// "pgx" for PostgreSQL, "mysql" for MariaDB.
func (c *LocalCluster) DriverName() string {
	if c.kind == MariaDB {
		return "mysql"
	}
	return "pgx"
}

// WaitCaughtUp waits until every running replica has replayed everything
// primary has written so far. Nodes that are stopped, frozen or not
// replicas (a PostgreSQL node not in recovery, a MariaDB node without a
// replication source) are ignored.
func (c *LocalCluster) WaitCaughtUp(ctx context.Context, primary *LocalNode) error {
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	if c.kind == MariaDB {
		return c.mariaWaitCaughtUp(ctx, primary, nil)
	}
	return c.pgWaitCaughtUp(ctx, primary, nil)
}

// Follow points the running replica at primary (after a promotion).
//
// PostgreSQL: ALTER SYSTEM SET primary_conninfo and pg_reload_conf();
// recovery_target_timeline is left at its default, latest. The node must
// be a standby; use Reclone for an old primary. MariaDB: STOP SLAVE; SET
// GLOBAL read_only=1; CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos; START
// SLAVE. For a MariaDB node whose binlog holds transactions of its own (an
// old primary, @@gtid_binlog_pos differs from @@gtid_slave_pos)
// MASTER_USE_GTID=current_pos is used instead, so it resumes after its own
// last transaction. In both cases Follow returns once the replica is
// connected to primary (streaming / both replication threads running).
func (c *LocalCluster) Follow(ctx context.Context, replica, primary *LocalNode) error {
	if err := c.check(replica, primary); err != nil {
		return err
	}
	if replica == primary {
		return fmt.Errorf("rwsplittest: Follow: %s cannot follow itself", replica.name)
	}
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	replica.life.Lock()
	defer replica.life.Unlock()
	if !replica.Running() {
		return fmt.Errorf("rwsplittest: %s: Follow: node is not running", replica.name)
	}
	if c.kind == MariaDB {
		return c.mariaFollow(ctx, replica, primary)
	}
	return c.pgFollow(ctx, replica, primary)
}

// Reclone turns n into a fresh replica of primary (PostgreSQL only): it
// stops n if it is running, wipes its data directory, takes a base backup
// of primary (pg_basebackup -R -X stream) and starts n as a standby on its
// old port. It is used to bring an old primary back after a failover.
func (c *LocalCluster) Reclone(ctx context.Context, n *LocalNode, primary *LocalNode) error {
	if c.kind != Postgres {
		return fmt.Errorf("rwsplittest: %s: Reclone is only supported for PostgreSQL clusters", n.name)
	}
	if err := c.check(n, primary); err != nil {
		return err
	}
	if n == primary {
		return fmt.Errorf("rwsplittest: Reclone: %s cannot be cloned from itself", n.name)
	}
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	n.life.Lock()
	defer n.life.Unlock()
	return c.pgReclone(ctx, n, primary)
}

func (c *LocalCluster) check(nodes ...*LocalNode) error {
	for _, n := range nodes {
		if n == nil || n.c != c {
			return errors.New("rwsplittest: node does not belong to this cluster")
		}
	}
	return nil
}

// Close stops every server (thawing frozen ones first) and removes all
// temporary directories. It is idempotent and safe after a partial start.
func (c *LocalCluster) Close() error {
	c.closeOnce.Do(func() {
		errs := make([]error, len(c.nodes))
		var wg sync.WaitGroup
		for i, n := range c.nodes {
			wg.Go(func() { errs[i] = n.destroy() })
		}
		wg.Wait()
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// ---- LocalNode accessors ----

// Name returns the node's name, e.g. "pg0" or "maria1".
func (n *LocalNode) Name() string { return n.name }

// Port returns the TCP port the node listens on (127.0.0.1 only).
func (n *LocalNode) Port() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.port
}

// Addr returns "127.0.0.1:<port>".
func (n *LocalNode) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port())) }

// Dir returns the node's temporary directory (data directory, socket, log).
func (n *LocalNode) Dir() string { return n.dir }

// LogPath returns the path of the server log file.
func (n *LocalNode) LogPath() string { return n.logPath }

// AdminUser returns the superuser name: "postgres" or "root".
func (n *LocalNode) AdminUser() string {
	if n.c.kind == MariaDB {
		return "root"
	}
	return "postgres"
}

func (n *LocalNode) dsn(user, password string) string {
	if n.c.kind == MariaDB {
		return fmt.Sprintf("%s:%s@tcp(%s)/%s?parseTime=true", user, password, n.Addr(), AppDatabase)
	}
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", user, password, n.Addr(), AppDatabase)
}

// DSN returns the application user's DSN (database app): pgx URL format for
// PostgreSQL, go-sql-driver/mysql format (with parseTime=true) for MariaDB.
func (n *LocalNode) DSN() string { return n.dsn(AppUser, AppPassword) }

// AdminDSN returns the superuser's DSN (database app) in the same format.
func (n *LocalNode) AdminDSN() string { return n.dsn(n.AdminUser(), AdminPassword) }

// MonitorDSN returns the monitoring user's DSN (database app). The user can
// read replication status (PostgreSQL pg_monitor; MariaDB SLAVE MONITOR,
// BINLOG MONITOR, REPLICATION CLIENT) and everything in app, but not write.
func (n *LocalNode) MonitorDSN() string { return n.dsn(MonitorUser, MonitorPassword) }

// Running reports whether the node's server process is alive (a frozen
// node is running).
func (n *LocalNode) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv != nil && !n.srv.exited()
}

// Frozen reports whether the node is stopped by Freeze.
func (n *LocalNode) Frozen() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.frozen && n.srv != nil && !n.srv.exited()
}

// PID returns the process id of the server (postmaster or mariadbd), or 0
// when it is not running.
func (n *LocalNode) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil || n.srv.exited() {
		return 0
	}
	return n.srv.pid
}

func (n *LocalNode) current() *server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// Exec runs sql as the superuser through the command-line client over TCP,
// connected to the app database. Several statements may be given; each runs
// in its own transaction unless the SQL says otherwise. The result is stdout
// with surrounding white space trimmed: one row per line, columns separated
// by tabs, no headers (PostgreSQL NULL prints as an empty string, MariaDB
// NULL as "NULL"). Errors include the client's stderr.
//
// The MariaDB superuser is not subject to read_only: writing on a replica
// through Exec succeeds and makes the replica diverge (and, with
// gtid_strict_mode, stops its replication). Use ExecAs with AppUser to
// check that replicas reject writes.
func (n *LocalNode) Exec(ctx context.Context, sql string) (string, error) {
	return n.ExecAs(ctx, n.AdminUser(), AdminPassword, sql)
}

// ExecAs is Exec as another user, e.g. ExecAs(ctx, AppUser, AppPassword,
// sql), connected to the app database.
func (n *LocalNode) ExecAs(ctx context.Context, user, password, sql string) (string, error) {
	if n.c.kind == MariaDB {
		return n.mariaExec(ctx, user, password, sql)
	}
	return n.pgExec(ctx, user, password, sql)
}

// ---- lifecycle ----

// Crash kills the node immediately (SIGKILL to the server and all its
// processes) and waits until its port is closed. Crashing a node that is not
// running is a no-op.
func (n *LocalNode) Crash() error {
	n.life.Lock()
	defer n.life.Unlock()
	s := n.current()
	if s == nil || s.exited() {
		return nil
	}
	n.c.log("%s: crash (SIGKILL pid %d)", n.name, s.pid)
	if err := n.killServer(s); err != nil {
		return err
	}
	return n.waitPortClosed(10 * time.Second)
}

// Stop shuts the node down cleanly (PostgreSQL: fast shutdown with SIGINT;
// MariaDB: SIGTERM) and waits for it to exit. A frozen node is thawed first.
// Stopping a node that is not running is a no-op.
func (n *LocalNode) Stop() error {
	n.life.Lock()
	defer n.life.Unlock()
	return n.stopLocked()
}

func (n *LocalNode) stopLocked() error {
	s := n.current()
	if s == nil || s.exited() {
		return nil
	}
	n.c.log("%s: stop", n.name)
	_ = signalTree(s.pid, sigCont)
	n.setFrozen(false)
	sig := sigInt
	if n.c.kind == MariaDB {
		sig = sigTerm
	}
	if err := signalPID(s.pid, sig); err != nil {
		return fmt.Errorf("rwsplittest: %s: stop: signal pid %d: %w", n.name, s.pid, err)
	}
	select {
	case <-s.done:
	case <-time.After(2 * defaultWait):
		_ = n.killServer(s)
		return fmt.Errorf("rwsplittest: %s: stop: server did not shut down within %v, killed it%s", n.name, 2*defaultWait, n.logTailMsg(0))
	}
	return n.waitPortClosed(10 * time.Second)
}

// Start starts the node again on the same port and data directory (after
// Stop or Crash) and waits until it accepts connections.
func (n *LocalNode) Start(ctx context.Context) error {
	n.life.Lock()
	defer n.life.Unlock()
	if n.Running() {
		return fmt.Errorf("rwsplittest: %s: Start: already running", n.name)
	}
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	return n.startServer(ctx, false)
}

// Freeze stops (SIGSTOP) every process of the node. Connections to it then
// hang instead of failing. Close and Stop thaw frozen nodes.
func (n *LocalNode) Freeze() error {
	n.life.Lock()
	defer n.life.Unlock()
	s := n.current()
	if s == nil || s.exited() {
		return fmt.Errorf("rwsplittest: %s: Freeze: node is not running", n.name)
	}
	n.c.log("%s: freeze", n.name)
	if err := signalTree(s.pid, sigStop); err != nil {
		return fmt.Errorf("rwsplittest: %s: Freeze: %w", n.name, err)
	}
	n.setFrozen(true)
	return nil
}

// Thaw resumes (SIGCONT) the processes of a frozen node. Thawing a node
// that is not frozen or not running is a no-op.
func (n *LocalNode) Thaw() error {
	n.life.Lock()
	defer n.life.Unlock()
	s := n.current()
	if s == nil || s.exited() {
		n.setFrozen(false)
		return nil
	}
	n.c.log("%s: thaw", n.name)
	if err := signalTree(s.pid, sigCont); err != nil {
		return fmt.Errorf("rwsplittest: %s: Thaw: %w", n.name, err)
	}
	n.setFrozen(false)
	return nil
}

// Promote turns a replica into a writable primary.
//
// PostgreSQL: SELECT pg_promote(true, 60), then waits until
// pg_is_in_recovery() is false. MariaDB: stops the I/O thread and lets the
// SQL thread apply what was already received (unless a MASTER_DELAY is
// configured), then STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0 and
// checks that @@read_only is 0. Promoting a node that already is a primary
// is a no-op.
func (n *LocalNode) Promote(ctx context.Context) error {
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	n.life.Lock()
	defer n.life.Unlock()
	if !n.Running() {
		return fmt.Errorf("rwsplittest: %s: Promote: node is not running", n.name)
	}
	n.c.log("%s: promote", n.name)
	if n.c.kind == MariaDB {
		return n.mariaPromote(ctx)
	}
	return n.pgPromote(ctx)
}

func (n *LocalNode) setFrozen(v bool) {
	n.mu.Lock()
	n.frozen = v
	n.mu.Unlock()
}

// killServer SIGKILLs the server and all its processes and waits for the
// server process to be reaped.
func (n *LocalNode) killServer(s *server) error {
	if err := signalTree(s.pid, sigKill); err != nil {
		return fmt.Errorf("rwsplittest: %s: kill pid %d: %w", n.name, s.pid, err)
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("rwsplittest: %s: pid %d did not exit after SIGKILL", n.name, s.pid)
	}
	n.setFrozen(false)
	return nil
}

// waitPortClosed waits until nothing accepts connections on the node's
// port any more.
func (n *LocalNode) waitPortClosed(timeout time.Duration) error {
	addr := n.Addr()
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			var op *net.OpError
			if errors.As(err, &op) && !op.Timeout() {
				return nil
			}
		} else {
			conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rwsplittest: %s: port %s still open %v after the server exited", n.name, addr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// portOpen reports whether something accepts TCP connections on the port.
func (n *LocalNode) portOpen() bool {
	conn, err := net.DialTimeout("tcp", n.Addr(), 200*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// startServer starts the server process and waits until it is ready. When
// newPortOK is set, a failure to bind the port is retried with another port.
func (n *LocalNode) startServer(ctx context.Context, newPortOK bool) error {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return fmt.Errorf("rwsplittest: %s: cluster is closed", n.name)
	}
	for attempt := 1; ; attempt++ {
		offset := fileSize(n.logPath)
		s, err := n.spawn()
		if err != nil {
			return fmt.Errorf("rwsplittest: %s: start server: %w", n.name, err)
		}
		n.mu.Lock()
		n.srv = s
		n.frozen = false
		n.mu.Unlock()
		err = n.waitReady(ctx, s)
		if err == nil {
			n.c.log("%s: running on %s (pid %d)", n.name, n.Addr(), s.pid)
			return nil
		}
		exited := s.exited()
		if !exited {
			_ = n.killServer(s)
		}
		tail := readTail(n.logPath, offset, 4096)
		if exited && newPortOK && attempt < 5 && strings.Contains(tail, "Address already in use") {
			port, perr := localos.PickPort()
			if perr == nil {
				n.c.log("%s: port %d is taken, retrying with %d", n.name, n.Port(), port)
				n.mu.Lock()
				old := n.port
				n.port = port
				n.mu.Unlock()
				localos.ReleasePort(old)
				continue
			}
		}
		return fmt.Errorf("rwsplittest: %s: start server on %s: %w%s", n.name, n.Addr(), err, logTailBlock(n.logPath, tail))
	}
}

// waitReady polls until the server accepts connections, exits or ctx ends.
func (n *LocalNode) waitReady(ctx context.Context, s *server) error {
	for {
		if s.exited() {
			return fmt.Errorf("server exited during start-up (%v)", s.err)
		}
		if n.probe(ctx, s) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server not ready: %w", ctx.Err())
		case <-s.done:
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func (n *LocalNode) probe(ctx context.Context, s *server) bool {
	if n.c.kind == MariaDB {
		return n.mariaProbe(ctx)
	}
	return n.pgProbe(ctx, s)
}

// destroy stops the server for good and removes the node directory.
func (n *LocalNode) destroy() error {
	n.life.Lock()
	defer n.life.Unlock()
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	var errs []error
	if s := n.current(); s != nil && !s.exited() {
		_ = signalTree(s.pid, sigCont)
		if n.c.kind == Postgres {
			// Immediate shutdown: fast, and unlike SIGKILL it releases the
			// postmaster's shared memory.
			_ = signalPID(s.pid, sigQuit)
			select {
			case <-s.done:
			case <-time.After(5 * time.Second):
			}
		}
		if !s.exited() {
			if err := n.killServer(s); err != nil {
				errs = append(errs, err)
			}
		}
	}
	n.setFrozen(false)
	if n.c.kind == Postgres {
		localos.CleanupShm(n.dataDir)
	}
	if n.dir != "" {
		var err error
		for range 5 {
			if err = os.RemoveAll(n.dir); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("rwsplittest: %s: remove %s: %w", n.name, n.dir, err))
		}
	}
	localos.ReleasePort(n.Port())
	return errors.Join(errs...)
}

// ---- helpers ----

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readTail returns at most max bytes from the end of path, starting no
// earlier than offset.
func readTail(path string, offset int64, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	size := fileSize(path)
	start := offset
	if size-start > max {
		start = size - max
	}
	if start < 0 {
		start = 0
	}
	buf := make([]byte, size-start)
	nr, _ := f.ReadAt(buf, start)
	return string(buf[:nr])
}

func logTailBlock(path, tail string) string {
	tail = strings.TrimSpace(tail)
	if tail == "" {
		return " (server log " + path + " is empty)"
	}
	return "\n--- tail of " + path + " ---\n" + tail
}

func (n *LocalNode) logTailMsg(offset int64) string {
	return logTailBlock(n.logPath, readTail(n.logPath, offset, 4096))
}
