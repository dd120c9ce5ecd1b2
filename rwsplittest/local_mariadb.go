package rwsplittest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rwsplit/rwsplit/rwsplittest/internal/localos"
)

// startLocalMariaDB starts a MariaDB GTID replication cluster: a primary and
// opts.Replicas read-only replicas (default 2). It returns once every
// replica has replicated the primary's accounts and database.
func startLocalMariaDB(ctx context.Context, opts LocalOptions) (*LocalCluster, error) {
	begin := time.Now()
	c, err := newCluster(MariaDB, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	if err := c.mariaBootstrap(ctx); err != nil {
		if cerr := c.Close(); cerr != nil {
			err = fmt.Errorf("%w\n(cleanup: %v)", err, cerr)
		}
		return nil, err
	}
	c.log("MariaDB cluster (1 primary, %d replicas) ready in %v", len(c.nodes)-1, time.Since(begin).Round(time.Millisecond))
	return c, nil
}

func (c *LocalCluster) mariaBootstrap(ctx context.Context) error {
	p := c.nodes[0]
	// Install the system tables once and copy the result: identical,
	// binlog-free starting points for every node, faster than one
	// mariadb-install-db per node.
	c.log("%s: mariadb-install-db", p.name)
	_, err := c.runTool(ctx, p, true, "", nil, c.maria.install,
		"--no-defaults", "--datadir="+p.dataDir,
		"--auth-root-authentication-method=normal", "--skip-test-db",
		"--skip-name-resolve", "--innodb-log-file-size=16M")
	if err != nil {
		return fmt.Errorf("rwsplittest: %s: mariadb-install-db: %w", p.name, err)
	}
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes[1:] {
		wg.Go(func() {
			if err := c.copyTree(p.dataDir, n.dataDir); err != nil {
				errs[i+1] = fmt.Errorf("rwsplittest: %s: %w", n.name, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, n := range c.nodes {
		wg.Go(func() { errs[i] = n.startServer(ctx, true) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := c.mariaSetupPrimary(ctx, p); err != nil {
		return err
	}
	for i, n := range c.nodes[1:] {
		wg.Go(func() {
			c.log("%s: replicate from %s", n.name, p.name)
			// Replicate without delay until the accounts are in place; the
			// configured MASTER_DELAY is set afterwards.
			if _, err := n.mariaLocal(ctx, mariaChangeMaster(n, p, "slave_pos", 0)+";\nSTART SLAVE;"); err != nil {
				errs[i+1] = fmt.Errorf("rwsplittest: %s: set up replication: %w", n.name, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := c.mariaWaitCaughtUp(ctx, p, nil); err != nil {
		return err
	}
	c.log("replicas caught up with %s", p.name)
	for _, n := range c.nodes[1:] {
		if d := n.masterDelay(); d > 0 {
			c.log("%s: set MASTER_DELAY=%d", n.name, d)
			if err := n.mariaSetDelay(ctx, d); err != nil {
				return err
			}
		}
	}
	for _, n := range c.nodes {
		if _, err := n.Exec(ctx, "SELECT 1"); err != nil {
			return fmt.Errorf("rwsplittest: %s: superuser login over TCP does not work: %w", n.name, err)
		}
	}
	return nil
}

func (c *LocalCluster) mariaSetupPrimary(ctx context.Context, n *LocalNode) error {
	c.log("%s: create users and database", n.name)
	sql := fmt.Sprintf(`CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY %[1]s;
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
CREATE DATABASE %[2]s CHARACTER SET utf8mb4;
CREATE USER '%[3]s'@'%%' IDENTIFIED BY %[4]s;
GRANT ALL PRIVILEGES ON %[2]s.* TO '%[3]s'@'%%';
CREATE USER '%[5]s'@'%%' IDENTIFIED BY %[6]s;
GRANT REPLICATION SLAVE ON *.* TO '%[5]s'@'%%';
CREATE USER '%[7]s'@'%%' IDENTIFIED BY %[8]s;
GRANT SLAVE MONITOR, BINLOG MONITOR, REPLICATION CLIENT ON *.* TO '%[7]s'@'%%';
GRANT SELECT ON %[2]s.* TO '%[7]s'@'%%';
`, mariaQuote(AdminPassword), AppDatabase, AppUser, mariaQuote(AppPassword),
		ReplUser, mariaQuote(ReplPassword), MonitorUser, mariaQuote(MonitorPassword))
	if _, err := n.mariaLocal(ctx, sql); err != nil {
		return fmt.Errorf("rwsplittest: %s: create users and database: %w", n.name, err)
	}
	return nil
}

// mariaSetDelay sets the replica's MASTER_DELAY to d seconds and checks
// in SHOW SLAVE STATUS that it took, trying again if it did not: a test
// that relies on the delay must not run against a replica without it.
func (n *LocalNode) mariaSetDelay(ctx context.Context, d int64) error {
	want := strconv.FormatInt(d, 10)
	var got string
	for range 3 {
		if _, err := n.mariaLocal(ctx, fmt.Sprintf("STOP SLAVE;\nCHANGE MASTER TO MASTER_DELAY=%d;\nSTART SLAVE;", d)); err != nil {
			return fmt.Errorf("rwsplittest: %s: set MASTER_DELAY: %w", n.name, err)
		}
		st, err := n.mariaSlaveStatus(ctx)
		if err != nil {
			return err
		}
		if got = st["SQL_Delay"]; got == want {
			return nil
		}
		n.c.log("%s: SQL_Delay is %q after MASTER_DELAY=%d; setting it again", n.name, got, d)
	}
	return fmt.Errorf("rwsplittest: %s: MASTER_DELAY=%d did not take: SQL_Delay is %q", n.name, d, got)
}

// mariaChangeMaster returns the CHANGE MASTER TO statement pointing n at
// primary.
func mariaChangeMaster(n, primary *LocalNode, useGTID string, delay int64) string {
	return fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER=%s, MASTER_PASSWORD=%s, MASTER_USE_GTID=%s, MASTER_CONNECT_RETRY=1, MASTER_DELAY=%d",
		primary.Port(), mariaQuote(ReplUser), mariaQuote(ReplPassword), useGTID, delay)
}

// masterDelay is the node's apply delay in whole seconds, rounded up.
func (n *LocalNode) masterDelay() int64 { return int64(math.Ceil(n.delay.Seconds())) }

// mariaQuote returns s as a MariaDB string literal.
func mariaQuote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func (n *LocalNode) socketPath() string { return filepath.Join(n.dir, "mysqld.sock") }

func (n *LocalNode) mariaServerArgs(port int) []string {
	args := []string{
		"--no-defaults",
		"--datadir=" + n.dataDir,
		"--port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--socket=" + n.socketPath(),
		"--pid-file=" + filepath.Join(n.dir, "mysqld.pid"),
		"--log-error=" + n.logPath,
		"--tmpdir=" + n.dir,
		"--server-id=" + strconv.Itoa(n.serverID),
		"--log-bin=mysql-bin",
		"--relay-log=relay-bin",
		"--log-slave-updates",
		"--binlog-format=ROW",
		"--gtid-strict-mode=1",
		"--innodb-buffer-pool-size=32M",
		"--innodb-log-file-size=16M",
		"--innodb-flush-log-at-trx-commit=2",
		"--sync-binlog=0",
		"--skip-name-resolve",
		"--max-connections=200",
		"--slave-net-timeout=10",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
	}
	for _, s := range n.c.settings {
		args = append(args, mariaOption(s))
	}
	n.mu.Lock()
	ro := n.readOnly
	n.mu.Unlock()
	if ro {
		args = append(args, "--read-only=1")
	}
	return args
}

// mariaOption turns a "name = value" setting into a mariadbd option.
func mariaOption(s string) string {
	name, value, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if !ok {
		return "--" + name
	}
	return "--" + name + "=" + strings.Trim(strings.TrimSpace(value), `'"`)
}

// mariaProbe reports whether the server accepts connections on its TCP port
// and its socket.
func (n *LocalNode) mariaProbe(ctx context.Context) bool {
	if !n.portOpen() {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := n.mariaLocal(pctx, "SELECT 1")
	return err == nil
}

// mariaLocal runs sql as root@localhost over the node's Unix socket (no
// password; the socket lives in the node's private directory).
func (n *LocalNode) mariaLocal(ctx context.Context, sql string) (string, error) {
	out, err := n.c.runTool(ctx, n, false, sql, nil, n.c.maria.client,
		"--no-defaults", "--protocol=SOCKET", "--socket="+n.socketPath(), "--user=root",
		"--connect-timeout=10", "--batch", "--skip-column-names")
	if err != nil {
		return strings.TrimSpace(out), fmt.Errorf("rwsplittest: %s: %w", n.name, err)
	}
	return strings.TrimSpace(out), nil
}

// mariaExec runs sql through the mariadb client over TCP.
func (n *LocalNode) mariaExec(ctx context.Context, user, password, sql string) (string, error) {
	out, err := n.c.runTool(ctx, n, false, sql, []string{"MYSQL_PWD=" + password}, n.c.maria.client,
		"--no-defaults", "--protocol=TCP", "--host=127.0.0.1", "--port="+strconv.Itoa(n.Port()),
		"--user="+user, "--skip-ssl", "--connect-timeout=10", "--batch", "--skip-column-names",
		AppDatabase)
	if err != nil {
		return strings.TrimSpace(out), fmt.Errorf("rwsplittest: %s: %w", n.name, err)
	}
	return strings.TrimSpace(out), nil
}

// mariaSlaveStatus returns SHOW SLAVE STATUS as a column map, or nil when
// the node has no replication source.
func (n *LocalNode) mariaSlaveStatus(ctx context.Context) (map[string]string, error) {
	out, err := n.c.runTool(ctx, n, false, "SHOW SLAVE STATUS", nil, n.c.maria.client,
		"--no-defaults", "--protocol=SOCKET", "--socket="+n.socketPath(), "--user=root",
		"--connect-timeout=10", "--batch")
	if err != nil {
		return nil, fmt.Errorf("rwsplittest: %s: SHOW SLAVE STATUS: %w", n.name, err)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 2 {
		return nil, nil
	}
	keys := strings.Split(lines[0], "\t")
	vals := strings.Split(lines[1], "\t")
	m := make(map[string]string, len(keys))
	for i, k := range keys {
		if i < len(vals) {
			m[k] = vals[i]
		}
	}
	return m, nil
}

// slaveError describes a stopped replication thread, or returns "".
func slaveError(st map[string]string) string {
	if st["Slave_IO_Running"] == "No" && st["Last_IO_Errno"] != "" && st["Last_IO_Errno"] != "0" {
		return fmt.Sprintf("replication I/O thread stopped: error %s: %s", st["Last_IO_Errno"], st["Last_IO_Error"])
	}
	if st["Slave_SQL_Running"] == "No" && st["Last_SQL_Errno"] != "" && st["Last_SQL_Errno"] != "0" {
		return fmt.Sprintf("replication SQL thread stopped: error %s: %s", st["Last_SQL_Errno"], st["Last_SQL_Error"])
	}
	return ""
}

// mariaWaitCaughtUp waits until the replicas (nil: every node except
// primary) have applied primary's @@gtid_binlog_pos (MASTER_GTID_WAIT).
func (c *LocalCluster) mariaWaitCaughtUp(ctx context.Context, primary *LocalNode, replicas []*LocalNode) error {
	if err := c.check(primary); err != nil {
		return err
	}
	pos, err := primary.mariaLocal(ctx, "SELECT @@gtid_binlog_pos")
	if err != nil {
		return fmt.Errorf("rwsplittest: WaitCaughtUp: read GTID position of %s: %w", primary.name, err)
	}
	if pos == "" {
		return nil
	}
	if replicas == nil {
		for _, n := range c.nodes {
			if n != primary {
				replicas = append(replicas, n)
			}
		}
	}
	wait := fmt.Sprintf("SELECT MASTER_GTID_WAIT(%s, 0.5)", mariaQuote(pos))
	for _, n := range replicas {
		if !n.Running() || n.Frozen() {
			continue
		}
		st, err := n.mariaSlaveStatus(ctx)
		if err != nil {
			return fmt.Errorf("rwsplittest: WaitCaughtUp: %w", err)
		}
		if st == nil {
			continue // not a replica
		}
		for {
			if !n.Running() || n.Frozen() {
				break
			}
			out, err := n.mariaLocal(ctx, wait)
			if err == nil && out == "0" {
				break
			}
			if ctx.Err() != nil {
				slavePos, _ := n.mariaLocal(context.Background(), "SELECT @@gtid_slave_pos")
				return fmt.Errorf("rwsplittest: %s: WaitCaughtUp: gtid_slave_pos %q has not reached %s's gtid_binlog_pos %q: %w", n.name, slavePos, primary.name, pos, ctx.Err())
			}
			if err != nil {
				_ = localos.SleepCtx(ctx, 50*time.Millisecond)
			}
			st, serr := n.mariaSlaveStatus(ctx)
			if serr == nil && st != nil {
				if msg := slaveError(st); msg != "" {
					return fmt.Errorf("rwsplittest: %s: WaitCaughtUp(%s): %s", n.name, primary.name, msg)
				}
			}
		}
	}
	return nil
}

func (n *LocalNode) mariaPromote(ctx context.Context) error {
	st, err := n.mariaSlaveStatus(ctx)
	if err != nil {
		return fmt.Errorf("rwsplittest: %s: Promote: %w", n.name, err)
	}
	if st != nil && n.delay == 0 && st["Slave_SQL_Running"] == "Yes" {
		// Apply what was already received before cutting replication, as
		// PostgreSQL does on promotion.
		if _, err := n.mariaLocal(ctx, "STOP SLAVE IO_THREAD"); err != nil {
			return fmt.Errorf("rwsplittest: %s: Promote: %w", n.name, err)
		}
		if st, err := n.mariaSlaveStatus(ctx); err == nil && st != nil && st["Gtid_IO_Pos"] != "" {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			for dctx.Err() == nil {
				out, err := n.mariaLocal(dctx, fmt.Sprintf("SELECT MASTER_GTID_WAIT(%s, 0.5)", mariaQuote(st["Gtid_IO_Pos"])))
				if err == nil && out == "0" {
					break
				}
				if cur, err := n.mariaSlaveStatus(dctx); err != nil || cur == nil || cur["Slave_SQL_Running"] != "Yes" {
					break
				}
			}
			cancel()
		}
	}
	if _, err := n.mariaLocal(ctx, "STOP SLAVE;\nRESET SLAVE ALL;\nSET GLOBAL read_only=0;"); err != nil {
		return fmt.Errorf("rwsplittest: %s: Promote: %w", n.name, err)
	}
	n.mu.Lock()
	n.readOnly = false
	n.mu.Unlock()
	for {
		out, err := n.mariaLocal(ctx, "SELECT @@read_only")
		if err == nil && out == "0" {
			return nil
		}
		if err := localos.SleepCtx(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("rwsplittest: %s: Promote: read_only is still %q: %w", n.name, out, err)
		}
	}
}

func (c *LocalCluster) mariaFollow(ctx context.Context, n, primary *LocalNode) error {
	// A node that wrote transactions of its own (an old primary) must
	// resume from its binlog position, a pure replica from gtid_slave_pos.
	pos, err := n.mariaLocal(ctx, "SELECT @@gtid_binlog_pos, @@gtid_slave_pos")
	if err != nil {
		return fmt.Errorf("rwsplittest: %s: Follow: %w", n.name, err)
	}
	binlogPos, slavePos, _ := strings.Cut(pos, "\t")
	useGTID := "slave_pos"
	if binlogPos != "" && binlogPos != slavePos {
		useGTID = "current_pos"
	}
	c.log("%s: follow %s (MASTER_USE_GTID=%s)", n.name, primary.name, useGTID)
	sql := "STOP SLAVE;\nSET GLOBAL read_only=1;\n" + mariaChangeMaster(n, primary, useGTID, n.masterDelay()) + ";\nSTART SLAVE;"
	if _, err := n.mariaLocal(ctx, sql); err != nil {
		return fmt.Errorf("rwsplittest: %s: Follow %s: %w", n.name, primary.name, err)
	}
	n.mu.Lock()
	n.readOnly = true
	n.mu.Unlock()
	var last map[string]string
	for {
		st, err := n.mariaSlaveStatus(ctx)
		if err == nil && st != nil {
			last = st
			if st["Slave_IO_Running"] == "Yes" && st["Slave_SQL_Running"] == "Yes" {
				return nil
			}
			if msg := slaveError(st); msg != "" {
				return fmt.Errorf("rwsplittest: %s: Follow %s: %s", n.name, primary.name, msg)
			}
		}
		if err := localos.SleepCtx(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("rwsplittest: %s: Follow %s: replication not running (I/O %q, SQL %q): %w", n.name, primary.name, last["Slave_IO_Running"], last["Slave_SQL_Running"], err)
		}
	}
}
