package rwsplit

import (
	"context"
	"testing"
	"time"
)

// Without replication positions, reads go to the primary for the session
// window after a schema change, then back to the replicas.
func TestSchemaChangeHoldsReadsForTheWindow(t *testing.T) {
	c := newCluster(t, 1, WithDialect("generic"), WithNodeNames("p", "r1"), WithSessionWindow(150*time.Millisecond))
	ctx := context.Background()
	if got := served(t, ctx, c.db, "SELECT 1"); got != "r1" {
		t.Fatalf("read before any schema change served by %s", got)
	}
	if _, err := c.db.ExecContext(ctx, "CREATE TABLE notes (id int)"); err != nil {
		t.Fatal(err)
	}
	if got := served(t, ctx, c.db, "SELECT * FROM notes"); got != "p" {
		t.Errorf("read right after CREATE TABLE served by %s, want the primary", got)
	}
	if !c.db.Stats().SchemaFloor {
		t.Error("Stats does not show the floor")
	}
	waitFor(t, 5*time.Second, "reads back on the replica", func() bool {
		return served(t, ctx, c.db, "SELECT * FROM notes") == "r1"
	})
	waitFor(t, 5*time.Second, "the floor closed", func() bool { return !c.db.Stats().SchemaFloor })
	// A plain write opens no floor.
	if _, err := c.db.ExecContext(ctx, "INSERT INTO notes VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if got := served(t, ctx, c.db, "SELECT * FROM notes"); got != "r1" {
		t.Errorf("read after an INSERT served by %s", got)
	}
}

// With positions, a read goes only to a replica that has replayed the
// change; the floor closes once every replica has.
func TestSchemaChangeFloorFollowsPositions(t *testing.T) {
	c := newRoleCluster(t, "postgres", 2)
	c.primary.SetResult("pg_current_wal_insert_lsn", []string{"lsn", "tli"}, "0/100", "1")
	db := c.db
	ctx := context.Background()
	behind := []probeResult{pgWritable(0x100, 1), pgStandby(0x50, 1), pgStandby(0x50, 1)}
	playRound(t, db, behind)
	if _, err := db.ExecContext(ctx, "ALTER TABLE notes ADD COLUMN body text"); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if got := served(t, ctx, db, "SELECT body FROM notes"); got != "p" {
			t.Fatalf("read with both replicas behind the ALTER served by %s", got)
		}
	}
	playRound(t, db, []probeResult{pgWritable(0x100, 1), pgStandby(0x100, 1), pgStandby(0x50, 1)})
	for range 6 {
		if got := served(t, ctx, db, "SELECT body FROM notes"); got != "r1" {
			t.Fatalf("read with only r1 past the ALTER served by %s", got)
		}
	}
	if !db.Stats().SchemaFloor {
		t.Fatal("floor closed while r2 is behind")
	}
	playRound(t, db, []probeResult{pgWritable(0x100, 1), pgStandby(0x100, 1), pgStandby(0x100, 1)})
	if db.Stats().SchemaFloor {
		t.Error("floor still open with every replica past it")
	}
}

// While a schema change runs, reads go to the primary.
func TestSchemaChangeInFlightHoldsReads(t *testing.T) {
	c := newCluster(t, 1, WithDialect("generic"), WithNodeNames("p", "r1"))
	release := c.primary.HangOn("CREATE INDEX")
	defer release()
	done := make(chan error, 1)
	go func() {
		_, err := c.db.ExecContext(context.Background(), "CREATE INDEX i ON notes (id)")
		done <- err
	}()
	waitFor(t, 5*time.Second, "the change in flight", func() bool { return c.db.Stats().SchemaFloor })
	if got := served(t, context.Background(), c.db, "SELECT 1"); got != "p" {
		t.Errorf("read during a schema change served by %s", got)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A read that reached a replica before a schema change was known, and
// that the replica refuses for the table the change made, is re-run on
// the primary and counted.
func TestUnknownTableAfterSchemaChangeRerunsOnPrimary(t *testing.T) {
	c := newCluster(t, 1, WithDialect("generic"), WithNodeNames("p", "r1"), WithSessionWindow(time.Minute))
	served(t, context.Background(), c.db, "SELECT 1")
	release := c.replicas[0].HangOn("FROM notes")
	defer release()
	got := make(chan string, 1)
	go func() {
		var node string
		if err := c.db.QueryRowContext(context.Background(), "SELECT node FROM notes").Scan(&node); err != nil {
			node = err.Error()
		}
		got <- node
	}()
	waitFor(t, 5*time.Second, "the read on r1", func() bool { return c.replicas[0].InFlight() > 0 })
	if _, err := c.db.ExecContext(context.Background(), "CREATE TABLE notes (id int)"); err != nil {
		t.Fatal(err)
	}
	c.replicas[0].SetQueryError(stateErr("42P01"))
	release()
	if node := <-got; node != "p" {
		t.Errorf("read refused for an unknown table ended with %q, want served by the primary", node)
	}
	if n := c.db.Stats().SchemaReruns; n != 1 {
		t.Errorf("SchemaReruns = %d, want 1", n)
	}
	// Without a schema change newer than the replica, the error is the
	// caller's.
	c2 := newCluster(t, 1, WithDialect("generic"), WithNodeNames("p", "r1"))
	c2.replicas[0].SetQueryError(stateErr("42P01"))
	var node string
	if err := c2.db.QueryRowContext(context.Background(), "SELECT 1 FROM missing").Scan(&node); err == nil {
		t.Errorf("read of a missing table served by %s", node)
	}
}
