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
	"testing"
	"time"

	"github.com/rwsplit/rwsplit/rwsplittest/internal/localos"
)

// These tests start real servers. They do not skip when the binaries are
// missing: Start then fails with a message telling to run "make deps".

func startCluster(t *testing.T, ctx context.Context, kind Kind, opts LocalOptions) *LocalCluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	begin := time.Now()
	c, err := StartLocal(ctx, kind, opts)
	if err != nil {
		t.Fatalf("Start(%s): %v", kind, err)
	}
	t.Logf("%s cluster with %d nodes started in %v", kind, len(c.Nodes()), time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func mustExec(t *testing.T, ctx context.Context, n *LocalNode, sql string) string {
	t.Helper()
	out, err := n.Exec(ctx, sql)
	if err != nil {
		t.Fatalf("%s: Exec(%q): %v", n.Name(), sql, err)
	}
	return out
}

func wantRow(t *testing.T, ctx context.Context, n *LocalNode, query, want string) {
	t.Helper()
	if got := mustExec(t, ctx, n, query); got != want {
		t.Fatalf("%s: %q = %q, want %q", n.Name(), query, got, want)
	}
}

func waitCaughtUp(t *testing.T, ctx context.Context, c *LocalCluster, primary *LocalNode) {
	t.Helper()
	if err := c.WaitCaughtUp(ctx, primary); err != nil {
		t.Fatalf("WaitCaughtUp(%s): %v", primary.Name(), err)
	}
}

// serverPIDs lists the server processes of every running node.
func serverPIDs(c *LocalCluster) []int {
	var pids []int
	for _, n := range c.Nodes() {
		if pid := n.PID(); pid != 0 {
			pids = append(pids, pid)
			pids = append(pids, localos.ChildPIDs(pid)...)
		}
	}
	return pids
}

// processesUnder lists live processes whose working directory or command
// line is inside one of dirs.
func processesUnder(dirs []string) []string {
	ents, _ := os.ReadDir("/proc")
	var found []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !localos.ProcessAlive(pid) {
			continue
		}
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		for _, d := range dirs {
			if strings.HasPrefix(cwd, d) || strings.Contains(string(cmd), d) {
				found = append(found, fmt.Sprintf("pid %d (cwd %s, cmd %q)", pid, cwd, strings.ReplaceAll(string(cmd), "\x00", " ")))
			}
		}
	}
	return found
}

// closeAndCheck closes c and checks that no directory and no server process
// is left behind.
func closeAndCheck(t *testing.T, c *LocalCluster) {
	t.Helper()
	var dirs []string
	for _, n := range c.Nodes() {
		dirs = append(dirs, n.Dir())
	}
	pids := serverPIDs(c)
	if len(pids) == 0 {
		t.Fatal("no server processes found before Close")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("directory %s still exists after Close (stat: %v)", d, err)
		}
	}
	for _, pid := range pids {
		if localos.ProcessAlive(pid) {
			t.Errorf("server process %d still alive after Close", pid)
		}
	}
	if left := processesUnder(dirs); len(left) > 0 {
		t.Errorf("processes left after Close:\n%s", strings.Join(left, "\n"))
	}
	for _, n := range c.Nodes() {
		if n.Running() {
			t.Errorf("%s reports Running after Close", n.Name())
		}
	}
}

func TestPostgresCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t, ctx, Postgres, LocalOptions{})

	if c.Kind() != Postgres || c.DriverName() != "pgx" {
		t.Fatalf("Kind/DriverName = %s/%s", c.Kind(), c.DriverName())
	}
	if len(c.Nodes()) != 3 || len(c.Replicas()) != 2 || c.Nodes()[0] != c.Primary() {
		t.Fatalf("unexpected node layout: %d nodes, %d replicas", len(c.Nodes()), len(c.Replicas()))
	}
	p, r1, r2 := c.Primary(), c.Replicas()[0], c.Replicas()[1]
	if p.Name() != "pg0" || r1.Name() != "pg1" || r2.Name() != "pg2" {
		t.Errorf("names = %s %s %s", p.Name(), r1.Name(), r2.Name())
	}
	if want := fmt.Sprintf("postgres://app:app-secret-pw@127.0.0.1:%d/app?sslmode=disable", p.Port()); p.DSN() != want {
		t.Errorf("DSN = %q, want %q", p.DSN(), want)
	}
	if p.Addr() != "127.0.0.1:"+strconv.Itoa(p.Port()) {
		t.Errorf("Addr = %q", p.Addr())
	}
	for _, n := range c.Nodes() {
		if !n.Running() {
			t.Fatalf("%s not running", n.Name())
		}
	}
	wantRow(t, ctx, p, "SELECT pg_is_in_recovery()", "f")
	wantRow(t, ctx, r1, "SELECT pg_is_in_recovery()", "t")
	wantRow(t, ctx, p, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", "2")
	wantRow(t, ctx, p, "SELECT current_setting('listen_addresses')", "127.0.0.1")

	// Replication of a write made on the primary.
	mustExec(t, ctx, p, "CREATE TABLE kv (k text PRIMARY KEY, v text);\nINSERT INTO kv VALUES ('a', 'one');")
	waitCaughtUp(t, ctx, c, p)
	for _, r := range c.Replicas() {
		wantRow(t, ctx, r, "SELECT v FROM kv WHERE k = 'a'", "one")
	}

	// The application user can read and write on the primary (default
	// privileges on tables created by the superuser) but not write on a
	// replica.
	if _, err := p.ExecAs(ctx, AppUser, AppPassword, "INSERT INTO kv VALUES ('b', 'two')"); err != nil {
		t.Fatalf("app insert on primary: %v", err)
	}
	if out, err := r1.ExecAs(ctx, AppUser, AppPassword, "SELECT count(*) FROM kv"); err != nil || out == "" {
		t.Fatalf("app select on replica: %q, %v", out, err)
	}
	_, err := r1.ExecAs(ctx, AppUser, AppPassword, "INSERT INTO kv VALUES ('x', 'nope')")
	if err == nil || !strings.Contains(err.Error(), "read-only transaction") {
		t.Fatalf("app insert on replica: err = %v, want a read-only transaction error", err)
	}
	if out, err := r1.ExecAs(ctx, MonitorUser, MonitorPassword, "SELECT pg_is_in_recovery(), (SELECT count(*) >= 0 FROM kv), (SELECT status FROM pg_stat_wal_receiver)"); err != nil || out != "t\tt\tstreaming" {
		t.Fatalf("monitor on replica: %q, %v", out, err)
	}

	// Crash and restart a replica.
	if err := r2.Crash(); err != nil {
		t.Fatalf("Crash: %v", err)
	}
	if r2.Running() || r2.portOpen() {
		t.Fatal("crashed replica still running / port open")
	}
	mustExec(t, ctx, p, "INSERT INTO kv VALUES ('c', 'three')")
	if err := c.WaitCaughtUp(ctx, p); err != nil { // ignores the stopped replica
		t.Fatalf("WaitCaughtUp with a crashed replica: %v", err)
	}
	if err := r2.Start(ctx); err != nil {
		t.Fatalf("Start after Crash: %v", err)
	}
	waitCaughtUp(t, ctx, c, p)
	wantRow(t, ctx, r2, "SELECT v FROM kv WHERE k = 'c'", "three")

	// Clean stop and restart of the primary.
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if p.Running() {
		t.Fatal("stopped primary still running")
	}
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	mustExec(t, ctx, p, "INSERT INTO kv VALUES ('d', 'four')")
	waitCaughtUp(t, ctx, c, p)
	wantRow(t, ctx, r1, "SELECT v FROM kv WHERE k = 'd'", "four")

	// Freeze and thaw a replica.
	if err := r1.Freeze(); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	if !r1.Frozen() || !r1.Running() {
		t.Fatal("frozen replica: Frozen/Running false")
	}
	short, cancelShort := context.WithTimeout(ctx, 700*time.Millisecond)
	if _, err := r1.Exec(short, "SELECT 1"); err == nil {
		t.Fatal("query on a frozen node succeeded")
	}
	cancelShort()
	mustExec(t, ctx, p, "INSERT INTO kv VALUES ('e', 'five')")
	waitCaughtUp(t, ctx, c, p) // ignores the frozen replica
	if err := r1.Thaw(); err != nil {
		t.Fatalf("Thaw: %v", err)
	}
	waitCaughtUp(t, ctx, c, p)
	wantRow(t, ctx, r1, "SELECT v FROM kv WHERE k = 'e'", "five")

	// Failover: the primary dies, replica 1 is promoted, replica 2 follows.
	if err := p.Crash(); err != nil {
		t.Fatalf("Crash primary: %v", err)
	}
	if err := r1.Promote(ctx); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	wantRow(t, ctx, r1, "SELECT pg_is_in_recovery()", "f")
	if err := c.Follow(ctx, r2, r1); err != nil {
		t.Fatalf("Follow: %v", err)
	}
	if _, err := r1.ExecAs(ctx, AppUser, AppPassword, "INSERT INTO kv VALUES ('f', 'six')"); err != nil {
		t.Fatalf("app insert on the new primary: %v", err)
	}
	waitCaughtUp(t, ctx, c, r1)
	wantRow(t, ctx, r2, "SELECT v FROM kv WHERE k = 'f'", "six")
	wantRow(t, ctx, r2, "SELECT sender_port FROM pg_stat_wal_receiver", strconv.Itoa(r1.Port()))

	// The old primary comes back as a replica of the new one.
	if err := c.Reclone(ctx, p, r1); err != nil {
		t.Fatalf("Reclone: %v", err)
	}
	wantRow(t, ctx, p, "SELECT pg_is_in_recovery()", "t")
	mustExec(t, ctx, r1, "INSERT INTO kv VALUES ('g', 'seven')")
	waitCaughtUp(t, ctx, c, r1)
	wantRow(t, ctx, p, "SELECT string_agg(v, ',' ORDER BY k) FROM kv", "one,two,three,four,five,six,seven")
	wantRow(t, ctx, r2, "SELECT count(*) FROM kv", "7")

	// Leave a node frozen: Close must still stop everything.
	if err := r2.Freeze(); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	closeAndCheck(t, c)
}

func TestMariaDBCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t, ctx, MariaDB, LocalOptions{})

	if c.Kind() != MariaDB || c.DriverName() != "mysql" {
		t.Fatalf("Kind/DriverName = %s/%s", c.Kind(), c.DriverName())
	}
	if len(c.Nodes()) != 3 || len(c.Replicas()) != 2 {
		t.Fatalf("unexpected node layout: %d nodes", len(c.Nodes()))
	}
	p, r1, r2 := c.Primary(), c.Replicas()[0], c.Replicas()[1]
	if p.Name() != "maria0" || r2.Name() != "maria2" {
		t.Errorf("names = %s %s %s", p.Name(), r1.Name(), r2.Name())
	}
	if want := fmt.Sprintf("app:app-secret-pw@tcp(127.0.0.1:%d)/app?parseTime=true", r1.Port()); r1.DSN() != want {
		t.Errorf("DSN = %q, want %q", r1.DSN(), want)
	}
	wantRow(t, ctx, p, "SELECT @@read_only, @@log_bin, @@log_slave_updates, @@bind_address", "0\t1\t1\t127.0.0.1")
	for _, r := range c.Replicas() {
		wantRow(t, ctx, r, "SELECT @@read_only", "1")
	}

	// Replication of a write made on the primary.
	mustExec(t, ctx, p, "CREATE TABLE kv (k VARCHAR(10) PRIMARY KEY, v TEXT);\nINSERT INTO kv VALUES ('a', 'one');")
	waitCaughtUp(t, ctx, c, p)
	for _, r := range c.Replicas() {
		wantRow(t, ctx, r, "SELECT v FROM kv WHERE k = 'a'", "one")
	}

	// The application user writes on the primary; on a replica the write
	// fails with ER_OPTION_PREVENTS_STATEMENT (1290).
	if _, err := p.ExecAs(ctx, AppUser, AppPassword, "INSERT INTO kv VALUES ('b', 'two')"); err != nil {
		t.Fatalf("app insert on primary: %v", err)
	}
	_, err := r1.ExecAs(ctx, AppUser, AppPassword, "INSERT INTO kv VALUES ('x', 'nope')")
	if err == nil || !strings.Contains(err.Error(), "ERROR 1290") {
		t.Fatalf("app insert on replica: err = %v, want ERROR 1290", err)
	}
	if out, err := r1.ExecAs(ctx, MonitorUser, MonitorPassword, "SELECT @@read_only, (SELECT COUNT(*) > 0 FROM kv);\nSHOW SLAVE STATUS;"); err != nil || !strings.HasPrefix(out, "1\t1\n") {
		t.Fatalf("monitor on replica: %q, %v", out, err)
	}
	if _, err := r1.ExecAs(ctx, MonitorUser, MonitorPassword, "SHOW MASTER STATUS"); err != nil {
		t.Fatalf("monitor SHOW MASTER STATUS: %v", err)
	}

	// Crash and restart a replica.
	if err := r2.Crash(); err != nil {
		t.Fatalf("Crash: %v", err)
	}
	if r2.Running() || r2.portOpen() {
		t.Fatal("crashed replica still running / port open")
	}
	mustExec(t, ctx, p, "INSERT INTO kv VALUES ('c', 'three')")
	if err := c.WaitCaughtUp(ctx, p); err != nil {
		t.Fatalf("WaitCaughtUp with a crashed replica: %v", err)
	}
	if err := r2.Start(ctx); err != nil {
		t.Fatalf("Start after Crash: %v", err)
	}
	waitCaughtUp(t, ctx, c, p)
	wantRow(t, ctx, r2, "SELECT v FROM kv WHERE k = 'c'", "three")
	wantRow(t, ctx, r2, "SELECT @@read_only", "1")

	// Clean stop and restart of the primary; replicas reconnect.
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	wantRow(t, ctx, p, "SELECT @@read_only", "0")
	mustExec(t, ctx, p, "INSERT INTO kv VALUES ('d', 'four')")
	waitCaughtUp(t, ctx, c, p)
	wantRow(t, ctx, r1, "SELECT v FROM kv WHERE k = 'd'", "four")

	// Freeze and thaw a replica.
	if err := r1.Freeze(); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 700*time.Millisecond)
	if _, err := r1.Exec(short, "SELECT 1"); err == nil {
		t.Fatal("query on a frozen node succeeded")
	}
	cancelShort()
	mustExec(t, ctx, p, "INSERT INTO kv VALUES ('e', 'five')")
	waitCaughtUp(t, ctx, c, p)
	if err := r1.Thaw(); err != nil {
		t.Fatalf("Thaw: %v", err)
	}
	waitCaughtUp(t, ctx, c, p)
	wantRow(t, ctx, r1, "SELECT v FROM kv WHERE k = 'e'", "five")

	// Failover: the primary dies, replica 1 is promoted, replica 2 follows.
	if err := p.Crash(); err != nil {
		t.Fatalf("Crash primary: %v", err)
	}
	if err := r1.Promote(ctx); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	wantRow(t, ctx, r1, "SELECT @@read_only", "0")
	if err := c.Follow(ctx, r2, r1); err != nil {
		t.Fatalf("Follow: %v", err)
	}
	if _, err := r1.ExecAs(ctx, AppUser, AppPassword, "INSERT INTO kv VALUES ('f', 'six')"); err != nil {
		t.Fatalf("app insert on the new primary: %v", err)
	}
	waitCaughtUp(t, ctx, c, r1)
	wantRow(t, ctx, r2, "SELECT v FROM kv WHERE k = 'f'", "six")

	// The promoted node keeps read_only=0 across a restart.
	if err := r1.Stop(); err != nil {
		t.Fatalf("Stop new primary: %v", err)
	}
	if err := r1.Start(ctx); err != nil {
		t.Fatalf("Start new primary: %v", err)
	}
	wantRow(t, ctx, r1, "SELECT @@read_only", "0")

	// The old primary comes back and follows the new one.
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start old primary: %v", err)
	}
	if err := c.Follow(ctx, p, r1); err != nil {
		t.Fatalf("Follow old primary: %v", err)
	}
	wantRow(t, ctx, p, "SELECT @@read_only", "1")
	mustExec(t, ctx, r1, "INSERT INTO kv VALUES ('g', 'seven')")
	waitCaughtUp(t, ctx, c, r1)
	wantRow(t, ctx, p, "SELECT GROUP_CONCAT(v ORDER BY k) FROM kv", "one,two,three,four,five,six,seven")
	wantRow(t, ctx, r2, "SELECT COUNT(*) FROM kv", "7")

	if err := c.Reclone(ctx, p, r1); err == nil {
		t.Error("Reclone on MariaDB did not fail")
	}

	if err := r2.Freeze(); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	closeAndCheck(t, c)
}

