package patroni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rwsplit/rwsplit/rwsplittest/internal/localos"
)

// Accounts created on every cluster. The passwords are test-only secrets;
// they appear in DSNs and in the members' configuration, never in errors
// or log lines.
const (
	AppUser         = "app"
	AppPassword     = "app-secret-pw"
	AppDatabase     = "app"
	MonitorUser     = "monitor" // member of pg_monitor
	MonitorPassword = "monitor-secret-pw"
	SuperUser       = "postgres"
	SuperPassword   = "admin-secret-pw"
	ReplUser        = "repl"
	ReplPassword    = "repl-secret-pw"
)

// Timings written into the DCS configuration. Failover takes about TTL
// plus a Patroni loop after the leader dies.
const (
	TTL          = 5 * time.Second
	LoopWait     = time.Second
	RetryTimeout = 2 * time.Second
)

// ErrNoLeader is returned by [Cluster.Leader] when no live endpoint
// reports a leader.
var ErrNoLeader = errors.New("patroni: no leader")

// ErrClosed is returned by the methods of a closed [Cluster].
var ErrClosed = errors.New("patroni: cluster closed")

// defaultWait bounds Start and the waits whose context has no deadline.
const defaultWait = 2 * time.Minute

// Options configures [Start].
type Options struct {
	// Members is the number of Patroni members started. Zero means 3;
	// negative is an error.
	Members int
	// Synchronous turns on Patroni's synchronous_mode: one replica is a
	// synchronous standby, Patroni promotes only it, and a commit
	// acknowledged by the leader survives the leader's death. Start then
	// also waits until a synchronous standby is chosen.
	Synchronous bool
	// Parameters are extra PostgreSQL settings for every member (the
	// DCS's postgresql.parameters), added to or replacing the defaults.
	Parameters map[string]string
	// Logf, when not nil, receives progress messages (testing.T.Logf).
	Logf func(format string, args ...any)
}

// Cluster is one etcd and a Patroni cluster on loopback. Create it with
// [Start] and always [Cluster.Close] it. Its methods are safe for
// concurrent use; the ones that change the cluster (Switchover, KillLeader,
// KillMember, StopMember, StartMember, AddMember, RemoveMember, Close)
// run one at a time.
type Cluster struct {
	bins    binaries
	cred    *credential
	dir     string // the cluster's temporary directory
	scope   string // Patroni scope, also PostgreSQL's cluster_name; unique
	opts    Options
	logf    func(format string, args ...any)
	created time.Time
	client  *http.Client

	bg       sync.WaitGroup // requests left running by Switchover
	bgCtx    context.Context
	bgCancel context.CancelFunc

	etcd       *proc
	etcdClient int
	etcdPeer   int

	ops sync.Mutex // serializes changes to the cluster

	mu      sync.Mutex // guards members and closed
	members []*member
	closed  bool

	closeOnce sync.Once
	closeErr  error
}

// Member describes one Patroni member. Its index in [Cluster.Members] is
// its member number.
type Member struct {
	Name string // Patroni member name, also its application_name
	Host string // PostgreSQL address: always 127.0.0.1
	Port int    // PostgreSQL port
	// API is the member's REST endpoint as clients see it (the
	// harness's proxy, also the api_url the member advertises), e.g.
	// "http://127.0.0.1:41234".
	API string
	// Running is false once the member was stopped, killed or removed.
	Running bool
	// Removed is true after RemoveMember: the member is gone for good.
	Removed bool
}

// Start starts etcd and opts.Members Patroni members (default 3) and
// returns once a leader accepts writes, every other member streams from it
// (and, with Synchronous, a synchronous standby is chosen) and the
// application account works. On failure everything started so far is
// stopped and removed, and the error carries the tail of the logs.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	begin := time.Now()
	if err := localos.Supported(); err != nil {
		return nil, fmt.Errorf("patroni: %w", err)
	}
	if opts.Members < 0 {
		return nil, fmt.Errorf("patroni: Options.Members = %d; want a positive number (0 means 3)", opts.Members)
	}
	if opts.Members == 0 {
		opts.Members = 3
	}
	bins, err := findBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	base := localos.BaseTempDir()
	sweepStale(base, opts.Logf)
	dir, err := os.MkdirTemp(base, dirPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("patroni: create temporary directory: %w", err)
	}
	c := &Cluster{
		bins:    bins,
		cred:    cred,
		dir:     dir,
		scope:   filepath.Base(dir),
		opts:    opts,
		logf:    opts.Logf,
		created: begin,
		client: &http.Client{
			Timeout:   2 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		},
	}
	c.bgCtx, c.bgCancel = context.WithCancel(context.Background())
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	if err := c.start(ctx); err != nil {
		err = fmt.Errorf("%w%s", err, c.logTails())
		if cerr := c.Close(); cerr != nil {
			err = fmt.Errorf("%w\n(cleanup: %v)", err, cerr)
		}
		return nil, err
	}
	c.log("cluster %s ready in %v: %d members", c.scope, time.Since(begin).Round(time.Millisecond), opts.Members)
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	if err := os.Chmod(c.dir, 0o700); err != nil {
		return fmt.Errorf("patroni: chmod %s: %w", c.dir, err)
	}
	if err := localos.WriteOwner(c.dir, ownerFile); err != nil {
		return fmt.Errorf("patroni: %w", err)
	}
	if err := c.chown(c.dir); err != nil {
		return err
	}
	if err := c.startEtcd(ctx); err != nil {
		return err
	}
	for i := 0; i < c.opts.Members; i++ {
		m, err := c.newMember()
		if err != nil {
			return err
		}
		if err := c.spawnPatroni(m); err != nil {
			return err
		}
	}
	return c.WaitHealthy(ctx)
}

