package integration

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	gormmysql "gorm.io/driver/mysql"
	gormpostgres "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/integration/entdb"
	"github.com/rwsplit/rwsplit/integration/entdb/predicate"
	"github.com/rwsplit/rwsplit/integration/sqlc/authors"
	"github.com/rwsplit/rwsplit/integration/sqlc/authorsprep"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// The data libraries Go services use, each through rwsplit on real
// replication whose replicas apply changes late (200ms on PostgreSQL, 1s
// on MariaDB): migrations followed at once by reads, writes on the
// primary, reads on replicas, transactions on the primary, prepared
// statements, and a session reading its own write at once. Who served is
// asked of the server.

// libraryDelay is how late the replicas of these tests apply changes;
// MariaDB's delay is in whole seconds.
func libraryDelay(kind rwsplittest.Kind) time.Duration {
	if kind == rwsplittest.MariaDB {
		return time.Second
	}
	return 200 * time.Millisecond
}

// eventually polls f every 10ms for up to 15s until it returns true. The
// reads after a migration go to the primary until a replica has replayed
// it: the tests wait for a read served by a replica.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	if _, ok := waitFor(15*time.Second, f); !ok {
		t.Fatalf("%s: not within 15s", what)
	}
}

func TestDataLibraries(t *testing.T) {
	for _, kind := range []rwsplittest.Kind{rwsplittest.Postgres, rwsplittest.MariaDB} {
		t.Run(fmt.Sprint(kind), func(t *testing.T) {
			t.Parallel()
			delay := libraryDelay(kind)
			c := startOwnCluster(t, kind, rwsplittest.LocalOptions{Replicas: 2, ApplyDelay: []time.Duration{delay, delay}})
			db := openCluster(t, c)
			routed := routedDB(t, db)
			t.Run("GORM/ConnPool", func(t *testing.T) { testGORM(t, kind, c, db, "gorm_pool_items", false) })
			t.Run("GORM/SQLDB", func(t *testing.T) { testGORM(t, kind, c, routed, "gorm_sqldb_items", false) })
			t.Run("GORM/PrepareStmt", func(t *testing.T) { testGORM(t, kind, c, db, "gorm_prep_items", true) })
			t.Run("sqlx", func(t *testing.T) { testSQLX(t, kind, c, routed) })
			if kind == rwsplittest.Postgres {
				t.Run("sqlc", func(t *testing.T) { testSQLC(t, c, db) })
				t.Run("bun", func(t *testing.T) { testBun(t, c, routed) })
				t.Run("ent", func(t *testing.T) { testEnt(t, c, routed) })
				t.Run("goose", func(t *testing.T) { testGoose(t, c, routed) })
			}
		})
	}
}

// gormItem is the model of the GORM tests; the table name is set per test.
type gormItem struct {
	ID   uint `gorm:"primaryKey"`
	Name string
}

// gormServed is an item read with the port of the server that read it.
type gormServed struct {
	ID   uint
	Name string
	Port int
}