func TestApplyDelay(t *testing.T) {
	for _, kind := range []Kind{Postgres, MariaDB} {
		t.Run(string(kind), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			const delay = 2 * time.Second
			c := startCluster(t, ctx, kind, LocalOptions{Replicas: 1, ApplyDelay: []time.Duration{delay}})
			p, r := c.Primary(), c.Replicas()[0]
			if len(c.Nodes()) != 2 {
				t.Fatalf("%d nodes, want 2", len(c.Nodes()))
			}
			mustExec(t, ctx, p, "CREATE TABLE delay_t (id INT PRIMARY KEY)")
			if err := c.WaitCaughtUp(ctx, p); err != nil {
				t.Fatal(err)
			}
			mustExec(t, ctx, p, "INSERT INTO delay_t VALUES (1)")
			begin := time.Now()
			if got := mustExec(t, ctx, r, "SELECT COUNT(*) FROM delay_t"); got != "0" {
				t.Fatalf("delayed replica already has the row (count %s)", got)
			}
			waitCaughtUp(t, ctx, c, p)
			// MariaDB binlog timestamps have a resolution of one second, so
			// its MASTER_DELAY can take effect up to a second early.
			minWait := delay - 200*time.Millisecond
			if kind == MariaDB {
				minWait = delay - 1200*time.Millisecond
			}
			if waited := time.Since(begin); waited < minWait {
				t.Errorf("WaitCaughtUp returned after %v, want about %v", waited, delay)
			}
			wantRow(t, ctx, r, "SELECT COUNT(*) FROM delay_t", "1")
		})
	}
}

