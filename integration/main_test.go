package integration

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// The package's shared clusters: a PostgreSQL primary with two streaming
// replicas and a MariaDB primary with two GTID replicas, started once in
// TestMain. Tests that destroy or promote nodes start their own.
var (
	pgCluster    *rwsplittest.LocalCluster
	mariaCluster *rwsplittest.LocalCluster
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type started struct {
		c   *rwsplittest.LocalCluster
		err error
	}
	pgc, mc := make(chan started, 1), make(chan started, 1)
	go func() {
		c, err := rwsplittest.StartLocal(ctx, rwsplittest.Postgres, rwsplittest.LocalOptions{Replicas: 2, Logf: log.Printf})
		pgc <- started{c, err}
	}()
	go func() {
		c, err := rwsplittest.StartLocal(ctx, rwsplittest.MariaDB, rwsplittest.LocalOptions{Replicas: 2, Logf: log.Printf})
		mc <- started{c, err}
	}()
	pg, maria := <-pgc, <-mc
	closed := false
	closeClusters := func() {
		if closed {
			return
		}
		closed = true
		for _, c := range []*rwsplittest.LocalCluster{pg.c, maria.c} {
			if c != nil {
				if err := c.Close(); err != nil {
					log.Printf("closing cluster: %v", err)
				}
			}
		}
	}
	defer closeClusters()
	if pg.err != nil || maria.err != nil {
		log.Printf("starting clusters: postgres: %v; mariadb: %v", pg.err, maria.err)
		return 1
	}
	pgCluster, mariaCluster = pg.c, maria.c
	if err := loadFixture(ctx, pgCluster, "pg_fixture.sql"); err != nil {
		log.Printf("postgres fixture: %v", err)
		return 1
	}
	// The application user creates stored functions in some tests; with
	// binary logging on, MariaDB allows that to a user without SUPER only
	// under log_bin_trust_function_creators.
	for _, n := range mariaCluster.Nodes() {
		if _, err := n.Exec(ctx, "SET GLOBAL log_bin_trust_function_creators = 1"); err != nil {
			log.Printf("mariadb %s: %v", n.Name(), err)
			return 1
		}
	}
	if err := loadFixture(ctx, mariaCluster, "mysql_fixture.sql"); err != nil {
		log.Printf("mariadb fixture: %v", err)
		return 1
	}
	code := m.Run()
	closeClusters()
	if code == 0 {
		// Toxiproxy (the fault-injection harness, not rwsplit) can leave a
		// toxic's pipe goroutine blocked on its channel when a link is torn
		// down while bytes are in flight; every such goroutine runs under
		// ToxicStub.Run. GORM's prepared-statement cache (PrepareStmt)
		// starts an expiry goroutine that it never stops, by design (see
		// gorm.io/gorm/internal/lru). Everything else, rwsplit's
		// included, must be gone.
		if err := goleak.Find(
			goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"),
			goleak.IgnoreAnyFunction("gorm.io/gorm/internal/lru.NewLRU[...].func1"),
		); err != nil {
			log.Printf("goroutine leak: %v", err)
			return 1
		}
	}
	return code
}

// loadFixture creates the classifier corpus's schema on the primary, as
// the application user, in one multi-statement call, and waits until the
// replicas have it.
func loadFixture(ctx context.Context, c *rwsplittest.LocalCluster, file string) error {
	body, err := os.ReadFile(filepath.Join("..", "internal", "sqlclass", "testdata", file))
	if err != nil {
		return err
	}
	db, err := sql.Open(c.DriverName(), multiStatementDSN(c, c.Primary()))
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, string(body)); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return c.WaitCaughtUp(ctx, c.Primary())
}

// multiStatementDSN is a node's application DSN that accepts several
// statements in one call (pgx does without arguments; MariaDB needs
// multiStatements).
func multiStatementDSN(c *rwsplittest.LocalCluster, n *rwsplittest.LocalNode) string {
	if c.Kind() == rwsplittest.MariaDB {
		sep := "?"
		if strings.Contains(n.DSN(), "?") {
			sep = "&"
		}
		return n.DSN() + sep + "multiStatements=true"
	}
	return n.DSN()
}

// openPG returns an rwsplit handle over the shared PostgreSQL cluster.
func openPG(t *testing.T, opts ...rwsplit.Option) *rwsplit.DB {
	return openCluster(t, pgCluster, opts...)
}

// openMaria returns an rwsplit handle over the shared MariaDB cluster.
func openMaria(t *testing.T, opts ...rwsplit.Option) *rwsplit.DB {
	return openCluster(t, mariaCluster, opts...)
}

func openCluster(t testing.TB, c *rwsplittest.LocalCluster, opts ...rwsplit.Option) *rwsplit.DB {
	t.Helper()
	var replicas []string
	for _, n := range c.Replicas() {
		replicas = append(replicas, n.DSN())
	}
	db, err := rwsplit.Open(c.DriverName(), c.Primary().DSN(), replicas, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// ports maps the cluster's server ports to node names, so that a test can
// tell which server answered from inet_server_port() / @@port.
func ports(c *rwsplittest.LocalCluster) (primary int, replicas map[int]string) {
	replicas = map[int]string{}
	for _, n := range c.Replicas() {
		replicas[n.Port()] = n.Name()
	}
	return c.Primary().Port(), replicas
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
