package rwsplittest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rwsplit/rwsplit/rwsplittest/internal/localos"
)

// pgConf is appended to the primary's postgresql.conf; replicas inherit it
// through pg_basebackup. LocalNode-specific settings (port, socket directory,
// listen address, apply delay) are passed on the command line instead.
const pgConf = `
# ---- rwsplittest ----
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = '256MB'
hot_standby = on
hot_standby_feedback = on
max_standby_streaming_delay = '5s'
wal_receiver_status_interval = '1s'
wal_retrieve_retry_interval = '500ms'
wal_sender_timeout = '10s'
wal_receiver_timeout = '10s'
fsync = off
synchronous_commit = on
full_page_writes = off
shared_buffers = '32MB'
max_connections = 200
huge_pages = off
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
`

const pgHBA = `# rwsplittest: trust over the node's private Unix socket, passwords over TCP
local   all           all                    trust
local   replication   all                    trust
host    all           all    127.0.0.1/32    scram-sha-256
host    replication   all    127.0.0.1/32    scram-sha-256
`

// startLocalPostgres starts a PostgreSQL streaming replication cluster: a
// primary and opts.Replicas hot standbys (default 2). It returns once every
// standby is streaming from the primary.
func startLocalPostgres(ctx context.Context, opts LocalOptions) (*LocalCluster, error) {
	begin := time.Now()
	c, err := newCluster(Postgres, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	if err := c.pgBootstrap(ctx); err != nil {
		if cerr := c.Close(); cerr != nil {
			err = fmt.Errorf("%w\n(cleanup: %v)", err, cerr)
		}
		return nil, err
	}
	c.log("PostgreSQL cluster (1 primary, %d replicas) ready in %v", len(c.nodes)-1, time.Since(begin).Round(time.Millisecond))
	return c, nil
}

func (c *LocalCluster) pgBootstrap(ctx context.Context) error {
	p := c.nodes[0]
	if err := c.pgInitPrimary(ctx, p); err != nil {
		return err
	}
	if err := p.startServer(ctx, true); err != nil {
		return err
	}
	if err := c.pgSetupPrimary(ctx, p); err != nil {
		return err
	}
	replicas := c.nodes[1:]
	errs := make([]error, len(replicas))
	var wg sync.WaitGroup
	for i, r := range replicas {
		wg.Go(func() {
			if err := c.pgBaseBackup(ctx, r, p); err != nil {
				errs[i] = err
				return
			}
			if err := r.startServer(ctx, true); err != nil {
				errs[i] = err
				return
			}
			errs[i] = r.pgWaitStreaming(ctx, p)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var undelayed []*LocalNode
	for _, r := range replicas {
		if r.delay == 0 {
			undelayed = append(undelayed, r)
		}
	}
	return c.pgWaitCaughtUp(ctx, p, undelayed)
}

func (c *LocalCluster) pgInitPrimary(ctx context.Context, n *LocalNode) error {
	pwfile := filepath.Join(n.dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(AdminPassword+"\n"), 0o600); err != nil {
		return fmt.Errorf("rwsplittest: %s: initdb: write password file: %w", n.name, err)
	}
	defer os.Remove(pwfile)
	if err := c.chown(pwfile); err != nil {
		return fmt.Errorf("rwsplittest: %s: initdb: %w", n.name, err)
	}
	c.log("%s: initdb", n.name)
	_, err := c.runTool(ctx, n, true, "", nil, c.pg.initdb,
		"-D", n.dataDir, "-U", "postgres", "--pwfile="+pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256",
		"-E", "UTF8", "--locale=C", "--no-sync")
	if err != nil {
		return fmt.Errorf("rwsplittest: %s: initdb: %w", n.name, err)
	}
	f, err := os.OpenFile(filepath.Join(n.dataDir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("rwsplittest: %s: configure: %w", n.name, err)
	}
	_, err = f.WriteString(pgConf + strings.Join(c.settings, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("rwsplittest: %s: configure: %w", n.name, err)
	}
	if err := os.WriteFile(filepath.Join(n.dataDir, "pg_hba.conf"), []byte(pgHBA), 0o600); err != nil {
		return fmt.Errorf("rwsplittest: %s: configure pg_hba.conf: %w", n.name, err)
	}
	return nil
}

func (c *LocalCluster) pgSetupPrimary(ctx context.Context, n *LocalNode) error {
	c.log("%s: create roles and database", n.name)
	setup := fmt.Sprintf(`CREATE ROLE %[1]s LOGIN PASSWORD %[2]s;
CREATE DATABASE %[3]s OWNER %[1]s;
CREATE ROLE %[4]s LOGIN REPLICATION PASSWORD %[5]s;
CREATE ROLE %[6]s LOGIN PASSWORD %[7]s IN ROLE pg_monitor, pg_read_all_data;
`, AppUser, pgQuote(AppPassword), AppDatabase, ReplUser, pgQuote(ReplPassword), MonitorUser, pgQuote(MonitorPassword))
	if _, err := n.pgLocal(ctx, "postgres", setup); err != nil {
		return fmt.Errorf("rwsplittest: %s: create roles and database: %w", n.name, err)
	}
	// Objects the superuser creates in app (fixtures made with Exec) are
	// usable by the application user.
	grants := fmt.Sprintf(`ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT ALL ON TABLES TO %[1]s;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT ALL ON SEQUENCES TO %[1]s;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT ALL ON SCHEMAS TO %[1]s;
`, AppUser)
	if _, err := n.pgLocal(ctx, AppDatabase, grants); err != nil {
		return fmt.Errorf("rwsplittest: %s: set default privileges: %w", n.name, err)
	}
	return nil
}

// pgBaseBackup replaces n's data directory by a base backup of primary
// configured as a standby of primary.
func (c *LocalCluster) pgBaseBackup(ctx context.Context, n, primary *LocalNode) error {
	if err := os.RemoveAll(n.dataDir); err != nil {
		return fmt.Errorf("rwsplittest: %s: remove old data directory: %w", n.name, err)
	}
	c.log("%s: pg_basebackup from %s", n.name, primary.name)
	_, err := c.runTool(ctx, n, true, "", []string{"PGPASSWORD=" + ReplPassword, "PGAPPNAME=" + n.name + "-basebackup"},
		c.pg.basebackup,
		"-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port()), "-U", ReplUser, "-w",
		"-D", n.dataDir, "-R", "-X", "stream", "-c", "fast", "-N", "--no-manifest")
	if err != nil {
		return fmt.Errorf("rwsplittest: %s: pg_basebackup from %s: %w", n.name, primary.name, err)
	}
	if err := pgSetAutoConf(filepath.Join(n.dataDir, "postgresql.auto.conf"), "primary_conninfo", pgQuote(pgConninfo(n, primary))); err != nil {
		return fmt.Errorf("rwsplittest: %s: write primary_conninfo: %w", n.name, err)
	}
	return nil
}

// pgConninfo is the replication connection string n uses to follow primary.
func pgConninfo(n, primary *LocalNode) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s application_name=%s sslmode=disable",
		primary.Port(), ReplUser, ReplPassword, n.name)
}

// pgSetAutoConf replaces every setting of name in a postgresql.auto.conf
// style file by "name = value".
func pgSetAutoConf(path, name, value string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var out []string
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		k, _, _ := strings.Cut(strings.TrimSpace(line), "=")
		if strings.TrimSpace(k) == name {
			continue
		}
		out = append(out, line)
	}
	out = append(out, name+" = "+value)
	return os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o600)
}

// pgQuote returns s as an SQL string literal.
func pgQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (n *LocalNode) pgServerArgs(port int) []string {
	args := []string{
		"-D", n.dataDir,
		"-p", strconv.Itoa(port),
		"-k", n.dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "cluster_name=" + n.name,
	}
	if n.delay > 0 {
		args = append(args, "-c", fmt.Sprintf("recovery_min_apply_delay=%dms", n.delay.Milliseconds()))
	}
	return args
}

// pgProbe reports whether the postmaster s is up and accepts queries.
func (n *LocalNode) pgProbe(ctx context.Context, s *server) bool {
	b, err := os.ReadFile(filepath.Join(n.dataDir, "postmaster.pid"))
	if err != nil {
		return false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 8 || strings.TrimSpace(lines[0]) != strconv.Itoa(s.pid) {
		return false
	}
	if st := strings.TrimSpace(lines[7]); st != "ready" && st != "standby" {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = n.pgExecDB(pctx, "postgres", AdminPassword, "postgres", "SELECT 1")
	return err == nil
}

func psqlArgs(db string) []string {
	return []string{"-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-w", "-d", db, "-f", "-"}
}

// pgLocal runs sql as postgres over the node's Unix socket (trust).
func (n *LocalNode) pgLocal(ctx context.Context, db, sql string) (string, error) {
	args := append([]string{"-h", n.dir, "-p", strconv.Itoa(n.Port()), "-U", "postgres"}, psqlArgs(db)...)
	out, err := n.c.runTool(ctx, n, false, sql, nil, n.c.pg.psql, args...)
	return strings.TrimSpace(out), err
}

func (n *LocalNode) pgExec(ctx context.Context, user, password, sql string) (string, error) {
	return n.pgExecDB(ctx, user, password, AppDatabase, sql)
}

// pgExecDB runs sql through psql over TCP.
func (n *LocalNode) pgExecDB(ctx context.Context, user, password, db, sql string) (string, error) {
	args := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(n.Port()), "-U", user}, psqlArgs(db)...)
	env := []string{"PGPASSWORD=" + password, "PGCONNECT_TIMEOUT=10", "PGSSLMODE=disable", "PGAPPNAME=rwsplittest"}
	out, err := n.c.runTool(ctx, n, false, sql, env, n.c.pg.psql, args...)
	if err != nil {
		return strings.TrimSpace(out), fmt.Errorf("rwsplittest: %s: %w", n.name, err)
	}
	return strings.TrimSpace(out), nil
}

// pgAdmin runs sql as the superuser in the postgres database.
func (n *LocalNode) pgAdmin(ctx context.Context, sql string) (string, error) {
	return n.pgExecDB(ctx, "postgres", AdminPassword, "postgres", sql)
}

// pgWaitStreaming waits until n's WAL receiver streams from primary.
func (n *LocalNode) pgWaitStreaming(ctx context.Context, primary *LocalNode) error {
	want := fmt.Sprintf("streaming\t%d", primary.Port())
	var last string
	var lastErr error
	for {
		out, err := n.pgAdmin(ctx, "SELECT status, sender_port FROM pg_stat_wal_receiver")
		if err == nil && out == want {
			return nil
		}
		last, lastErr = out, err
		if !n.Running() {
			return fmt.Errorf("rwsplittest: %s: server exited while waiting for streaming from %s%s", n.name, primary.name, n.logTailMsg(0))
		}
		if err := localos.SleepCtx(ctx, 20*time.Millisecond); err != nil {
			if lastErr != nil {
				return fmt.Errorf("rwsplittest: %s: not streaming from %s: %w (last error: %v)", n.name, primary.name, err, lastErr)
			}
			return fmt.Errorf("rwsplittest: %s: not streaming from %s: %w (wal receiver: %q)%s", n.name, primary.name, err, last, n.logTailMsg(fileSize(n.logPath)-2048))
		}
	}
}

// pgWaitCaughtUp waits until the replicas (nil: every node except primary)
// have replayed primary's current WAL write position.
//
// The write position (pg_current_wal_lsn) is used rather than the insert
// position: with synchronous_commit=on every committed transaction is below
// it, whereas the insert position can point past the page header of an
// empty page, or at WAL that is never flushed on its own, which a standby
// never reports as replayed.
func (c *LocalCluster) pgWaitCaughtUp(ctx context.Context, primary *LocalNode, replicas []*LocalNode) error {
	if err := c.check(primary); err != nil {
		return err
	}
	target, err := primary.pgAdmin(ctx, "SELECT pg_current_wal_lsn()")
	if err != nil {
		return fmt.Errorf("rwsplittest: WaitCaughtUp: read WAL position of %s: %w", primary.name, err)
	}
	if replicas == nil {
		for _, n := range c.nodes {
			if n != primary {
				replicas = append(replicas, n)
			}
		}
	}
	query := fmt.Sprintf("SELECT CASE WHEN pg_is_in_recovery() THEN (pg_last_wal_replay_lsn() >= %s::pg_lsn)::text || ' ' || coalesce(pg_last_wal_replay_lsn()::text, '') ELSE 'primary' END", pgQuote(target))
	for _, n := range replicas {
		var last string
		var lastErr error
		for {
			if !n.Running() || n.Frozen() {
				break
			}
			out, err := n.pgAdmin(ctx, query)
			if err == nil && (out == "primary" || strings.HasPrefix(out, "true")) {
				break
			}
			last, lastErr = out, err
			if err := localos.SleepCtx(ctx, 20*time.Millisecond); err != nil {
				if lastErr != nil {
					return fmt.Errorf("rwsplittest: %s: WaitCaughtUp(%s, %s): %w (last error: %v)", n.name, primary.name, target, err, lastErr)
				}
				return fmt.Errorf("rwsplittest: %s: WaitCaughtUp: replay position %q has not reached %s's %s: %w", n.name, strings.TrimPrefix(last, "false "), primary.name, target, err)
			}
		}
	}
	return nil
}

func (n *LocalNode) pgPromote(ctx context.Context) error {
	out, err := n.pgAdmin(ctx, "SELECT pg_is_in_recovery()")
	if err != nil {
		return fmt.Errorf("rwsplittest: %s: Promote: %w", n.name, err)
	}
	if out == "f" {
		return nil
	}
	if _, err := n.pgAdmin(ctx, "SELECT pg_promote(true, 60)"); err != nil {
		return fmt.Errorf("rwsplittest: %s: Promote: %w", n.name, err)
	}
	for {
		out, err := n.pgAdmin(ctx, "SELECT pg_is_in_recovery()")
		if err == nil && out == "f" {
			return nil
		}
		if err := localos.SleepCtx(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("rwsplittest: %s: Promote: still in recovery: %w", n.name, err)
		}
	}
}

func (c *LocalCluster) pgFollow(ctx context.Context, n, primary *LocalNode) error {
	out, err := n.pgAdmin(ctx, "SELECT pg_is_in_recovery()")
	if err != nil {
		return fmt.Errorf("rwsplittest: %s: Follow: %w", n.name, err)
	}
	if out != "t" {
		return fmt.Errorf("rwsplittest: %s: Follow: node is not a standby (it was promoted or started as primary); use Reclone to turn it into a replica", n.name)
	}
	c.log("%s: follow %s", n.name, primary.name)
	sql := fmt.Sprintf("ALTER SYSTEM SET primary_conninfo = %s;\nSELECT pg_reload_conf();", pgQuote(pgConninfo(n, primary)))
	if _, err := n.pgAdmin(ctx, sql); err != nil {
		return fmt.Errorf("rwsplittest: %s: Follow: set primary_conninfo: %w", n.name, err)
	}
	return n.pgWaitStreaming(ctx, primary)
}

func (c *LocalCluster) pgReclone(ctx context.Context, n, primary *LocalNode) error {
	if err := n.stopLocked(); err != nil {
		return err
	}
	localos.CleanupShm(n.dataDir)
	if err := c.pgBaseBackup(ctx, n, primary); err != nil {
		return err
	}
	if err := n.startServer(ctx, false); err != nil {
		return err
	}
	return n.pgWaitStreaming(ctx, primary)
}