func TestMissingBinaries(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	oldGlob, oldDirs := localos.PGBinGlob, mariaDBBinDirs
	localos.PGBinGlob, mariaDBBinDirs = filepath.Join(t.TempDir(), "*", "bin"), []string{t.TempDir()}
	defer func() { localos.PGBinGlob, mariaDBBinDirs = oldGlob, oldDirs }()
	for _, kind := range []Kind{Postgres, MariaDB} {
		_, err := StartLocal(context.Background(), kind, LocalOptions{})
		if err == nil || !strings.Contains(err.Error(), "make deps") {
			t.Errorf("Start(%s) without binaries: err = %v, want a hint to run make deps", kind, err)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	ctx := context.Background()
	if _, err := startLocalPostgres(ctx, LocalOptions{Replicas: -1}); err == nil {
		t.Error("negative Replicas accepted")
	}
	if _, err := startLocalMariaDB(ctx, LocalOptions{Replicas: 1, ApplyDelay: []time.Duration{time.Second, time.Second}}); err == nil {
		t.Error("more ApplyDelay entries than replicas accepted")
	}
	if _, err := StartLocal(ctx, Kind("oracle"), LocalOptions{}); err == nil {
		t.Error("unknown kind accepted")
	}
}

// TestStartFailureCleansUp interrupts start-up half-way and checks that
// nothing is left behind.
func TestStartFailureCleansUp(t *testing.T) {
	for _, tc := range []struct {
		kind  Kind
		after time.Duration
	}{{Postgres, 400 * time.Millisecond}, {MariaDB, 1200 * time.Millisecond}} {
		t.Run(string(tc.kind), func(t *testing.T) {
			tmp, err := os.MkdirTemp("", "rwsplittest-partial-*")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(tmp)
			if err := os.Chmod(tmp, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("TMPDIR", tmp)
			ctx, cancel := context.WithTimeout(context.Background(), tc.after)
			defer cancel()
			c, err := StartLocal(ctx, tc.kind, LocalOptions{Logf: t.Logf})
			if err == nil {
				c.Close()
				t.Logf("start-up finished within %v; nothing was interrupted", tc.after)
				return
			}
			t.Logf("interrupted start-up: %v", err)
			ents, _ := os.ReadDir(tmp)
			for _, e := range ents {
				t.Errorf("left behind: %s", filepath.Join(tmp, e.Name()))
			}
			if left := processesUnder([]string{tmp}); len(left) > 0 {
				t.Errorf("processes left:\n%s", strings.Join(left, "\n"))
			}
		})
	}
}

// BenchmarkStart measures how long a primary with two replicas takes to
// start (and to Close): go test -run=^$ -bench=Start -benchtime=3x.
func BenchmarkStart(b *testing.B) {
	for _, kind := range []Kind{Postgres, MariaDB} {
		b.Run(string(kind), func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				c, err := StartLocal(ctx, kind, LocalOptions{})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := c.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// TestPortInUseRetried gives the primary a port that is already taken and
// checks that start-up moves to another port.
func TestPortInUseRetried(t *testing.T) {
	for _, kind := range []Kind{Postgres, MariaDB} {
		t.Run(string(kind), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			busy := l.Addr().(*net.TCPAddr).Port
			c, err := newCluster(kind, LocalOptions{Replicas: 1, Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.nodes[0].port = busy
			if kind == Postgres {
				err = c.pgBootstrap(ctx)
			} else {
				err = c.mariaBootstrap(ctx)
			}
			if err != nil {
				t.Fatalf("bootstrap with a busy port: %v", err)
			}
			if p := c.Primary().Port(); p == busy {
				t.Fatalf("primary still on the busy port %d", p)
			}
			mustExec(t, ctx, c.Primary(), "CREATE TABLE t (id INT)")
			waitCaughtUp(t, ctx, c, c.Primary())
			wantRow(t, ctx, c.Replicas()[0], "SELECT COUNT(*) FROM t", "0")
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
