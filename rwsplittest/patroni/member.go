package patroni

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rwsplit/rwsplit/rwsplittest/internal/localos"
)

type memberState int

const (
	memberRunning memberState = iota // Patroni started by the harness
	memberStopped                    // stopped or killed; StartMember restarts it
	memberRemoved                    // RemoveMember: gone for good
)

// member is one Patroni member: its directory, ports and process.
type member struct {
	idx      int
	name     string
	dir      string
	dataDir  string
	confPath string
	logPath  string
	pgPort   int
	apiPort  int // Patroni's own REST listener
	proxy    *proxy

	// guarded by Cluster.mu
	state   memberState
	apiCut  bool // StopAPI
	patroni *proc
}

func (m *member) apiDirect() string { return "http://127.0.0.1:" + strconv.Itoa(m.apiPort) }

// newMember creates the next member's directory, configuration and proxy
// and appends it to c.members. It does not start Patroni.
func (c *Cluster) newMember() (*member, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	idx := len(c.members)
	c.mu.Unlock()
	m := &member{idx: idx, name: "m" + strconv.Itoa(idx), state: memberStopped}
	m.dir = filepath.Join(c.dir, m.name)
	m.dataDir = filepath.Join(m.dir, "data")
	m.confPath = filepath.Join(m.dir, "patroni.yml")
	m.logPath = filepath.Join(m.dir, "patroni.log")
	var err error
	if m.pgPort, err = localos.PickPort(); err != nil {
		return nil, err
	}
	if m.apiPort, err = localos.PickPort(); err != nil {
		return nil, err
	}
	if err := os.Mkdir(m.dir, 0o700); err != nil {
		return nil, fmt.Errorf("patroni: %s: %w", m.name, err)
	}
	if err := c.chown(m.dir); err != nil {
		return nil, err
	}
	if m.proxy, err = newProxy("127.0.0.1:" + strconv.Itoa(m.apiPort)); err != nil {
		return nil, fmt.Errorf("patroni: %s: REST proxy: %w", m.name, err)
	}
	m.proxy.down() // up while Patroni runs
	if err := c.writeMemberConfig(m); err != nil {
		m.proxy.close()
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		m.proxy.close()
		return nil, ErrClosed
	}
	c.members = append(c.members, m)
	return m, nil
}

// postBootstrap creates the accounts and the application database; Patroni
// runs it once on the member that initializes the cluster, with the
// superuser's connection URL as its argument, before replicas clone it.
const postBootstrap = `#!/bin/sh
set -e
exec "$PSQL" -X -q -v ON_ERROR_STOP=1 "$1" <<'SQL'
CREATE ROLE ` + AppUser + ` LOGIN PASSWORD '` + AppPassword + `';
CREATE DATABASE ` + AppDatabase + ` OWNER ` + AppUser + `;
CREATE ROLE ` + MonitorUser + ` LOGIN PASSWORD '` + MonitorPassword + `' IN ROLE pg_monitor;
\connect ` + AppDatabase + `
ALTER DEFAULT PRIVILEGES FOR ROLE ` + SuperUser + ` GRANT ALL ON TABLES TO ` + AppUser + `;
ALTER DEFAULT PRIVILEGES FOR ROLE ` + SuperUser + ` GRANT ALL ON SEQUENCES TO ` + AppUser + `;
SQL
`

