package integration

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplitmysql"
	"github.com/rwsplit/rwsplit/rwsplitpgx"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// What a new user meets with default options, asked of the servers.

// Replicas of about the same speed share reads, even one call at a time:
// each of two gets at least 20% of 200 serial reads.
func TestDefaultPolicySpreadsSerialReads(t *testing.T) {
	for _, tc := range []struct {
		name  string
		c     func() *rwsplittest.LocalCluster
		query string
	}{
		{"postgres", func() *rwsplittest.LocalCluster { return pgCluster }, "SELECT inet_server_port()"},
		{"mariadb", func() *rwsplittest.LocalCluster { return mariaCluster }, "SELECT @@port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxTimeout(t, time.Minute)
			c := tc.c()
			db := openCluster(t, c)
			primary, replicas := ports(c)
			seen := map[int]int{}
			for range 200 {
				seen[pgPort(t, ctx, db, tc.query)]++
			}
			if seen[primary] != 0 {
				t.Errorf("the primary served %d reads", seen[primary])
			}
			var shares []string
			for port, name := range replicas {
				shares = append(shares, fmt.Sprintf("%s %d", name, seen[port]))
			}
			sort.Strings(shares)
			t.Logf("measured: 200 serial reads: %s", strings.Join(shares, ", "))
			for port, name := range replicas {
				if seen[port] < 40 {
					t.Errorf("replica %s served %d of 200 serial reads, want at least 40 (%v)\n%s", name, seen[port], seen, db.Stats())
				}
			}
		})
	}
}

// A hung replica (every process of its server stopped, as a hung host or a
// silent network drop) costs no read under the default options plus a
// 200ms health interval, opened with the driver module that tracks
// connections: 8 readers with 2s deadlines, one replica frozen; no read
// fails, and no read that starts a second after the freeze takes over
// 250ms. Then the primary frozen under a write: the write ends with an
// error within the detection time, and is not retried.
func TestDefaultsHungNodes(t *testing.T) {
	for _, kind := range []rwsplittest.Kind{rwsplittest.Postgres, rwsplittest.MariaDB} {
		t.Run(fmt.Sprint(kind), func(t *testing.T) {
			t.Parallel()
			c := startOwnCluster(t, kind, rwsplittest.LocalOptions{Replicas: 2})
			healOnCleanup(t, c)
			var replicas []string
			for _, n := range c.Replicas() {
				replicas = append(replicas, n.DSN())
			}
			open, query, insert := rwsplitpgx.Open, "SELECT inet_server_port()", "INSERT INTO hung_writes VALUES (1)"
			if kind == rwsplittest.MariaDB {
				open, query = rwsplitmysql.Open, "SELECT @@port"
			}
			db, err := open(c.Primary().DSN(), replicas, rwsplit.WithHealthCheckInterval(200*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.SetMaxIdleConns(16)
			if _, ok := waitFor(10*time.Second, func() bool { return db.Stats().Eligible == 2 }); !ok {
				t.Fatalf("replicas not eligible:\n%s", db.Stats())
			}
			victim := c.Replicas()[0]

			type read struct {
				start, took time.Duration
				err         error
			}
			var mu sync.Mutex
			var reads []read
			begin := time.Now()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
						s := time.Now()
						var port int
						err := db.QueryRowContext(ctx, query).Scan(&port)
						cancel()
						mu.Lock()
						reads = append(reads, read{start: s.Sub(begin), took: time.Since(s), err: err})
						mu.Unlock()
					}
				})
			}
			time.Sleep(500 * time.Millisecond)
			frozenAt := time.Since(begin)
			if err := victim.Freeze(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			close(stop)
			wg.Wait()
			if err := victim.Thaw(); err != nil {
				t.Fatal(err)
			}
			failed, late := 0, 0
			var slowestLate, slowest time.Duration
			for _, r := range reads {
				if r.err != nil {
					failed++
					t.Errorf("read started %v after the freeze failed: %v", r.start-frozenAt, r.err)
				}
				slowest = max(slowest, r.took)
				if r.start >= frozenAt+time.Second {
					late++
					slowestLate = max(slowestLate, r.took)
				}
			}
			t.Logf("%v: %d reads, %d failed; slowest %v; %d started a second or more after the freeze, the slowest of them %v\n%s",
				kind, len(reads), failed, slowest.Round(time.Millisecond), late, slowestLate.Round(time.Millisecond), db.Stats())
			if slowestLate > 250*time.Millisecond {
				t.Errorf("a read started a second after the freeze took %v, want at most 250ms", slowestLate)
			}

			// The primary frozen under a write.
			if _, ok := waitFor(10*time.Second, func() bool { return db.Stats().Eligible == 2 }); !ok {
				t.Fatalf("the thawed replica did not return:\n%s", db.Stats())
			}
			if _, err := db.Exec("CREATE TABLE IF NOT EXISTS hung_writes (id int)"); err != nil {
				t.Fatal(err)
			}
			release := make(chan struct{})
			go func() {
				<-release
				time.Sleep(50 * time.Millisecond)
				c.Primary().Freeze()
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			writes := 0
			var werr error
			start := time.Now()
			close(release)
			for werr == nil && time.Since(start) < 15*time.Second {
				_, werr = db.ExecContext(ctx, insert)
				writes++
			}
			took := time.Since(start)
			c.Primary().Thaw()
			t.Logf("%v: the primary frozen under writes: the write in flight ended after %v with: %v", kind, took.Round(time.Millisecond), werr)
			if werr == nil || ctx.Err() != nil || took > 5*time.Second {
				t.Errorf("a write in flight on the frozen primary ended after %v with %v; want an error within the detection time", took, werr)
			}
		})
	}
}
