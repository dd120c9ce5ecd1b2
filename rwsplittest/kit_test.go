package rwsplittest_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// The images the container tests run: the official ones where a registry
// can be reached, or the stand-ins `make deps` builds.
const (
	pgImage    = "postgres:15"
	mariaImage = "mariadb:10.11"
)

func TestMain(m *testing.M) {
	// On a machine that has /.dockerenv, testcontainers-go reaches mapped
	// ports through the default gateway unless told otherwise: refuse to
	// wander there.
	if _, err := os.Stat("/.dockerenv"); err == nil && os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") == "" {
		fmt.Fprintln(os.Stderr, "rwsplittest tests: this machine has /.dockerenv; set TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 (make test does)")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// server is what the tests ask each kind of server.
type server struct {
	name      string
	whoami    string // names the serving node, in both backends
	isReplica string // true on a replica
	delay     time.Duration
	setting   string // given with WithSetting
	show      string // reads it back: want
	want      string
	run       func(ctx context.Context, opts ...rwsplittest.Option) (*rwsplittest.Cluster, error)
	start     func(ctx context.Context, opts ...rwsplittest.Option) (*rwsplittest.Cluster, error)
}

var servers = []server{
	{
		name:      "postgres",
		whoami:    "SELECT inet_server_addr()::text || ':' || inet_server_port()",
		isReplica: "SELECT pg_is_in_recovery()",
		delay:     300 * time.Millisecond,
		setting:   "work_mem = '7MB'",
		show:      "SHOW work_mem",
		want:      "7MB",
		run: func(ctx context.Context, opts ...rwsplittest.Option) (*rwsplittest.Cluster, error) {
			return rwsplittest.RunPostgres(ctx, pgImage, opts...)
		},
		start: rwsplittest.StartPostgres,
	},
	{
		name:      "mariadb",
		whoami:    "SELECT CONCAT(@@hostname, ':', @@port, ':', @@server_id)",
		isReplica: "SELECT @@read_only = 1",
		delay:     time.Second,
		setting:   "max_connections = 123",
		show:      "SELECT @@max_connections",
		want:      "123",
		run: func(ctx context.Context, opts ...rwsplittest.Option) (*rwsplittest.Cluster, error) {
			return rwsplittest.RunMariaDB(ctx, mariaImage, opts...)
		},
		start: rwsplittest.StartMariaDB,
	},
}

func (s server) served(t *testing.T, ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) string {
	t.Helper()
	var who string
	require.NoError(t, q.QueryRowContext(ctx, s.whoami).Scan(&who))
	return who
}

// identities returns each node's answer to whoami, asked of the node.
func (s server) identities(t *testing.T, ctx context.Context, c *rwsplittest.Cluster) []string {
	t.Helper()
	var ids []string
	for i := range c.Nodes() {
		db, err := sql.Open(c.DriverName(), c.DSN(i))
		require.NoError(t, err)
		ids = append(ids, s.served(t, ctx, db))
		db.Close()
	}
	return ids
}

func (s server) replica(t *testing.T, ctx context.Context, c *rwsplittest.Cluster, i int) bool {
	t.Helper()
	db, err := sql.Open(c.DriverName(), c.DSN(i))
	require.NoError(t, err)
	defer db.Close()
	var yes bool
	require.NoError(t, db.QueryRowContext(ctx, s.isReplica).Scan(&yes))
	return yes
}

func dockerPS(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-a", "--format", "{{.ID}} {{.Names}}").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return string(out)
}

func dockerNetworks(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("docker", "network", "ls", "--format", "{{.Name}}").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return string(out)
}

func TestCluster(t *testing.T) {
	for _, srv := range servers {
		for _, name := range []string{"containers", "local"} {
			start := srv.run
			if name == "local" {
				start = srv.start
			}
			t.Run(srv.name+"/"+name, func(t *testing.T) { testCluster(t, srv, name, start) })
		}
	}
}

func testCluster(t *testing.T, srv server, name string, start func(context.Context, ...rwsplittest.Option) (*rwsplittest.Cluster, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var before, nets string
	if name == "containers" {
		before, nets = dockerPS(t), dockerNetworks(t)
	}
	began := time.Now()
	c, err := start(ctx, rwsplittest.WithReplicaDelay(srv.delay), rwsplittest.WithSetting(srv.setting), rwsplittest.WithLogf(t.Logf))
	require.NoError(t, err)
	t.Logf("measured: %s on %s: a primary and 2 replicas ready in %v", srv.name, name, time.Since(began).Round(10*time.Millisecond))
	closed := false
	defer func() {
		if !closed {
			c.Close()
		}
	}()
	ids := srv.identities(t, ctx, c)
	require.Len(t, ids, 3)
	assert.NotEqual(t, ids[0], ids[1])
	assert.NotEqual(t, ids[1], ids[2])

	db, err := c.Open(rwsplit.WithHealthCheckInterval(200 * time.Millisecond))
	require.NoError(t, err)
	defer db.Close()

	t.Run("Settings", func(t *testing.T) {
		for i := range c.Nodes() {
			direct, err := sql.Open(c.DriverName(), c.DSN(i))
			require.NoError(t, err)
			var got string
			require.NoError(t, direct.QueryRowContext(ctx, srv.show).Scan(&got))
			direct.Close()
			assert.Equal(t, srv.want, got, "node %d: %s", i, srv.setting)
		}
	})

	t.Run("ReadsOnReplicas", func(t *testing.T) {
		for range 10 {
			assert.Contains(t, ids[1:], srv.served(t, ctx, db))
		}
	})

	t.Run("LagAndSessions", func(t *testing.T) {
		_, err := db.ExecContext(ctx, "CREATE TABLE kit_lag (id int)")
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			var n int
			return db.QueryRowContext(ctx, "SELECT count(*) FROM kit_lag").Scan(&n) == nil && srv.served(t, ctx, db) != ids[0]
		}, 20*time.Second, 50*time.Millisecond)
		_, err = db.ExecContext(ctx, "INSERT INTO kit_lag VALUES (1)")
		require.NoError(t, err)
		var n int
		require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM kit_lag").Scan(&n))
		assert.Equal(t, 0, n, "a read without a session right after the write sees the replicas' lag")
		sctx := rwsplit.WithSession(ctx, rwsplit.NewSession())
		_, err = db.ExecContext(sctx, "INSERT INTO kit_lag VALUES (2)")
		require.NoError(t, err)
		require.NoError(t, db.QueryRowContext(sctx, "SELECT count(*) FROM kit_lag WHERE id = 2").Scan(&n))
		assert.Equal(t, 1, n, "a session reads its own write")
	})

	t.Run("FreezeThaw", func(t *testing.T) {
		require.NoError(t, c.Freeze(ctx, 2))
		direct, err := sql.Open(c.DriverName(), c.DSN(2))
		require.NoError(t, err)
		defer direct.Close()
		qctx, qcancel := context.WithTimeout(ctx, time.Second)
		var one int
		err = direct.QueryRowContext(qctx, "SELECT 1").Scan(&one)
		qcancel()
		assert.Error(t, err, "a frozen node answered")
		for range 10 {
			assert.Equal(t, ids[1], srv.served(t, ctx, db), "reads while node 2 is frozen")
		}
		require.NoError(t, c.Thaw(ctx, 2))
		require.NoError(t, direct.QueryRowContext(ctx, "SELECT 1").Scan(&one))
		require.Eventually(t, func() bool { return srv.served(t, ctx, db) == ids[2] }, 20*time.Second, 20*time.Millisecond,
			"reads reach node 2 again after Thaw")
	})

	t.Run("CrashRestartReplica", func(t *testing.T) {
		require.NoError(t, c.Crash(ctx, 1))
		for range 5 {
			assert.NotEqual(t, ids[1], srv.served(t, ctx, db), "a read served by the crashed node 1")
		}
		require.NoError(t, c.Restart(ctx, 1))
		direct, err := sql.Open(c.DriverName(), c.DSN(1))
		require.NoError(t, err)
		defer direct.Close()
		assert.True(t, srv.replica(t, ctx, c, 1), "node 1 came back as a replica")
		assert.Equal(t, ids[1], srv.served(t, ctx, direct), "node 1 came back on its address")
	})

	t.Run("CrashPrimaryPromote", func(t *testing.T) {
		require.NoError(t, c.Crash(ctx, 0))
		require.NoError(t, c.Promote(ctx, 1))
		require.Eventually(t, func() bool {
			_, err := db.ExecContext(ctx, "INSERT INTO kit_lag VALUES (3)")
			return err == nil
		}, 30*time.Second, 100*time.Millisecond, "writes through the same DB after the promotion")
		var who string
		require.NoError(t, db.QueryRowContext(rwsplit.WithPrimary(ctx), srv.whoami).Scan(&who))
		assert.Equal(t, ids[1], who, "the DB writes to the promoted node")
		direct, err := sql.Open(c.DriverName(), c.DSN(2))
		require.NoError(t, err)
		defer direct.Close()
		require.Eventually(t, func() bool {
			var n int
			return direct.QueryRowContext(ctx, "SELECT count(*) FROM kit_lag WHERE id = 3").Scan(&n) == nil && n == 1
		}, 30*time.Second, 100*time.Millisecond, "node 2 follows the new primary")
		require.NoError(t, c.Restart(ctx, 0))
		assert.True(t, srv.replica(t, ctx, c, 0), "the old primary came back as a replica")
	})

	db.Close()
	require.NoError(t, c.Close())
	closed = true
	require.NoError(t, c.Close(), "Close twice")
	if name == "containers" {
		assert.Equal(t, before, dockerPS(t), "docker ps -a after Close")
		assert.Equal(t, nets, dockerNetworks(t), "docker networks after Close")
	}
}