// writeMemberConfig writes m's patroni.yml (as JSON, which YAML parsers
// read) and the post-bootstrap script.
func (c *Cluster) writeMemberConfig(m *member) error {
	script := filepath.Join(m.dir, "post_bootstrap.sh")
	body := strings.Replace(postBootstrap, `"$PSQL"`, shellQuote(c.bins.psql), 1)
	if err := c.writeFile(script, []byte(body), 0o700); err != nil {
		return err
	}
	params := map[string]any{
		"wal_level":                    "replica",
		"hot_standby":                  "on",
		"max_connections":              100,
		"max_wal_senders":              10,
		"max_replication_slots":        10,
		"max_worker_processes":         8,
		"wal_keep_size":                "128MB",
		"wal_log_hints":                "on", // pg_rewind
		"shared_buffers":               "16MB",
		"max_wal_size":                 "256MB",
		"min_wal_size":                 "32MB",
		"hot_standby_feedback":         "on",
		"wal_receiver_status_interval": "1s",
		"wal_retrieve_retry_interval":  "500ms",
		"wal_sender_timeout":           "10s",
		"wal_receiver_timeout":         "10s",
		"fsync":                        "off", // a killed postmaster is not a power cut
		"synchronous_commit":           "on",
		"password_encryption":          "scram-sha-256",
		"huge_pages":                   "off",
		"logging_collector":            "off",
		"log_min_messages":             "warning",
		"log_line_prefix":              "%m [%p] %q%u@%d ",
	}
	for k, v := range c.opts.Parameters {
		params[k] = v
	}
	cfg := map[string]any{
		"scope":     c.scope,
		"namespace": "/rwsplit/",
		"name":      m.name,
		"log":       map[string]any{"level": "INFO", "format": "%(asctime)s " + m.name + " %(levelname)s: %(message)s"},
		"restapi": map[string]any{
			"listen":          "127.0.0.1:" + strconv.Itoa(m.apiPort),
			"connect_address": m.proxy.addr,
		},
		"etcd3": map[string]any{
			"hosts":    []string{"127.0.0.1:" + strconv.Itoa(c.etcdClient)},
			"protocol": "http",
		},
		"bootstrap": map[string]any{
			"dcs": map[string]any{
				"ttl":                     int(TTL / time.Second),
				"loop_wait":               int(LoopWait / time.Second),
				"retry_timeout":           int(RetryTimeout / time.Second),
				"maximum_lag_on_failover": 1 << 20,
				"synchronous_mode":        c.opts.Synchronous,
				"postgresql": map[string]any{
					"use_pg_rewind": true,
					"use_slots":     true,
					"parameters":    params,
				},
			},
			"initdb":         []any{map[string]any{"encoding": "UTF8"}, map[string]any{"locale": "C"}, "no-sync"},
			"post_bootstrap": script,
		},
		"postgresql": map[string]any{
			"listen":          "127.0.0.1:" + strconv.Itoa(m.pgPort),
			"connect_address": "127.0.0.1:" + strconv.Itoa(m.pgPort),
			"data_dir":        m.dataDir,
			"bin_dir":         c.bins.pgBinDir,
			"pgpass":          filepath.Join(m.dir, "pgpass"),
			"use_unix_socket": true,
			"authentication": map[string]any{
				"superuser":   map[string]any{"username": SuperUser, "password": SuperPassword},
				"replication": map[string]any{"username": ReplUser, "password": ReplPassword},
				"rewind":      map[string]any{"username": SuperUser, "password": SuperPassword},
			},
			"parameters": map[string]any{"unix_socket_directories": m.dir},
			"pg_hba": []string{
				"local all all trust",
				"local replication all trust",
				"host all all 127.0.0.1/32 scram-sha-256",
				"host replication " + ReplUser + " 127.0.0.1/32 scram-sha-256",
			},
			"create_replica_methods":                      []string{"basebackup"},
			"basebackup":                                  []any{map[string]any{"checkpoint": "fast"}},
			"remove_data_directory_on_rewind_failure":     true,
			"remove_data_directory_on_diverged_timelines": true,
		},
		"watchdog": map[string]any{"mode": "off"},
		"tags":     map[string]any{"nofailover": false, "noloadbalance": false, "clonefrom": false, "nosync": false},
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cfg); err != nil {
		return fmt.Errorf("patroni: %s: encode configuration: %w", m.name, err)
	}
	return c.writeFile(m.confPath, buf.Bytes(), 0o600)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// spawn starts bin with stdout and stderr appended to logPath, in its own
// process group, as the server user.
func (c *Cluster) spawn(dir, logPath, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("patroni: open log: %w", err)
	}
	defer f.Close()
	if err := c.chown(logPath); err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "\n==== harness: %s starting %s %s ====\n", time.Now().Format(time.RFC3339Nano), filepath.Base(bin), strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = cleanEnv(dir)
	cmd.SysProcAttr = localos.SysProcAttr(c.cred)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("patroni: run %s: %w", bin, err)
	}
	p := &proc{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// startEtcd starts a one-node etcd on two free loopback ports and waits
// until it is healthy. A port taken in the meantime is retried.
func (c *Cluster) startEtcd(ctx context.Context) error {
	data := filepath.Join(c.dir, "etcd")
	logPath := filepath.Join(c.dir, "etcd.log")
	for attempt := 1; ; attempt++ {
		var err error
		if c.etcdClient, err = localos.PickPort(); err != nil {
			return err
		}
		if c.etcdPeer, err = localos.PickPort(); err != nil {
			return err
		}
		_ = os.RemoveAll(data)
		client := "http://127.0.0.1:" + strconv.Itoa(c.etcdClient)
		peer := "http://127.0.0.1:" + strconv.Itoa(c.etcdPeer)
		p, err := c.spawn(c.dir, logPath, c.bins.etcd,
			"--name", "etcd0",
			"--data-dir", data,
			"--listen-client-urls", client,
			"--advertise-client-urls", client,
			"--listen-peer-urls", peer,
			"--initial-advertise-peer-urls", peer,
			"--initial-cluster", "etcd0="+peer,
			"--initial-cluster-state", "new",
			"--initial-cluster-token", c.scope,
			"--heartbeat-interval", "50",
			"--election-timeout", "300",
			"--logger", "zap",
			"--log-level", "warn",
		)
		if err != nil {
			return err
		}
		c.etcd = p
		c.log("etcd: starting on %s (pid %d)", client, p.pid)
		err = c.waitEtcd(ctx, p, client)
		if err == nil {
			c.log("etcd: healthy")
			return nil
		}
		if p.exited() && attempt < 5 && strings.Contains(tail(logPath, 4000), "address already in use") {
			c.log("etcd: a port was taken, retrying")
			continue
		}
		return fmt.Errorf("patroni: etcd: %w", err)
	}
}

func (c *Cluster) waitEtcd(ctx context.Context, p *proc, client string) error {
	for {
		if p.exited() {
			return fmt.Errorf("exited during start-up (%v)", p.err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, client+"/health", nil)
		if resp, err := c.client.Do(req); err == nil {
			var h struct{ Health string }
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if err == nil && h.Health == "true" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy: %w", ctx.Err())
		case <-p.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// spawnPatroni starts m's Patroni and opens its REST proxy.
func (c *Cluster) spawnPatroni(m *member) error {
	p, err := c.spawn(m.dir, m.logPath, c.bins.patroni, m.confPath)
	if err != nil {
		return fmt.Errorf("patroni: %s: %w", m.name, err)
	}
	c.mu.Lock()
	m.patroni = p
	m.state = memberRunning
	cut := m.apiCut
	c.mu.Unlock()
	c.log("%s: patroni started (pid %d, postgres 127.0.0.1:%d, REST endpoint http://%s, Patroni listening on %s)", m.name, p.pid, m.pgPort, m.proxy.addr, m.apiDirect())
	if !cut {
		if err := m.proxy.up(); err != nil {
			return fmt.Errorf("patroni: %s: %w", m.name, err)
		}
	}
	return nil
}

// postmasterPID returns the pid in m's postmaster.pid if that process
// runs.
func (m *member) postmasterPID() int {
	b, err := os.ReadFile(filepath.Join(m.dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || !localos.ProcessAlive(pid) {
		return 0
	}
	return pid
}

// killMember SIGKILLs m's Patroni and its PostgreSQL with every child, as
// a crashed host would. With immediate, the postmaster first gets SIGQUIT
// (immediate shutdown, which releases its shared memory); Close uses it.
func (c *Cluster) killMember(m *member, immediate bool) {
	c.mu.Lock()
	p := m.patroni
	c.mu.Unlock()
	m.proxy.down()
	if p != nil {
		// Patroni first, so it cannot start PostgreSQL again.
		killTree(p.pid)
		p.wait(10 * time.Second)
	}
	pm := m.postmasterPID()
	if pm != 0 && immediate {
		_ = kill(pm, syscall.SIGQUIT)
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && localos.ProcessAlive(pm); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if pm != 0 && localos.ProcessAlive(pm) {
		killTree(pm)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && localos.ProcessAlive(pm); {
			time.Sleep(5 * time.Millisecond)
		}
	}
	// A postmaster that had not written postmaster.pid yet, a
	// pg_basebackup or pg_rewind: everything with the member's directory
	// in its command line.
	for pid := range processesMatching(m.dir + "/") {
		killTree(pid)
	}
	c.mu.Lock()
	if m.state == memberRunning {
		m.state = memberStopped
	}
	c.mu.Unlock()
}

// KillMember crashes member i: SIGKILL to its Patroni and to its
// postmaster (from postmaster.pid) with all PostgreSQL processes, and its
// REST endpoint refuses connections. It returns at once; Patroni notices
// a dead leader when its lease expires (TTL). GET /cluster keeps listing
// a killed member with its last state ("running") until its member key
// expires, about TTL later.
func (c *Cluster) KillMember(ctx context.Context, i int) error {
	c.ops.Lock()
	defer c.ops.Unlock()
	m, err := c.member(i)
	if err != nil {
		return err
	}
	if s := c.stateOf(m); s != memberRunning {
		return fmt.Errorf("patroni: KillMember(%d): member is not running", i)
	}
	c.log("%s: kill (patroni pid %d, postmaster pid %d)", m.name, m.patroni.pid, m.postmasterPID())
	c.killMember(m, false)
	return nil
}

// KillLeader crashes the current leader (see [Cluster.KillMember]) and
// returns its member number. It does not wait for the failover; use
// [Cluster.WaitWritable] for that.
func (c *Cluster) KillLeader(ctx context.Context) (int, error) {
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	old, err := c.Leader(ctx)
	if err != nil {
		return -1, err
	}
	return old, c.KillMember(ctx, old)
}

// StopMember stops member i gracefully: SIGTERM to Patroni, which shuts
// PostgreSQL down (fast), hands the leader key over when it is the
// leader, and exits; its REST endpoint then refuses connections. GET
// /cluster shows the member as "stopped" until its member key expires
// (about TTL later), then no longer lists it.
func (c *Cluster) StopMember(ctx context.Context, i int) error {
	c.ops.Lock()
	defer c.ops.Unlock()
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	return c.stopMember(ctx, i)
}

func (c *Cluster) stopMember(ctx context.Context, i int) error {
	m, err := c.member(i)
	if err != nil {
		return err
	}
	if s := c.stateOf(m); s != memberRunning {
		return nil
	}
	c.mu.Lock()
	p := m.patroni
	c.mu.Unlock()
	c.log("%s: stop (SIGTERM patroni pid %d)", m.name, p.pid)
	if err := p.signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("patroni: %s: stop: %w", m.name, err)
	}
	var werr error
	select {
	case <-p.done:
	case <-ctx.Done():
		werr = fmt.Errorf("patroni: %s: Patroni did not exit after SIGTERM: %w; killed it%s", m.name, ctx.Err(), tailBlock(m.logPath))
	}
	c.killMember(m, true) // the proxy, and anything Patroni left running
	return werr
}

// StartMember starts Patroni again on a stopped or killed member (same
// data directory; an old leader is rewound with pg_rewind or, failing
// that, cloned anew) and waits until it streams from the leader.
func (c *Cluster) StartMember(ctx context.Context, i int) error {
	c.ops.Lock()
	defer c.ops.Unlock()
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	m, err := c.member(i)
	if err != nil {
		return err
	}
	switch c.stateOf(m) {
	case memberRunning:
		return fmt.Errorf("patroni: StartMember(%d): already running", i)
	case memberRemoved:
		return fmt.Errorf("patroni: StartMember(%d): member was removed", i)
	}
	localos.CleanupShm(m.dataDir)
	if err := c.spawnPatroni(m); err != nil {
		return err
	}
	if err := c.waitStreaming(ctx, m); err != nil {
		return fmt.Errorf("%w%s", err, tailBlock(m.logPath))
	}
	return nil
}

// AddMember starts a new member, which clones the leader with
// pg_basebackup, and returns its member number once it streams from the
// leader and GET /cluster lists it as running.
func (c *Cluster) AddMember(ctx context.Context) (int, error) {
	c.ops.Lock()
	defer c.ops.Unlock()
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	m, err := c.newMember()
	if err != nil {
		return -1, err
	}
	if err := c.spawnPatroni(m); err != nil {
		return m.idx, err
	}
	if err := c.waitStreaming(ctx, m); err != nil {
		return m.idx, fmt.Errorf("%w%s", err, tailBlock(m.logPath))
	}
	return m.idx, nil
}

// RemoveMember stops member i for good (as StopMember) and waits until
// GET /cluster no longer lists it, which happens when its member key
// expires in etcd: about TTL after the stop. The member keeps its number;
// its endpoint refuses connections.
func (c *Cluster) RemoveMember(ctx context.Context, i int) error {
	c.ops.Lock()
	defer c.ops.Unlock()
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	if err := c.stopMember(ctx, i); err != nil {
		return err
	}
	m, _ := c.member(i)
	c.mu.Lock()
	m.state = memberRemoved
	c.mu.Unlock()
	for {
		st, err := c.Status(ctx)
		if err == nil && st.Member(m.name) == nil {
			c.log("%s: removed; no longer in /cluster", m.name)
			return nil
		}
		if err := localos.SleepCtx(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("patroni: RemoveMember(%d): still listed in /cluster: %w", i, err)
		}
	}
}

// StopAPI makes member i's REST endpoint refuse connections (its proxy
// stops listening; open connections are closed) while Patroni and
// PostgreSQL keep running. The other members and patronictl lose it too,
// since it is the api_url the member advertises. The harness's own
// status queries go to Patroni directly and are not affected.
func (c *Cluster) StopAPI(ctx context.Context, i int) error {
	m, err := c.member(i)
	if err != nil {
		return err
	}
	c.mu.Lock()
	m.apiCut = true
	c.mu.Unlock()
	m.proxy.down()
	c.log("%s: REST endpoint %s cut", m.name, m.proxy.addr)
	return nil
}

// StartAPI undoes StopAPI: the endpoint accepts connections again (on the
// same port) if the member runs.
func (c *Cluster) StartAPI(ctx context.Context, i int) error {
	m, err := c.member(i)
	if err != nil {
		return err
	}
	c.mu.Lock()
	m.apiCut = false
	running := m.state == memberRunning
	c.mu.Unlock()
	c.log("%s: REST endpoint %s restored", m.name, m.proxy.addr)
	if !running {
		return nil
	}
	if err := m.proxy.up(); err != nil {
		return fmt.Errorf("patroni: %s: %w", m.name, err)
	}
	return nil
}

func (c *Cluster) stateOf(m *member) memberState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return m.state
}

func tailBlock(path string) string {
	t := tail(path, 3000)
	if t == "" {
		return ""
	}
	return "\n--- tail of " + path + " ---\n" + t
}

// running returns the members the harness runs.
func (c *Cluster) running() []*member {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*member
	for _, m := range c.members {
		if m.state == memberRunning {
			out = append(out, m)
		}
	}
	return out
}
