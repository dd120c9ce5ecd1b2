package integration

import (
	"testing"
	"time"

	"github.com/rwsplit/rwsplit/internal/testcluster"
)

// What a new user meets with default options, asked of the servers.

// Replicas of about the same speed share reads, even one call at a time:
// each of two gets at least 20% of 200 serial reads.
func TestDefaultPolicySpreadsSerialReads(t *testing.T) {
	for _, tc := range []struct {
		name  string
		c     func() *testcluster.Cluster
		query string
	}{
		{"postgres", func() *testcluster.Cluster { return pgCluster }, "SELECT inet_server_port()"},
		{"mariadb", func() *testcluster.Cluster { return mariaCluster }, "SELECT @@port"},
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
			for port, name := range replicas {
				if seen[port] < 40 {
					t.Errorf("replica %s served %d of 200 serial reads, want at least 40 (%v)\n%s", name, seen[port], seen, db.Stats())
				}
			}
		})
	}
}
