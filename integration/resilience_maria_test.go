package integration

import (
	"database/sql"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// mariaResilienceQuery returns the serving server's port (SLEEP returns
// 0). It sleeps a few milliseconds so that, under load, reads are in
// flight when a node dies.
const mariaResilienceQuery = "SELECT @@port + SLEEP(0.005)"

// TestResilienceMaria runs the MariaDB scenarios on one cluster of its
// own whose first replica applies the primary's transactions 2s late
// (MASTER_DELAY=2) and whose second replica has no delay.
func TestResilienceMaria(t *testing.T) {
	const applyDelay = 2 * time.Second
	c := startOwnCluster(t, rwsplittest.MariaDB, rwsplittest.LocalOptions{Replicas: 2, ApplyDelay: []time.Duration{applyDelay}})
	ctx := ctxTimeout(t, time.Minute)
	if _, err := c.Primary().ExecAs(ctx, rwsplittest.AppUser, rwsplittest.AppPassword,
		"CREATE TABLE lag_maria (id BIGINT AUTO_INCREMENT PRIMARY KEY, ts TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitCaughtUp(ctx, c.Primary()); err != nil {
		t.Fatal(err)
	}

	// The application's user may not read SHOW REPLICA STATUS; the probes
	// get the monitoring user's handles. Dialect as detected from the
	// driver, as an application would run it.
	t.Run("LagViaMonitor", func(t *testing.T) { mariaLagViaMonitor(t, c, applyDelay) })
	// The same with the dialect named explicitly: it separates a wrong
	// dialect (the probe of the mysql dialect asks @@gtid_executed, which
	// MariaDB lacks) from a wrong lag once the probes can read it.
	t.Run("LagViaMonitorMariaDBDialect", func(t *testing.T) {
		mariaLagViaMonitor(t, c, applyDelay, rwsplit.WithDialect("mariadb"))
	})
	// The replica without delay crashes under load; reads move to the
	// delayed one (no lag bound here).
	t.Run("ReplicaCrashUnderLoad", func(t *testing.T) {
		replicaCrashUnderLoad(t, c, c.Replicas()[1], mariaResilienceQuery, rwsplit.LeastLatency())
	})
	t.Run("FrozenReplicaUnderLoadHedged", func(t *testing.T) {
		frozenReplicaUnderLoadHedged(t, c, c.Replicas()[1], mariaResilienceQuery)
	})
}

// mariaLagViaMonitor: under a steady trickle of writes the delayed replica
// is further behind than WithMaxReplicationLag(1s) and gets no reads, with
// its lag known in Stats; after the writes stop it is eligible again and
// serves reads. The probes use the monitoring user's handles.
func mariaLagViaMonitor(t *testing.T, c *rwsplittest.LocalCluster, applyDelay time.Duration, opts ...rwsplit.Option) {
	healOnCleanup(t, c)
	s := lagScenario{
		c:          c,
		delayed:    c.Replicas()[0],
		prompt:     c.Replicas()[1],
		applyDelay: applyDelay,
		maxLag:     time.Second,
		insert:     "INSERT INTO lag_maria () VALUES ()",
		staleQuery: "SELECT @@port, TIMESTAMPDIFF(MICROSECOND, MAX(ts), NOW(6)) FROM lag_maria",
		portQuery:  mariaResilienceQuery,
	}
	monitors := make([]*sql.DB, 0, len(c.Nodes()))
	for _, n := range c.Nodes() {
		m, err := sql.Open("mysql", n.MonitorDSN())
		if err != nil {
			for _, m := range monitors {
				m.Close()
			}
			t.Fatalf("open the monitor handle of %s: %v", n.Name(), err)
		}
		monitors = append(monitors, m)
	}
	opts = append(opts, rwsplit.WithMonitor(monitors[0], monitors[1:]...), rwsplit.WithMaxReplicationLag(s.maxLag),
		rwsplit.WithHealthCheckInterval(fastInterval), rwsplit.WithPolicy(rwsplit.RoundRobin()))
	s.db = openCluster(t, c, opts...)
	t.Logf("dialect %s", s.db.Stats().Dialect)
	checkLagBound(t, s)
}
