package rwsplit

import (
	"context"
	"database/sql"
	"testing"

	"github.com/rwsplit/rwsplit/internal/fakedriver"
)

// A write concern that asks for a negative number of replicas (other than
// AllReplicas) is refused before the write is sent.
func TestWriteConcernRejectsNegativeReplicas(t *testing.T) {
	c := newCluster(t, 1)
	ctx := WithWriteConcern(context.Background(), WriteConcern{Replicas: -5})
	if _, err := c.db.ExecContext(ctx, "UPDATE t SET x = 1"); err == nil {
		t.Error("ExecContext with WriteConcern{Replicas: -5} succeeded")
	}
	if err := c.db.RunInTx(ctx, nil, func(*sql.Tx) error { return nil }); err == nil {
		t.Error("RunInTx with WriteConcern{Replicas: -5} succeeded")
	}
	if n := c.primary.Count(fakedriver.Exec) + c.primary.Count(fakedriver.Begin); n != 0 {
		t.Errorf("the primary ran %d statements of writes with a bad write concern", n)
	}
}