// The image's own entrypoint starts a single server, and the kit
// replaces it: what the cluster tests do is the kit's, not the image's.
func TestImageEntrypointIsReplaced(t *testing.T) {
	out, err := exec.Command("docker", "image", "inspect", pgImage, "--format", "{{json .Config.Entrypoint}} {{json .Config.Volumes}}").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.True(t, strings.Contains(string(out), "docker-entrypoint.sh"), "the image's entrypoint: %s", out)
	assert.True(t, strings.Contains(string(out), "/var/lib/postgresql/data"), "the image's volume: %s", out)

	// Run as published, the image starts one server of its own.
	id, err := exec.Command("docker", "run", "-d", "-e", "POSTGRES_PASSWORD=pw", pgImage).Output()
	require.NoError(t, err)
	ctr := strings.TrimSpace(string(id))
	defer exec.Command("docker", "rm", "-f", "-v", ctr).Run()
	require.Eventually(t, func() bool {
		out, err := exec.Command("docker", "exec", ctr, "sh", "-c", "PGPASSWORD=pw psql -h 127.0.0.1 -U postgres -tAc 'SELECT 1'").Output()
		return err == nil && strings.TrimSpace(string(out)) == "1"
	}, time.Minute, 200*time.Millisecond, "the image's own entrypoint did not start a server")
}

