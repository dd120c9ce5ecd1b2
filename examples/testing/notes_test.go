package notes_test

import (
	"context"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rwsplit/rwsplit"
	notes "github.com/rwsplit/rwsplit/examples/testing"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

func TestNotes(t *testing.T) {
	// A primary and two replicas that apply changes 200ms late: in
	// containers from postgres:15, or from local binaries with
	// RWSPLITTEST_BACKEND=local. Closed when the test ends.
	c := rwsplittest.Run(t, "postgres:15", rwsplittest.WithReplicaDelay(200*time.Millisecond))
	db, err := c.Open(rwsplit.WithHealthCheckInterval(200 * time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	svc, err := notes.New(ctx, db)
	require.NoError(t, err)

	t.Run("a request reads its own write", func(t *testing.T) {
		req := rwsplit.WithSession(ctx, rwsplit.NewSession())
		id, err := svc.Add(req, "hello")
		require.NoError(t, err)
		body, err := svc.Get(req, id)
		require.NoError(t, err)
		assert.Equal(t, "hello", body)
	})

	t.Run("keeps answering while a replica hangs", func(t *testing.T) {
		require.NoError(t, c.Freeze(ctx, 1))
		defer c.Thaw(ctx, 1)
		for range 20 {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := svc.Count(rctx)
			cancel()
			assert.NoError(t, err)
		}
	})
}
