package integration

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// Sessions keep reading their own writes while the node set changes under
// them: a replica that applies changes 700ms late joins (plain reads go
// to it; session reads, which cannot wait that long, do not), and the
// replica the sessions were reading from leaves (their reads then go to
// the primary). Every session read is checked against the row the session
// wrote just before, on the server that answered.
func TestFleetSessionsAcrossNodeChanges(t *testing.T) {
	c := startOwnCluster(t, rwsplittest.Postgres, rwsplittest.LocalOptions{
		Replicas:   2,
		ApplyDelay: []time.Duration{0, 700 * time.Millisecond},
	})
	prompt, lagging := c.Replicas()[0], c.Replicas()[1]
	db, err := rwsplit.Open("pgx", c.Primary().DSN(), []string{prompt.DSN()},
		rwsplit.WithHealthCheckInterval(100*time.Millisecond), rwsplit.WithSlowStart(0),
		rwsplit.WithSessionWait(20*time.Millisecond))
	require.NoError(t, err)
	defer db.Close()
	ctx := context.Background()
	_, err = db.ExecContext(ctx, `CREATE TABLE fleet_sessions (id bigint PRIMARY KEY)`)
	require.NoError(t, err)

	var next, stale, failed, onLagging, onPrompt, onPrimary atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				sctx := rwsplit.WithSession(ctx, rwsplit.NewSession())
				id := next.Add(1)
				if _, err := db.ExecContext(sctx, `INSERT INTO fleet_sessions VALUES ($1)`, id); err != nil {
					failed.Add(1)
					continue
				}
				var found bool
				var port int
				err := db.QueryRowContext(sctx, `SELECT EXISTS (SELECT 1 FROM fleet_sessions WHERE id = $1), inet_server_port()`, id).Scan(&found, &port)
				switch {
				case err != nil:
					failed.Add(1)
				case !found:
					stale.Add(1)
				case port == lagging.Port():
					onLagging.Add(1)
				case port == prompt.Port():
					onPrompt.Add(1)
				case port == c.Primary().Port():
					onPrimary.Add(1)
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	h, err := sql.Open("pgx", lagging.DSN())
	require.NoError(t, err)
	require.NoError(t, db.AddNode(ctx, rwsplit.NodeSpec{Name: lagging.Addr(), DB: h}))
	time.Sleep(time.Second)
	plain := map[int]int{}
	for range 40 {
		var port int
		require.NoError(t, db.QueryRowContext(ctx, `SELECT inet_server_port()`).Scan(&port))
		plain[port]++
	}
	require.NoError(t, db.RemoveNode(ctx, prompt.Addr()))
	primaryBefore := onPrimary.Load()
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	t.Logf("session reads: %d on the prompt replica, %d on the lagging one, %d on the primary (%d after the prompt replica left), %d stale, %d failed; plain reads after the lagging replica joined, by port: %v",
		onPrompt.Load(), onLagging.Load(), onPrimary.Load(), onPrimary.Load()-primaryBefore, stale.Load(), failed.Load(), plain)
	assert.Zero(t, stale.Load(), "session reads that missed their own write")
	assert.Zero(t, failed.Load(), "failed calls")
	assert.Positive(t, onPrompt.Load(), "no session read on the prompt replica")
	assert.Positive(t, plain[lagging.Port()], "no plain read on the replica that joined")
	assert.Positive(t, onPrimary.Load()-primaryBefore, "no session read on the primary after the prompt replica left")
}
