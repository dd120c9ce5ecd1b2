package integration

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/rwsplit/rwsplit"
)

// Every routing assertion here asks the server which port answered
// (@@port), never rwsplit's own counters.

func TestMariaReadsSpreadOverReplicasNeverPrimary(t *testing.T) {
	ctx := ctxTimeout(t, time.Minute)
	primary, replicas := ports(mariaCluster)
	for _, policy := range []rwsplit.Policy{rwsplit.LeastLatency(), rwsplit.RoundRobin(), rwsplit.LeastInFlight()} {
		db := openMaria(t, rwsplit.WithPolicy(policy))
		seen := concurrentPorts(t, ctx, db, "SELECT @@port", 8, 25)
		if seen[primary] != 0 {
			t.Errorf("%s: the primary served %d plain reads", db.Stats().Policy, seen[primary])
		}
		for port, name := range replicas {
			if seen[port] == 0 {
				t.Errorf("%s: replica %s served no reads (%v)", db.Stats().Policy, name, seen)
			}
		}
	}
}

func TestMariaWritesReachPrimary(t *testing.T) {
	ctx := ctxTimeout(t, time.Minute)
	primary, _ := ports(mariaCluster)
	db := openMaria(t)
	mustExec(t, ctx, db, "CREATE TABLE IF NOT EXISTS routing_maria (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
	mustExec(t, ctx, db, "CREATE SEQUENCE IF NOT EXISTS routing_maria_seq")
	mustExec(t, ctx, db, "INSERT INTO routing_maria (v) VALUES (1), (2)")

	queries := []string{
		"INSERT INTO routing_maria (v) VALUES (3) RETURNING @@port",
		"DELETE FROM routing_maria WHERE v = 3 RETURNING @@port",
		"SELECT @@port FROM routing_maria WHERE id = 1 FOR UPDATE",
		"SELECT @@port FROM routing_maria WHERE id = 1 LOCK IN SHARE MODE",
		"SELECT GET_LOCK('rwsplit', 0), RELEASE_LOCK('rwsplit'), @@port",
		"SELECT LAST_INSERT_ID(), @@port",
		"SELECT NEXTVAL(routing_maria_seq), @@port",
		"SELECT NEXT VALUE FOR routing_maria_seq, @@port",
		"SELECT COUNT(*), @@port FROM information_schema.tables",
		"SELECT /*! GET_LOCK('x', 0), RELEASE_LOCK('x'), */ @@port",
		"SELECT /*M! LAST_INSERT_ID(), */ @@port",
		"# a comment\nINSERT INTO routing_maria (v) VALUES (4) RETURNING @@port",
		"select @@port from routing_maria where id = 1 for update",
	}
	for _, q := range queries {
		rows, err := db.QueryContext(ctx, q)
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			if got := string(vals[len(vals)-1]); got != itoa(primary) {
				t.Errorf("%s ran on port %s, want the primary %d", q, got, primary)
			}
		}
		if err := rows.Err(); err != nil {
			t.Errorf("%s: %v", q, err)
		}
		rows.Close()
	}
	// Each of these fails with error 1290 on a read_only replica for the
	// application user, so success shows the primary ran it.
	for _, q := range []string{
		"INSERT INTO routing_maria (v) VALUES (5)",
		"UPDATE routing_maria SET v = 6 WHERE v = 5",
		"REPLACE INTO routing_maria (id, v) VALUES (100, 7)",
		"CREATE OR REPLACE TABLE routing_maria_tmp (x INT)",
		"DROP TABLE routing_maria_tmp",
	} {
		mustExec(t, ctx, db, q)
	}
}