// ---- accessors ----

// Dir returns the cluster's temporary directory (logs: etcd.log and
// <member>/patroni.log, which also holds PostgreSQL's log).
func (c *Cluster) Dir() string { return c.dir }

// Scope returns the Patroni scope (cluster name), unique per cluster. It
// is also PostgreSQL's cluster_name and part of Dir, so every process of
// the cluster has it in its command line.
func (c *Cluster) Scope() string { return c.scope }

// EtcdEndpoint returns etcd's client URL, e.g. "http://127.0.0.1:2379".
func (c *Cluster) EtcdEndpoint() string {
	return "http://127.0.0.1:" + strconv.Itoa(c.etcdClient)
}

// Members describes every member started so far, including stopped and
// removed ones (index = member number).
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Member, len(c.members))
	for i, m := range c.members {
		out[i] = Member{
			Name:    m.name,
			Host:    "127.0.0.1",
			Port:    m.pgPort,
			API:     "http://" + m.proxy.addr,
			Running: m.state == memberRunning,
			Removed: m.state == memberRemoved,
		}
	}
	return out
}

// Endpoints returns the REST base URLs of all members, index = member
// number, including stopped and removed members (whose endpoints refuse
// connections). They are the harness's proxies, which StopAPI cuts.
func (c *Cluster) Endpoints() []string {
	ms := c.Members()
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.API
	}
	return out
}

// DSN returns a PostgreSQL URL for member i with the application account,
// for pgx: postgres://app:…@127.0.0.1:port/app?sslmode=disable.
func (c *Cluster) DSN(member int) string {
	ms := c.Members()
	if member < 0 || member >= len(ms) {
		return ""
	}
	return DSNFor(ms[member].Host, ms[member].Port)
}

// AdminDSN is DSN with the superuser account, for checks the application
// account may not make (pg_stat_replication's state, for instance).
func (c *Cluster) AdminDSN(member int) string {
	ms := c.Members()
	if member < 0 || member >= len(ms) {
		return ""
	}
	return dsn(SuperUser, SuperPassword, ms[member].Host, ms[member].Port)
}

// DSNFor returns the application DSN for a PostgreSQL host and port, such
// as a member's host and port in GET /cluster.
func DSNFor(host string, port int) string {
	return dsn(AppUser, AppPassword, host, port)
}

func dsn(user, password, host string, port int) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     net.JoinHostPort(host, strconv.Itoa(port)),
		Path:     "/" + AppDatabase,
		RawQuery: "sslmode=disable&connect_timeout=5",
	}
	return u.String()
}

// MemberIndex returns the member number of a Patroni member name, or -1.
func (c *Cluster) MemberIndex(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.members {
		if m.name == name {
			return i
		}
	}
	return -1
}

func (c *Cluster) member(i int) (*member, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if i < 0 || i >= len(c.members) {
		return nil, fmt.Errorf("patroni: no member %d (cluster has %d)", i, len(c.members))
	}
	return c.members[i], nil
}

// ---- Close ----

