package integration

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// The routing *sql.DB (DB.Connector) on real replication: the rules of
// the DB hold on it, a connection that takes on session state keeps it,
// and rows carry the node driver's types. Who served is asked of the
// server (inet_server_port(), @@port).

// routedDB opens the routing *sql.DB of db, closed at the end of the test.
func routedDB(t testing.TB, db *rwsplit.DB) *sql.DB {
	t.Helper()
	r := sql.OpenDB(db.Connector())
	r.SetMaxIdleConns(16)
	t.Cleanup(func() { r.Close() })
	return r
}

// serverPort is the query that returns the serving server's port.
func serverPort(kind rwsplittest.Kind) string {
	if kind == rwsplittest.MariaDB {
		return "SELECT @@port"
	}
	return "SELECT inet_server_port()"
}

func clusterOf(kind rwsplittest.Kind) *rwsplittest.LocalCluster {
	if kind == rwsplittest.MariaDB {
		return mariaCluster
	}
	return pgCluster
}

func TestRoutingSQLDB(t *testing.T) {
	for _, kind := range []rwsplittest.Kind{rwsplittest.Postgres, rwsplittest.MariaDB} {
		t.Run(fmt.Sprint(kind), func(t *testing.T) {
			c := clusterOf(kind)
			db := openCluster(t, c)
			r := routedDB(t, db)
			ctx := ctxTimeout(t, time.Minute)
			primary, replicas := ports(c)
			port := serverPort(kind)

			t.Run("Routes", func(t *testing.T) {
				seen := map[int]int{}
				for range 20 {
					seen[pgPort(t, ctx, r, port)]++
				}
				assert.Zero(t, seen[primary], "reads served by the primary: %v", seen)
				assert.Len(t, seen, 2, "reads should reach both replicas: %v", seen)

				assert.Equal(t, primary, pgPort(t, ctx, r, port+" FROM users LIMIT 1 FOR UPDATE"), "a locking read")
				assert.Equal(t, primary, pgPort(t, rwsplit.WithPrimary(ctx), r, port), "a WithPrimary read")

				tx, err := r.BeginTx(ctx, nil)
				require.NoError(t, err)
				assert.Equal(t, primary, pgPort(t, ctx, tx, port), "a read-write transaction")
				require.NoError(t, tx.Commit())

				tx, err = r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
				require.NoError(t, err)
				first := pgPort(t, ctx, tx, port)
				assert.Contains(t, replicas, first, "a read-only transaction runs on a replica")
				assert.Equal(t, first, pgPort(t, ctx, tx, port), "a transaction stays on its node")
				require.NoError(t, tx.Commit())

				stmt, err := r.PrepareContext(ctx, port)
				require.NoError(t, err)
				defer stmt.Close()
				var p int
				require.NoError(t, stmt.QueryRowContext(ctx).Scan(&p))
				assert.Contains(t, replicas, p, "a prepared read runs on a replica")
				tx, err = r.BeginTx(ctx, nil)
				require.NoError(t, err)
				require.NoError(t, tx.StmtContext(ctx, stmt).QueryRowContext(ctx).Scan(&p))
				assert.Equal(t, primary, p, "a prepared read in a read-write transaction")
				require.NoError(t, tx.Rollback())
			})

			t.Run("SessionStateStays", func(t *testing.T) {
				conn, err := r.Conn(ctx)
				require.NoError(t, err)
				defer conn.Close()
				var set, get, temp string
				if kind == rwsplittest.MariaDB {
					set, get = "SET @rwsplit_pin = 'pinned'", "SELECT @rwsplit_pin, @@port"
					temp = "CREATE TEMPORARY TABLE pin_tmp (id int)"
				} else {
					set, get = "SET application_name = 'rwsplit-pin'", "SELECT current_setting('application_name'), inet_server_port()"
					temp = "CREATE TEMP TABLE pin_tmp (id int)"
				}
				assert.Contains(t, replicas, pgPort(t, ctx, conn, port), "a fresh connection routes its reads")
				_, err = conn.ExecContext(ctx, set)
				require.NoError(t, err)
				for range 3 {
					var v string
					var p int
					require.NoError(t, conn.QueryRowContext(ctx, get).Scan(&v, &p))
					assert.Contains(t, []string{"pinned", "rwsplit-pin"}, v, "the setting is seen by the next statement")
					assert.Equal(t, primary, p, "a pinned connection stays on the primary")
				}
				_, err = conn.ExecContext(ctx, temp)
				require.NoError(t, err)
				_, err = conn.ExecContext(ctx, "INSERT INTO pin_tmp VALUES (1)")
				require.NoError(t, err)
				var n int
				require.NoError(t, conn.QueryRowContext(ctx, "SELECT count(*) FROM pin_tmp").Scan(&n))
				assert.Equal(t, 1, n, "the temporary table is seen by the next read")
				require.NoError(t, conn.Close())

				// The connection that held the state was closed, not pooled:
				// no pooled connection of the primary has the setting.
				if kind == rwsplittest.Postgres {
					_, ok := waitFor(10*time.Second, func() bool {
						var left int
						err := db.Primary().QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rwsplit-pin'").Scan(&left)
						return err == nil && left == 0
					})
					assert.True(t, ok, "the primary still has a session with the pinned connection's setting")
				}
				for range 4 {
					var v sql.NullString
					var p int
					if kind == rwsplittest.MariaDB {
						require.NoError(t, db.Primary().QueryRowContext(ctx, "SELECT @rwsplit_pin, @@port").Scan(&v, &p))
						assert.False(t, v.Valid, "a pooled primary connection carries the user variable")
					}
				}
			})

			t.Run("ColumnTypes", func(t *testing.T) {
				query := "SELECT 1::int4 AS i, 2::int8 AS b, 'x'::text AS t, 'y'::varchar(10) AS v, 1.5::numeric(10,2) AS n, " +
					"now() AS ts, true AS bo, NULL::text AS nu, '\\x0102'::bytea AS bin, 1.25::float8 AS f"
				if kind == rwsplittest.MariaDB {
					query = "SELECT CAST(1 AS SIGNED) AS i, 'x' AS t, CAST('y' AS CHAR(10)) AS v, CAST(1.5 AS DECIMAL(10,2)) AS n, " +
						"NOW() AS ts, NULL AS nu, CAST(1.25 AS DOUBLE) AS f, x'0102' AS bin"
				}
				raw, err := sql.Open(c.DriverName(), c.Replicas()[0].DSN())
				require.NoError(t, err)
				defer raw.Close()
				want := columnsOf(t, ctx, raw, query)
				got := columnsOf(t, ctx, r, query)
				assert.Equal(t, want, got, "column types and values through the routing *sql.DB")
			})

			if kind == rwsplittest.MariaDB {
				t.Run("NextResultSet", func(t *testing.T) {
					var replicaDSNs []string
					for _, n := range c.Replicas() {
						replicaDSNs = append(replicaDSNs, multiStatementDSN(c, n))
					}
					mdb, err := rwsplit.Open(c.DriverName(), multiStatementDSN(c, c.Primary()), replicaDSNs)
					require.NoError(t, err)
					defer mdb.Close()
					mr := routedDB(t, mdb)
					rows, err := mr.QueryContext(ctx, "SELECT 1 AS a; SELECT 'two' AS b, 3 AS c")
					require.NoError(t, err)
					defer rows.Close()
					var sets [][]string
					for {
						cols, err := rows.Columns()
						require.NoError(t, err)
						sets = append(sets, cols)
						for rows.Next() {
						}
						if !rows.NextResultSet() {
							break
						}
					}
					require.NoError(t, rows.Err())
					assert.Equal(t, [][]string{{"a"}, {"b", "c"}}, sets)
				})
			}
		})
	}
}