func TestMariaTransactionsAndWithPrimary(t *testing.T) {
	ctx := ctxTimeout(t, time.Minute)
	primary, replicas := ports(mariaCluster)
	db := openMaria(t)
	if got := pgPort(t, rwsplit.WithPrimary(ctx), db, "SELECT @@port"); got != primary {
		t.Errorf("WithPrimary read on port %d, want the primary", got)
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if p := pgPort(t, ctx, tx, "SELECT @@port"); replicas[p] == "" {
		t.Errorf("read-only transaction on port %d, want a replica", p)
	}
	tx.Rollback()
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := pgPort(t, ctx, tx, "SELECT @@port"); p != primary {
		t.Errorf("read-write transaction on port %d, want the primary", p)
	}
	tx.Rollback()
}

// TestMariaCorpusReadsRunOnReplica runs every statement the classifier
// calls a MySQL read (and marks runnable) on each read_only replica as the
// application user: none may be refused with error 1290.
func TestMariaCorpusReadsRunOnReplica(t *testing.T) {
	ctx := ctxTimeout(t, 2*time.Minute)
	stmts := corpus(t, "mysql", "mysql")
	if len(stmts) < 40 {
		t.Fatalf("corpus has %d runnable MariaDB reads, want at least 40", len(stmts))
	}
	for _, n := range mariaCluster.Replicas() {
		h, err := sql.Open("mysql", n.DSN())
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range stmts {
			if err := drain(ctx, h, q); err != nil {
				t.Errorf("%s: %q: %v", n.Name(), q, err)
			}
		}
		h.Close()
	}
}

// TestMariaReadRejectedByReplicaIsReRun: a stored function that writes
// looks like a read; the replica refuses it (1290) and rwsplit re-runs it
// on the primary, through QueryRow and Query.
func TestMariaReadRejectedByReplicaIsReRun(t *testing.T) {
	ctx := ctxTimeout(t, time.Minute)
	primary, _ := ports(mariaCluster)
	db := openMaria(t)
	mustExec(t, ctx, db, "CREATE TABLE IF NOT EXISTS audit_maria (at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)")
	mustExec(t, ctx, db, `CREATE OR REPLACE FUNCTION audited_port() RETURNS INT DETERMINISTIC MODIFIES SQL DATA
BEGIN
	INSERT INTO audit_maria () VALUES ();
	RETURN @@port;
END`)
	if err := mariaCluster.WaitCaughtUp(ctx, mariaCluster.Primary()); err != nil {
		t.Fatal(err)
	}
	// The schema changes above keep reads on the primary until the probes
	// see the replicas past them; the refusal under test is a replica's.
	if _, ok := waitFor(10*time.Second, func() bool { return !db.Stats().SchemaFloor }); !ok {
		t.Fatalf("schema floor still open:\n%s", db.Stats())
	}
	// The replica itself refuses it, as in production.
	rep, err := sql.Open("mysql", mariaCluster.Replicas()[0].DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	var me *mysql.MySQLError
	if err := rep.QueryRowContext(ctx, "SELECT audited_port()").Scan(new(int)); !errors.As(err, &me) || me.Number != 1290 {
		t.Fatalf("replica ran a writing function: %v", err)
	}

	for range 5 {
		if p := pgPort(t, ctx, db, "SELECT audited_port()"); p != primary {
			t.Errorf("writing function ran on port %d, want the primary", p)
		}
		rows, err := db.QueryContext(ctx, "SELECT audited_port()")
		if err != nil {
			t.Fatalf("Query: %v", err)
		}
		rows.Close()
	}
	var retries uint64
	for _, n := range db.Stats().Nodes {
		retries += n.ReadOnlyRetries
	}
	if retries != 10 {
		t.Errorf("Stats counts %d read-only retries, want 10", retries)
	}
}

func TestMariaOpenErrorsDoNotLeak(t *testing.T) {
	const secret = "pw-must-not-leak"
	for _, dsn := range []string{
		"app:" + secret + "@tcp(127.0.0.1:3306/app",
		"app:" + secret + "@tcp(127.0.0.1:3306)/app?parseTime=maybe",
	} {
		_, err := rwsplit.Open("mysql", dsn, nil)
		if err == nil {
			t.Errorf("Open accepted a malformed DSN")
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Open error leaks the password: %v", err)
		}
	}
	db := openMaria(t)
	if s := db.Stats(); s.Nodes[0].Name != mariaCluster.Primary().Addr() {
		t.Errorf("primary named %q, want %q", s.Nodes[0].Name, mariaCluster.Primary().Addr())
	}
	// go-sql-driver/mysql serves MySQL and MariaDB; the first probe tells
	// which from the server's version.
	deadline := time.Now().Add(10 * time.Second)
	for db.Stats().Dialect != "mariadb" {
		if time.Now().After(deadline) {
			t.Fatalf("dialect still %q, want mariadb", db.Stats().Dialect)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}

var _ = context.Background