// Close kills every process the cluster started (Patroni, PostgreSQL with
// all its processes, etcd), checks that none is left, releases
// PostgreSQL's shared memory and removes the temporary directory. It is
// idempotent and may be called after a failed Start.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.ops.Lock()
		defer c.ops.Unlock()
		c.mu.Lock()
		c.closed = true
		members := append([]*member(nil), c.members...)
		c.mu.Unlock()
		// A switchover's answer comes within a second of the switchover.
		waited := make(chan struct{})
		go func() { c.bg.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(3 * time.Second):
			c.bgCancel()
			<-waited
		}
		c.bgCancel()
		var errs []error
		var wg sync.WaitGroup
		for _, m := range members {
			m.proxy.close()
			wg.Go(func() { c.killMember(m, true) })
		}
		wg.Wait()
		if c.etcd != nil {
			killTree(c.etcd.pid)
			c.etcd.wait(10 * time.Second)
		}
		// Anything left that carries the cluster's token: a postmaster
		// started while Patroni was being killed, an orphaned backend.
		deadline := time.Now().Add(10 * time.Second)
		for {
			left := processesMatching(c.scope)
			if len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("patroni: processes left after Close: %s", describe(left)))
				break
			}
			for pid := range left {
				killTree(pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, m := range members {
			localos.CleanupShm(m.dataDir)
		}
		if c.client != nil {
			c.client.CloseIdleConnections()
		}
		var err error
		for range 5 {
			if err = os.RemoveAll(c.dir); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("patroni: remove %s: %w", c.dir, err))
		}
		c.closeErr = errors.Join(errs...)
		c.log("closed")
	})
	return c.closeErr
}

func describe(procs map[int]string) string {
	var s []string
	for pid, cmd := range procs {
		s = append(s, fmt.Sprintf("%d %s", pid, cmd))
	}
	sort.Strings(s)
	return strings.Join(s, "; ")
}

// ---- helpers ----

func (c *Cluster) log(format string, args ...any) {
	if c.logf != nil {
		c.logf("patroni: [+%.3fs] %s", time.Since(c.created).Seconds(), fmt.Sprintf(format, args...))
	}
}

// chown gives path to the server user (no-op when not root).
func (c *Cluster) chown(path string) error {
	if c.cred == nil {
		return nil
	}
	if err := os.Lchown(path, int(c.cred.UID), int(c.cred.GID)); err != nil {
		return fmt.Errorf("patroni: chown %s to %s: %w", path, c.cred.Name, err)
	}
	return nil
}

// writeFile writes a file owned by the server user.
func (c *Cluster) writeFile(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("patroni: write %s: %w", path, err)
	}
	return c.chown(path)
}

// logTails returns the last lines of every log of the cluster, for errors.
func (c *Cluster) logTails() string {
	var b strings.Builder
	logs := []string{filepath.Join(c.dir, "etcd.log")}
	c.mu.Lock()
	for _, m := range c.members {
		logs = append(logs, m.logPath)
	}
	c.mu.Unlock()
	for _, p := range logs {
		if t := tail(p, 3000); t != "" {
			fmt.Fprintf(&b, "\n--- tail of %s ---\n%s", p, t)
		}
	}
	return b.String()
}

// tail returns at most max bytes from the end of path, from a line start.
func tail(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	start := fi.Size() - max
	if start < 0 {
		start = 0
	}
	buf := make([]byte, fi.Size()-start)
	n, _ := f.ReadAt(buf, start)
	s := string(buf[:n])
	if start > 0 {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return strings.TrimSpace(s)
}

// withDefaultWait adds the default deadline to contexts that have none.
func withDefaultWait(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, defaultWait)
}

// ---- stale clusters ----

const (
	dirPrefix = "rwsplit-patroni-"
	ownerFile = "rwsplit-patroni-owner"
)

var sweepOnce sync.Once

// sweepStale kills what is left of clusters whose test process died
// without Close (PostgreSQL is detached from Patroni and survives it) and
// removes their directories. It runs once per process.
func sweepStale(base string, logf func(string, ...any)) {
	sweepOnce.Do(func() {
		dirs, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*"))
		for _, d := range dirs {
			if localos.OwnerAlive(d, ownerFile) {
				continue
			}
			token := filepath.Base(d)
			for range 20 {
				left := processesMatching(token)
				if len(left) == 0 {
					break
				}
				for pid := range left {
					killTree(pid)
				}
				time.Sleep(50 * time.Millisecond)
			}
			members, _ := filepath.Glob(filepath.Join(d, "*", "data"))
			for _, data := range members {
				localos.CleanupShm(data)
			}
			if err := os.RemoveAll(d); err == nil && logf != nil {
				logf("patroni: removed %s left behind by a killed test process", d)
			}
		}
	})
}

// ---- processes ----

// proc is a process started by the harness (etcd or Patroni).
type proc struct {
	pid  int
	done chan struct{}
	err  error // valid after done is closed
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to timeout for the process to exit.
func (p *proc) wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (p *proc) signal(sig syscall.Signal) error { return kill(p.pid, sig) }