func testGORM(t *testing.T, kind rwsplittest.Kind, c *rwsplittest.LocalCluster, pool gorm.ConnPool, table string, prepare bool) {
	ctx := ctxTimeout(t, time.Minute)
	primary, replicas := ports(c)
	var dialector gorm.Dialector
	portExpr := "inet_server_port()"
	if kind == rwsplittest.MariaDB {
		dialector, portExpr = gormmysql.New(gormmysql.Config{Conn: pool}), "@@port"
	} else {
		dialector = gormpostgres.New(gormpostgres.Config{Conn: pool})
	}
	g, err := gorm.Open(dialector, &gorm.Config{Logger: logger.Discard, PrepareStmt: prepare})
	require.NoError(t, err)
	items := g.WithContext(ctx).Table(table)

	// Migrations twice, then a create at once: the schema is seen.
	for range 2 {
		require.NoError(t, g.WithContext(ctx).Table(table).AutoMigrate(&gormItem{}))
	}
	first := gormItem{Name: "first"}
	require.NoError(t, items.Create(&first).Error)
	require.NotZero(t, first.ID, "the create returned no id")

	// A session reads its own create at once, though the replicas apply
	// it late.
	sctx := rwsplit.WithSession(ctx, rwsplit.NewSession())
	mine := gormItem{Name: "mine"}
	require.NoError(t, g.WithContext(sctx).Table(table).Create(&mine).Error)
	var got gormItem
	require.NoError(t, g.WithContext(sctx).Table(table).First(&got, mine.ID).Error, "the session's own create")
	assert.Equal(t, "mine", got.Name)

	// Finds run on replicas once they have the row.
	var served gormServed
	eventually(t, "a replica finds the first item", func() bool {
		served = gormServed{}
		err := g.WithContext(ctx).Table(table).Select("id, name, "+portExpr+" AS port").Where("id = ?", first.ID).Find(&served).Error
		return err == nil && served.ID == first.ID && replicas[served.Port] != ""
	})
	assert.Contains(t, replicas, served.Port, "a Find served by port %d, not a replica", served.Port)

	// A transaction runs on the primary, reads included.
	err = g.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Table(table).Create(&gormItem{Name: "in tx"}).Error; err != nil {
			return err
		}
		var in gormServed
		if err := tx.Table(table).Select("id, name, "+portExpr+" AS port").Where("name = ?", "in tx").Find(&in).Error; err != nil {
			return err
		}
		assert.Equal(t, primary, in.Port, "a read in a transaction")
		return nil
	})
	require.NoError(t, err)
}

type sqlxItem struct {
	ID   int64  `db:"id"`
	Name string `db:"name"`
	Port int    `db:"port"`
}

func testSQLX(t *testing.T, kind rwsplittest.Kind, c *rwsplittest.LocalCluster, routed *sql.DB) {
	ctx := ctxTimeout(t, time.Minute)
	primary, replicas := ports(c)
	driver, create, port := "pgx", "CREATE TABLE sqlx_items (id bigserial PRIMARY KEY, name text NOT NULL)", "inet_server_port()"
	if kind == rwsplittest.MariaDB {
		driver, create, port = "mysql", "CREATE TABLE sqlx_items (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL)", "@@port"
	}
	x := sqlx.NewDb(routed, driver)
	_, err := x.ExecContext(ctx, create)
	require.NoError(t, err)
	_, err = x.NamedExecContext(ctx, "INSERT INTO sqlx_items (name) VALUES (:name)", map[string]any{"name": "first"})
	require.NoError(t, err)

	get := x.Rebind("SELECT id, name, " + port + " AS port FROM sqlx_items WHERE name = ?")
	var it sqlxItem
	eventually(t, "Get on a replica", func() bool {
		return x.GetContext(ctx, &it, get, "first") == nil && replicas[it.Port] != ""
	})
	assert.Contains(t, replicas, it.Port, "Get")

	require.NoError(t, c.WaitCaughtUp(ctx, c.Primary()))
	var all []sqlxItem
	require.NoError(t, x.SelectContext(ctx, &all, "SELECT id, name, "+port+" AS port FROM sqlx_items"))
	require.Len(t, all, 1)
	assert.Contains(t, replicas, all[0].Port, "Select")

	stmt, err := x.PreparexContext(ctx, get)
	require.NoError(t, err)
	defer stmt.Close()
	for range 4 {
		var p sqlxItem
		require.NoError(t, stmt.GetContext(ctx, &p, "first"))
		assert.Contains(t, replicas, p.Port, "a prepared Get")
	}

	tx, err := x.Beginx()
	require.NoError(t, err)
	_, err = tx.NamedExec("INSERT INTO sqlx_items (name) VALUES (:name)", map[string]any{"name": "in tx"})
	require.NoError(t, err)
	var in sqlxItem
	require.NoError(t, tx.Get(&in, get, "in tx"), "a transaction reads its own insert")
	assert.Equal(t, primary, in.Port, "a read in Beginx's transaction")
	require.NoError(t, tx.Stmtx(stmt).Get(&in, "in tx"))
	assert.Equal(t, primary, in.Port, "a prepared Get in the transaction")
	require.NoError(t, tx.Commit())
}

