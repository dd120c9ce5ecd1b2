// Command orm shows GORM, sqlx and bun on one rwsplit DB over a local
// PostgreSQL primary with two streaming replicas: migrations followed at
// once by reads, writes on the primary, reads on the replicas,
// transactions on the primary, a prepared read on a replica, and a
// session that reads its own write. Every line names the node that ran
// the statement, as the server reports it (inet_server_port()).
//
// GORM takes the *rwsplit.DB itself as its connection pool; sqlx and bun
// take the DB's routing *sql.DB, sql.OpenDB(db.Connector()).
package main

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// lag is how far behind the replicas replay.
const lag = 200 * time.Millisecond

func main() {
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		log.Printf("orm: %v", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	fmt.Printf("Starting a local PostgreSQL primary with 2 streaming replicas, replaying %v behind...\n", lag)
	c, err := rwsplittest.StartPostgres(ctx, rwsplittest.WithReplicaDelay(lag))
	if err != nil {
		return err
	}
	defer func() {
		c.Close()
		fmt.Println("\nLocal cluster stopped and removed.")
	}()
	names := map[int]string{}
	var replicas []string
	for i := range c.Nodes() {
		_, port, _ := net.SplitHostPort(c.Addr(i))
		p, _ := strconv.Atoi(port)
		names[p] = "primary"
		if i > 0 {
			names[p] = fmt.Sprintf("replica %d", i)
			replicas = append(replicas, c.DSN(i))
		}
	}
	db, err := rwsplit.Open(c.DriverName(), c.DSN(0), replicas)
	if err != nil {
		return err
	}
	defer db.Close()
	routed := sql.OpenDB(db.Connector())
	routed.SetMaxIdleConns(16)
	defer routed.Close()

	ex := example{ctx: ctx, names: names}
	ex.gorm(db)
	ex.sqlx(routed)
	ex.bun(routed)
	return ex.err
}

type example struct {
	ctx   context.Context
	names map[int]string
	err   error
}

// show prints what ran where, or keeps the first error.
func (e *example) show(what string, port int, err error) {
	if err != nil {
		if e.err == nil {
			e.err = fmt.Errorf("%s: %w", what, err)
		}
		fmt.Printf("   %-46s FAILED: %v\n", what, err)
		return
	}
	where := e.names[port]
	if port == 0 {
		where = "done"
	}
	fmt.Printf("   %-46s %s\n", what, where)
}

// onReplica retries read until a replica serves it: after a migration,
// reads go to the primary until a replica has replayed it.
func (e *example) onReplica(read func() (int, error)) (int, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		port, err := read()
		if err == nil && e.names[port] != "primary" || time.Now().After(deadline) {
			return port, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type note struct {
	ID        uint `gorm:"primaryKey"`
	Body      string
	WrittenBy int `gorm:"default:inet_server_port()"` // set by the server that ran the INSERT
}

type noteServed struct {
	ID   uint
	Body string
	Port int
}

func (e *example) gorm(db *rwsplit.DB) {
	fmt.Println("\nGORM, with the *rwsplit.DB as its connection pool")
	g, err := gorm.Open(postgres.New(postgres.Config{Conn: db}), &gorm.Config{Logger: logger.Discard, PrepareStmt: true})
	if err != nil {
		e.show("gorm.Open", 0, err)
		return
	}
	ctx := e.ctx
	for range 2 {
		if err := g.WithContext(ctx).AutoMigrate(&note{}); err != nil {
			e.show("AutoMigrate", 0, err)
			return
		}
	}
	e.show("AutoMigrate, twice", 0, nil)
	n := note{Body: "hello"}
	err = g.WithContext(ctx).Create(&n).Error
	e.show("Create (INSERT ... RETURNING)", n.WrittenBy, err)

	port, err := e.onReplica(func() (int, error) {
		var s noteServed
		err := g.WithContext(ctx).Model(&note{}).Select("id, body, inet_server_port() AS port").Where("id = ?", n.ID).Find(&s).Error
		if err == nil && s.ID != n.ID {
			err = fmt.Errorf("note %d not found", n.ID)
		}
		return s.Port, err
	})
	e.show("Find (a prepared statement, PrepareStmt: true)", port, err)

	err = g.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var s noteServed
		err := tx.Model(&note{}).Select("id, body, inet_server_port() AS port").Where("id = ?", n.ID).Find(&s).Error
		port = s.Port
		return err
	})
	e.show("Find in Transaction", port, err)

	sctx := rwsplit.WithSession(ctx, rwsplit.NewSession())
	mine := note{Body: "mine"}
	if err := g.WithContext(sctx).Create(&mine).Error; err != nil {
		e.show("Create in a session", 0, err)
		return
	}
	var s noteServed
	err = g.WithContext(sctx).Model(&note{}).Select("id, body, inet_server_port() AS port").Where("id = ?", mine.ID).Find(&s).Error
	if err == nil && s.ID != mine.ID {
		err = fmt.Errorf("the session did not read its own write")
	}
	e.show("the session reads its own Create at once", s.Port, err)
}

type item struct {
	ID        int64  `db:"id"`
	Name      string `db:"name"`
	WrittenBy int    `db:"written_by"`
	Port      int    `db:"port"`
}

func (e *example) sqlx(routed *sql.DB) {
	fmt.Println("\nsqlx, on the DB's routing *sql.DB")
	ctx := e.ctx
	x := sqlx.NewDb(routed, "pgx")
	create := "CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL, written_by int DEFAULT inet_server_port())"
	if _, err := x.ExecContext(ctx, create); err != nil {
		e.show("CREATE TABLE", 0, err)
		return
	}
	if _, err := x.NamedExecContext(ctx, "INSERT INTO items (name) VALUES (:name)", map[string]any{"name": "spoon"}); err != nil {
		e.show("NamedExec (INSERT)", 0, err)
		return
	}
	const get = "SELECT id, name, written_by, inet_server_port() AS port FROM items WHERE name = $1"
	var it item
	port, err := e.onReplica(func() (int, error) {
		err := x.GetContext(ctx, &it, get, "spoon")
		return it.Port, err
	})
	e.show("NamedExec (INSERT)", it.WrittenBy, err)
	e.show("Get", port, err)

	stmt, err := x.PreparexContext(ctx, get)
	if err != nil {
		e.show("Preparex", 0, err)
		return
	}
	defer stmt.Close()
	err = stmt.GetContext(ctx, &it, "spoon")
	e.show("Preparex, then Get", it.Port, err)

	tx, err := x.BeginTxx(ctx, nil)
	if err != nil {
		e.show("Beginx", 0, err)
		return
	}
	defer tx.Rollback()
	err = tx.GetContext(ctx, &it, get, "spoon")
	e.show("Get in Beginx's transaction", it.Port, err)
}

type book struct {
	bun.BaseModel `bun:"table:books"`
	ID            int64  `bun:",pk,autoincrement"`
	Title         string `bun:",notnull"`
	Port          int    `bun:",scanonly"`
}

func (e *example) bun(routed *sql.DB) {
	fmt.Println("\nbun, on the DB's routing *sql.DB")
	ctx := e.ctx
	b := bun.NewDB(routed, pgdialect.New())
	if _, err := b.NewCreateTable().Model((*book)(nil)).Exec(ctx); err != nil {
		e.show("CreateTable", 0, err)
		return
	}
	bk := book{Title: "Dune"}
	_, err := b.NewInsert().Model(&bk).Returning("id, inet_server_port() AS port").Exec(ctx)
	e.show("Insert ... Returning", bk.Port, err)

	port, err := e.onReplica(func() (int, error) {
		var got book
		err := b.NewSelect().Model(&got).Column("id", "title").ColumnExpr("inet_server_port() AS port").Where("id = ?", bk.ID).Scan(ctx)
		return got.Port, err
	})
	e.show("Select", port, err)

	err = b.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var got book
		err := tx.NewSelect().Model(&got).Column("id", "title").ColumnExpr("inet_server_port() AS port").Where("id = ?", bk.ID).Scan(ctx)
		port = got.Port
		return err
	})
	e.show("Select in RunInTx", port, err)
}
