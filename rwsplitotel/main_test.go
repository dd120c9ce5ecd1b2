package rwsplitotel_test

import (
	"context"
	"log"
	"os"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"

	"github.com/rwsplit/rwsplit/rwsplittest"
)

// The package's clusters, from the local server binaries (no Docker): a
// PostgreSQL primary with two streaming replicas and a MariaDB primary
// with two GTID replicas, started once for every test.
var (
	pgCluster    *rwsplittest.Cluster
	mariaCluster *rwsplittest.Cluster
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type started struct {
		c   *rwsplittest.Cluster
		err error
	}
	pgc, mc := make(chan started, 1), make(chan started, 1)
	go func() {
		c, err := rwsplittest.StartPostgres(ctx, rwsplittest.WithReplicas(2))
		pgc <- started{c, err}
	}()
	go func() {
		c, err := rwsplittest.StartMariaDB(ctx, rwsplittest.WithReplicas(2))
		mc <- started{c, err}
	}()
	pg, maria := <-pgc, <-mc
	closeAll := func() {
		for _, c := range []*rwsplittest.Cluster{pg.c, maria.c} {
			if c != nil {
				if err := c.Close(); err != nil {
					log.Printf("closing cluster: %v", err)
				}
			}
		}
	}
	if pg.err != nil || maria.err != nil {
		closeAll()
		log.Printf("starting clusters: postgres: %v; mariadb: %v", pg.err, maria.err)
		return 1
	}
	pgCluster, mariaCluster = pg.c, maria.c
	code := m.Run()
	closeAll()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			log.Printf("goroutine leak: %v", err)
			return 1
		}
	}
	return code
}
