// Command quickstart shows rwsplit routing over a real cluster: which node
// serves each write, read, transaction and forced-primary read, and the
// Stats table.
//
// With RWSPLIT_PRIMARY unset it starts a local PostgreSQL primary with two
// streaming replicas in a temporary directory (the server binaries come
// from `make deps`) and stops them at the end. Otherwise it uses
// RWSPLIT_PRIMARY and the comma-separated RWSPLIT_REPLICAS, with the
// database/sql driver RWSPLIT_DRIVER ("pgx", the default, or "mysql").
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// lag is how far behind the local cluster's replicas replay, so that
// read-your-writes has something to do.
const lag = 500 * time.Millisecond

func main() {
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		log.Printf("quickstart: %v", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	driver := envOr("RWSPLIT_DRIVER", "pgx")
	primaryDSN := os.Getenv("RWSPLIT_PRIMARY")
	var replicaDSNs []string
	if r := os.Getenv("RWSPLIT_REPLICAS"); r != "" {
		replicaDSNs = strings.Split(r, ",")
	}
	var local *rwsplittest.Cluster
	if primaryDSN == "" {
		fmt.Println("Starting a local PostgreSQL primary with 2 streaming replicas, replaying 500ms behind...")
		start := time.Now()
		c, err := rwsplittest.StartPostgres(ctx, rwsplittest.WithReplicaDelay(lag))
		if err != nil {
			return err
		}
		local = c
		defer func() {
			c.Close()
			fmt.Println("\nLocal cluster stopped and removed.")
		}()
		fmt.Printf("Cluster up in %s:\n", time.Since(start).Round(100*time.Millisecond))
		for i := range c.Nodes() {
			role := "replica"
			if i == 0 {
				role = "primary"
			}
			fmt.Printf("  %-8s %s\n", role, c.Addr(i))
		}
		driver, primaryDSN = c.DriverName(), c.DSN(0)
		for i := 1; i < c.Nodes(); i++ {
			replicaDSNs = append(replicaDSNs, c.DSN(i))
		}
	}

	db, err := rwsplit.Open(driver, primaryDSN, replicaDSNs)
	if err != nil {
		return err
	}
	defer db.Close()
	d := demo{db: db, whoami: "SELECT inet_server_port()", table: "CREATE TABLE IF NOT EXISTS quickstart (id serial PRIMARY KEY, name text)",
		insert: "INSERT INTO quickstart (name) VALUES ($1) RETURNING id", byID: "SELECT name, inet_server_port() FROM quickstart WHERE id = $1"}
	if driver == "mysql" {
		d.whoami = "SELECT @@port"
		d.table = "CREATE TABLE IF NOT EXISTS quickstart (id INT AUTO_INCREMENT PRIMARY KEY, name TEXT)"
		d.insert = "INSERT INTO quickstart (name) VALUES (?) RETURNING id"
		d.byID = "SELECT name, @@port FROM quickstart WHERE id = ?"
	}
	if err := d.run(ctx); err != nil {
		return err
	}
	if local != nil {
		return d.failover(ctx, local)
	}
	return nil
}

// failover crashes the local primary, promotes a replica and shows writes
// going on through the same handle.
func (d demo) failover(ctx context.Context, c *rwsplittest.Cluster) error {
	db := d.db
	fmt.Println("\n8. Failover: the primary crashes, a replica is promoted, writes go on")
	write := func() (string, error) {
		var id int64
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		err := db.QueryRowContext(wctx, d.insert, "after failover").Scan(&id)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("row %d written on %s", id, d.primaryName()), nil
	}
	if w, err := write(); err == nil {
		fmt.Printf("   before: %s\n", w)
	}
	if err := c.Crash(ctx, 0); err != nil {
		return err
	}
	crashed := time.Now()
	fmt.Printf("   crashed the primary %s (SIGKILL)\n", c.Addr(0))
	if _, err := write(); err != nil {
		fmt.Printf("   a write right after: %v\n", err)
	}
	if err := c.Promote(ctx, 1); err != nil {
		return err
	}
	fmt.Printf("   promoted %s with pg_promote(), the other replica following it (%v after the crash)\n", c.Addr(1), time.Since(crashed).Round(time.Millisecond))
	for {
		w, err := write()
		if err == nil {
			fmt.Printf("   %v after the crash: %s\n", time.Since(crashed).Round(time.Millisecond), w)
			break
		}
		if time.Since(crashed) > 30*time.Second {
			return fmt.Errorf("writes did not resume: %w", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var port string
	if err := db.QueryRowContext(ctx, d.whoami).Scan(&port); err != nil {
		return err
	}
	fmt.Printf("   a read meanwhile                                  -> %s\n", d.node(port))
	fmt.Print(indent(db.Stats().String(), "   "))
	return nil
}

// primaryName names the node rwsplit writes to now.
func (d demo) primaryName() string {
	for _, n := range d.db.Stats().Nodes {
		if n.Role == rwsplit.RolePrimary {
			return n.Name
		}
	}
	return "?"
}

type demo struct {
	db     *rwsplit.DB
	whoami string // asks the server for its port
	table  string
	insert string // a name; returns the new id
	byID   string // the name and server port of one id
}

func (d demo) run(ctx context.Context) error {
	db := d.db
	if err := db.PingContext(ctx); err != nil {
		return err
	}
	fmt.Println("\n1. Writes go to the primary")
	// A write concern: the table is on every replica when Exec returns.
	all := rwsplit.WithWriteConcern(ctx, rwsplit.WriteConcern{Replicas: rwsplit.AllReplicas, Timeout: 30 * time.Second})
	start := time.Now()
	if _, err := db.ExecContext(all, d.table); err != nil {
		return err
	}
	fmt.Printf("   Exec  CREATE TABLE, write concern: all replicas    -> primary; every replica had it after %v\n", time.Since(start).Round(time.Millisecond))
	res, err := db.ExecContext(ctx, "INSERT INTO quickstart (name) VALUES ('ada'), ('grace')")
	if err != nil {
		return err
	}
	n, _ := res.RowsAffected()
	fmt.Printf("   Exec  INSERT ... (%d rows)                          -> primary (Exec always is)\n", n)
	d.show(ctx, "   Query INSERT ... RETURNING <server port>          ", "INSERT INTO quickstart (name) VALUES ('alan') RETURNING "+strings.TrimPrefix(d.whoami, "SELECT "))

	fmt.Println("\n2. Pure reads go to the replicas")
	for range 6 {
		d.show(ctx, "   Query SELECT <server port>                        ", d.whoami)
	}
	fmt.Println("   (the default policy, LeastLatency, takes replicas of one speed in turn)")

	fmt.Println("\n3. Reads that lock or have side effects stay on the primary")
	d.show(ctx, "   Query SELECT ... FOR UPDATE                       ", d.whoami+" FROM quickstart WHERE id = 1 FOR UPDATE")
	d.show(ctx, "   Query SELECT ... FROM information_schema          ", d.whoami+" FROM information_schema.tables LIMIT 1")

	fmt.Println("\n4. Transactions: read-only ones on a replica, the rest on the primary")
	for _, tc := range []struct {
		label string
		opts  *sql.TxOptions
	}{
		{"   BeginTx ReadOnly                                  ", &sql.TxOptions{ReadOnly: true}},
		{"   BeginTx ReadOnly, Serializable                    ", &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelSerializable}},
		{"   BeginTx (read-write)                              ", nil},
	} {
		tx, err := db.BeginTx(ctx, tc.opts)
		if err != nil {
			return err
		}
		var port string
		err = tx.QueryRowContext(ctx, d.whoami).Scan(&port)
		tx.Rollback()
		if err != nil {
			return err
		}
		fmt.Printf("%s-> %s\n", tc.label, d.node(port))
	}

	fmt.Println("\n5. WithPrimary(ctx) sends a read to the primary")
	d.show(rwsplit.WithPrimary(ctx), "   Query SELECT <server port> with WithPrimary       ", d.whoami)

	if err := d.readYourWrites(ctx); err != nil {
		return err
	}

	fmt.Println("\n7. db.Stats()")
	fmt.Print(indent(db.Stats().String(), "   "))
	return nil
}

// readYourWrites shows a session reading its own writes from lagging
// replicas, and a token carrying the session to another request.
func (d demo) readYourWrites(ctx context.Context) error {
	db := d.db
	fmt.Println("\n6. Read-your-writes: a Session sees its own writes, replicas lagging")
	var id int64
	if err := db.QueryRowContext(ctx, d.insert, "no session").Scan(&id); err != nil {
		return err
	}
	fmt.Printf("   without a session: insert row %d, read it at once       -> %s\n", id, d.lookup(ctx, id))

	s := rwsplit.NewSession()
	sctx := rwsplit.WithSession(ctx, s)
	if err := db.RunInTx(sctx, nil, func(tx *sql.Tx) error {
		return tx.QueryRowContext(sctx, d.insert, "with a session").Scan(&id)
	}); err != nil {
		return err
	}
	fmt.Printf("   with a session: insert row %d (RunInTx), read it at once -> %s\n", id, d.lookup(sctx, id))
	fmt.Printf("   ... %v later, when the replicas have replayed it        -> ", 2*lag)
	time.Sleep(2 * lag)
	fmt.Println(d.lookup(sctx, id))
	token := s.Token()
	resumed, err := rwsplit.ResumeSession(token)
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(sctx, "UPDATE quickstart SET name = 'renamed' WHERE id = 1"); err != nil {
		return err
	}
	token = s.Token()
	if resumed, err = rwsplit.ResumeSession(token); err != nil {
		return err
	}
	var name, port string
	if err := db.QueryRowContext(rwsplit.WithSession(ctx, resumed), "SELECT name, "+strings.TrimPrefix(d.whoami, "SELECT ")+" FROM quickstart WHERE id = 1").Scan(&name, &port); err != nil {
		return err
	}
	fmt.Printf("   token %q (%d chars) carried to another request:\n", token, len(token))
	fmt.Printf("     after an UPDATE, the resumed session reads name = %q  -> %s\n", name, d.node(port))
	return nil
}

// lookup reads row id and says whether it was found, and where.
func (d demo) lookup(ctx context.Context, id int64) string {
	var name, port string
	err := d.db.QueryRowContext(ctx, d.byID, id).Scan(&name, &port)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "NOT FOUND (a replica that has not replayed it yet)"
	case err != nil:
		return "error: " + err.Error()
	}
	return fmt.Sprintf("found, on %s", d.node(port))
}

// show runs a query returning the serving server's port and prints which
// node that is.
func (d demo) show(ctx context.Context, label, query string) {
	var port string
	if err := d.db.QueryRowContext(ctx, query).Scan(&port); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			fmt.Printf("%s-> (no row)\n", label)
			return
		}
		fmt.Printf("%s-> error: %v\n", label, err)
		return
	}
	fmt.Printf("%s-> %s\n", label, d.node(port))
}

// node names the node listening on port, as Stats names it.
func (d demo) node(port string) string {
	for _, n := range d.db.Stats().Nodes {
		if strings.HasSuffix(n.Name, ":"+port) {
			return fmt.Sprintf("%s %s", n.Role, n.Name)
		}
	}
	return "port " + port
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString(prefix + l)
		}
	}
	return b.String()
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