func testSQLC(t *testing.T, c *rwsplittest.LocalCluster, db *rwsplit.DB) {
	ctx := ctxTimeout(t, time.Minute)
	primary, replicas := ports(c)
	_, err := db.ExecContext(ctx, "CREATE TABLE sqlc_authors (id bigserial PRIMARY KEY, name text NOT NULL, bio text)")
	require.NoError(t, err)

	plain := authors.New(db)
	prepared, err := authorsprep.Prepare(ctx, db)
	require.NoError(t, err)
	defer prepared.Close()

	for _, tc := range []struct {
		name   string
		create func(context.Context, string) (int64, int32, error)
		get    func(context.Context, int64) (string, int32, error)
		inTx   func(*sql.Tx, int64) (int32, error)
	}{
		{"plain",
			func(ctx context.Context, n string) (int64, int32, error) {
				r, err := plain.CreateAuthor(ctx, authors.CreateAuthorParams{Name: n})
				return r.ID, r.Port, err
			},
			func(ctx context.Context, id int64) (string, int32, error) {
				r, err := plain.GetAuthor(ctx, id)
				return r.Name, r.Port, err
			},
			func(tx *sql.Tx, id int64) (int32, error) {
				q := plain.WithTx(tx)
				if err := q.RenameAuthor(ctx, authors.RenameAuthorParams{ID: id, Name: "renamed"}); err != nil {
					return 0, err
				}
				r, err := q.GetAuthor(ctx, id)
				return r.Port, err
			}},
		{"emit_prepared_queries",
			func(ctx context.Context, n string) (int64, int32, error) {
				r, err := prepared.CreateAuthor(ctx, authorsprep.CreateAuthorParams{Name: n})
				return r.ID, r.Port, err
			},
			func(ctx context.Context, id int64) (string, int32, error) {
				r, err := prepared.GetAuthor(ctx, id)
				return r.Name, r.Port, err
			},
			func(tx *sql.Tx, id int64) (int32, error) {
				q := prepared.WithTx(tx)
				if err := q.RenameAuthor(ctx, authorsprep.RenameAuthorParams{ID: id, Name: "renamed"}); err != nil {
					return 0, err
				}
				r, err := q.GetAuthor(ctx, id)
				return r.Port, err
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, port, err := tc.create(ctx, "ada")
			require.NoError(t, err)
			assert.Equal(t, int32(primary), port, "CreateAuthor (INSERT ... RETURNING)")

			sctx := rwsplit.WithSession(ctx, rwsplit.NewSession())
			sid, _, err := tc.create(sctx, "grace")
			require.NoError(t, err)
			name, _, err := tc.get(sctx, sid)
			require.NoError(t, err, "the session's own create")
			assert.Equal(t, "grace", name)

			eventually(t, "GetAuthor on a replica", func() bool {
				_, port, err = tc.get(ctx, id)
				return err == nil && replicas[int(port)] != ""
			})
			assert.Contains(t, replicas, int(port), "GetAuthor")

			tx, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			port, err = tc.inTx(tx, id)
			require.NoError(t, err)
			assert.Equal(t, int32(primary), port, "GetAuthor in WithTx")
			require.NoError(t, tx.Commit())
		})
	}
}

type bunBook struct {
	bun.BaseModel `bun:"table:bun_books"`
	ID            int64  `bun:",pk,autoincrement"`
	Title         string `bun:",notnull"`
	Port          int    `bun:",scanonly"`
}