// A replica that received more than the replica promoted over it cannot
// follow the new primary's timeline: Promote rebuilds it (PostgreSQL).
func TestPromoteRebuildsAReplicaThatCannotFollow(t *testing.T) {
	srv := servers[0]
	for _, name := range []string{"containers", "local"} {
		start := srv.run
		if name == "local" {
			start = srv.start
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			c, err := start(ctx, rwsplittest.WithLogf(t.Logf))
			require.NoError(t, err)
			defer c.Close()
			node := func(i int) *sql.DB {
				db, err := sql.Open(c.DriverName(), c.DSN(i))
				require.NoError(t, err)
				t.Cleanup(func() { db.Close() })
				return db
			}
			p, r2 := node(0), node(2)
			_, err = p.ExecContext(ctx, "CREATE TABLE kit_fork (id int)")
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				_, err := node(1).ExecContext(ctx, "SELECT 1 FROM kit_fork")
				return err == nil
			}, 20*time.Second, 50*time.Millisecond)

			// Node 1 is down while node 2 receives one more write.
			require.NoError(t, c.Crash(ctx, 1))
			_, err = p.ExecContext(ctx, "INSERT INTO kit_fork VALUES (1)")
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				var n int
				return r2.QueryRowContext(ctx, "SELECT count(*) FROM kit_fork").Scan(&n) == nil && n == 1
			}, 20*time.Second, 50*time.Millisecond)
			require.NoError(t, c.Crash(ctx, 0))
			require.NoError(t, c.Restart(ctx, 1))

			require.NoError(t, c.Promote(ctx, 1))
			r1 := node(1)
			_, err = r1.ExecContext(ctx, "INSERT INTO kit_fork VALUES (2)")
			require.NoError(t, err)
			r2 = node(2)
			require.Eventually(t, func() bool {
				var n int
				return r2.QueryRowContext(ctx, "SELECT count(*) FROM kit_fork WHERE id = 2").Scan(&n) == nil && n == 1
			}, 30*time.Second, 100*time.Millisecond, "node 2 follows the new primary")
			assert.True(t, srv.replica(t, ctx, c, 2), "node 2 is a replica")
			var lost int
			require.NoError(t, r2.QueryRowContext(ctx, "SELECT count(*) FROM kit_fork WHERE id = 1").Scan(&lost))
			assert.Zero(t, lost, "node 2 still has the write the new primary never had")
		})
	}
}
