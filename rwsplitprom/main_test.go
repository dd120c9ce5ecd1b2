package rwsplitprom_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"

	"github.com/rwsplit/rwsplit/rwsplittest"
)

// server is one of the package's clusters, started once in TestMain from
// the binaries installed on the machine (rwsplittest's local backend):
// a primary (node 0) and two replicas. Tests ask the server which node
// answered (portQuery), never the collector.
type server struct {
	name      string
	c         *rwsplittest.Cluster
	portQuery string // the port of the server that runs it
	insert    string // a write that records the port of the server that runs it in prom_writes
	nodes     map[int]string
}

var servers []*server

// node returns the name rwsplit gives the node that listens on port.
func (s *server) node(port int) string {
	if n, ok := s.nodes[port]; ok {
		return n
	}
	return fmt.Sprintf("unknown port %d", port)
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	specs := []struct {
		name, portQuery, insert string
		start                   func(context.Context, ...rwsplittest.Option) (*rwsplittest.Cluster, error)
	}{
		{"postgres", "SELECT inet_server_port()", "INSERT INTO prom_writes (port) SELECT inet_server_port()", rwsplittest.StartPostgres},
		{"mariadb", "SELECT @@port", "INSERT INTO prom_writes (port) SELECT @@port", rwsplittest.StartMariaDB},
	}
	type started struct {
		c   *rwsplittest.Cluster
		err error
	}
	results := make([]chan started, len(specs))
	for i, sp := range specs {
		results[i] = make(chan started, 1)
		go func() {
			c, err := sp.start(ctx)
			results[i] <- started{c, err}
		}()
	}
	failed := false
	for i, sp := range specs {
		r := <-results[i]
		if r.err != nil {
			log.Printf("starting the %s cluster: %v", sp.name, r.err)
			failed = true
			continue
		}
		defer r.c.Close()
		s := &server{name: sp.name, c: r.c, portQuery: sp.portQuery, insert: sp.insert, nodes: map[int]string{}}
		for n := range r.c.Nodes() {
			_, p, err := net.SplitHostPort(r.c.Addr(n))
			port, perr := strconv.Atoi(p)
			if err != nil || perr != nil {
				log.Printf("%s node %d: address %q", sp.name, n, r.c.Addr(n))
				failed = true
			}
			s.nodes[port] = r.c.Addr(n)
		}
		if err := createTable(ctx, s); err != nil {
			log.Printf("%s: %v", sp.name, err)
			failed = true
		}
		servers = append(servers, s)
	}
	if failed {
		return 1
	}
	code := m.Run()
	for _, s := range servers {
		if err := s.c.Close(); err != nil {
			log.Printf("closing the %s cluster: %v", s.name, err)
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			log.Printf("goroutine leak: %v", err)
			return 1
		}
	}
	return code
}

// createTable creates prom_writes on the primary, directly.
func createTable(ctx context.Context, s *server) error {
	db, err := sql.Open(s.c.DriverName(), s.c.DSN(0))
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, "CREATE TABLE prom_writes (port int)")
	return err
}

// forEachServer runs test on every cluster, in parallel.
func forEachServer(t *testing.T, test func(t *testing.T, s *server)) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			test(t, s)
		})
	}
}