func testBun(t *testing.T, c *rwsplittest.LocalCluster, routed *sql.DB) {
	ctx := ctxTimeout(t, time.Minute)
	primary, replicas := ports(c)
	b := bun.NewDB(routed, pgdialect.New())
	_, err := b.NewCreateTable().Model((*bunBook)(nil)).Exec(ctx)
	require.NoError(t, err)

	book := bunBook{Title: "first"}
	_, err = b.NewInsert().Model(&book).Returning("id, inet_server_port() AS port").Exec(ctx)
	require.NoError(t, err)
	require.NotZero(t, book.ID)
	assert.Equal(t, primary, book.Port, "Insert ... Returning")

	var got bunBook
	eventually(t, "a replica selects the book", func() bool {
		got = bunBook{}
		return b.NewSelect().Model(&got).Column("id", "title").ColumnExpr("inet_server_port() AS port").
			Where("id = ?", book.ID).Scan(ctx) == nil && replicas[got.Port] != ""
	})
	assert.Contains(t, replicas, got.Port, "Select")

	err = b.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewUpdate().Model(&bunBook{ID: book.ID, Title: "second"}).WherePK().Exec(ctx); err != nil {
			return err
		}
		var in bunBook
		if err := tx.NewSelect().Model(&in).Column("id", "title").ColumnExpr("inet_server_port() AS port").
			Where("id = ?", book.ID).Scan(ctx); err != nil {
			return err
		}
		assert.Equal(t, "second", in.Title)
		assert.Equal(t, primary, in.Port, "a read in RunInTx")
		return nil
	})
	require.NoError(t, err)
}

func testEnt(t *testing.T, c *rwsplittest.LocalCluster, routed *sql.DB) {
	ctx := ctxTimeout(t, time.Minute)
	primary, _ := ports(c)
	client := entdb.NewClient(entdb.Driver(entsql.OpenDB(dialect.Postgres, routed)))
	require.NoError(t, client.Schema.Create(ctx))
	u, err := client.EntUser.Create().SetName("ada").Save(ctx)
	require.NoError(t, err)

	sctx := rwsplit.WithSession(ctx, rwsplit.NewSession())
	mine, err := client.EntUser.Create().SetName("grace").Save(sctx)
	require.NoError(t, err)
	got, err := client.EntUser.Get(sctx, mine.ID)
	require.NoError(t, err, "the session's own create")
	assert.Equal(t, "grace", got.Name)

	// Rows come back only from a server other than the primary.
	onReplica := predicate.EntUser(func(s *entsql.Selector) {
		s.Where(entsql.ExprP(fmt.Sprintf("inet_server_port() <> %d", primary)))
	})
	eventually(t, "a replica answers the query", func() bool {
		users, err := client.EntUser.Query().Where(onReplica).All(ctx)
		return err == nil && len(users) >= 1 && users[0].ID == u.ID
	})

	tx, err := client.Tx(ctx)
	require.NoError(t, err)
	n, err := tx.EntUser.Query().Where(onReplica).Count(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "a transaction's read answered by a replica")
	require.NoError(t, tx.Commit())
}

//go:embed testdata/goose/*.sql
var gooseMigrations embed.FS

func testGoose(t *testing.T, c *rwsplittest.LocalCluster, routed *sql.DB) {
	ctx := ctxTimeout(t, time.Minute)
	goose.SetBaseFS(gooseMigrations)
	goose.SetLogger(goose.NopLogger())
	require.NoError(t, goose.SetDialect("postgres"))
	require.NoError(t, goose.UpContext(ctx, routed, "testdata/goose"))
	// At once, with replicas 200ms behind: the tables and the column the
	// migrations made are there for reads.
	var n int
	require.NoError(t, routed.QueryRowContext(ctx, "SELECT count(*) FROM goose_widgets WHERE colour IS NULL").Scan(&n))
	assert.Equal(t, 1, n)
	v, err := goose.GetDBVersionContext(ctx, routed)
	require.NoError(t, err)
	assert.Equal(t, int64(2), v)
	// Up again is a no-op, not a second run of the migrations.
	require.NoError(t, goose.UpContext(ctx, routed, "testdata/goose"))
}