// column is what a library can read of one column: its type as the
// driver reports it, and the Go type and value it scans into an any.
type column struct {
	Name, DatabaseType string
	ScanType           string
	Nullable, NullOK   bool
	Length             int64
	LengthOK           bool
	Precision, Scale   int64
	DecimalOK          bool
	GoType             string
	Value              string // time values left out: they differ between calls
}

func columnsOf(t *testing.T, ctx context.Context, db *sql.DB, query string) []column {
	t.Helper()
	rows, err := db.QueryContext(ctx, query)
	require.NoError(t, err)
	defer rows.Close()
	types, err := rows.ColumnTypes()
	require.NoError(t, err)
	require.True(t, rows.Next(), "no row: %v", rows.Err())
	vals := make([]any, len(types))
	ptrs := make([]any, len(types))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	require.NoError(t, rows.Scan(ptrs...))
	var out []column
	for i, ct := range types {
		col := column{Name: ct.Name(), DatabaseType: ct.DatabaseTypeName(), ScanType: fmt.Sprint(ct.ScanType())}
		col.Nullable, col.NullOK = ct.Nullable()
		col.Length, col.LengthOK = ct.Length()
		col.Precision, col.Scale, col.DecimalOK = ct.DecimalSize()
		col.GoType = fmt.Sprint(reflect.TypeOf(vals[i]))
		if _, isTime := vals[i].(time.Time); !isTime {
			col.Value = fmt.Sprintf("%v", vals[i])
		}
		out = append(out, col)
	}
	return out
}
