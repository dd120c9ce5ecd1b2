package integration

import (
	"fmt"
	"testing"
	"time"

	gormmysql "gorm.io/driver/mysql"
	gormpostgres "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// Migrations followed at once by reads, the normal start-up of a service,
// through a *rwsplit.DB with default options and replicas that apply
// changes late: reads never see an older schema than the DB changed.

type schemaNote struct {
	ID   uint `gorm:"primaryKey"`
	Body string
}

func TestSchemaChangesSeenByTheNextRead(t *testing.T) {
	for _, kind := range []rwsplittest.Kind{rwsplittest.Postgres, rwsplittest.MariaDB} {
		t.Run(fmt.Sprint(kind), func(t *testing.T) {
			t.Parallel()
			// MariaDB's delay is in whole seconds.
			delay := 200 * time.Millisecond
			portQuery := "SELECT inet_server_port() FROM plain_schema LIMIT 1"
			if kind == rwsplittest.MariaDB {
				delay, portQuery = time.Second, "SELECT @@port FROM plain_schema LIMIT 1"
			}
			c := startOwnCluster(t, kind, rwsplittest.LocalOptions{Replicas: 2, ApplyDelay: []time.Duration{delay, delay}})
			db := openCluster(t, c)
			ctx := ctxTimeout(t, time.Minute)

			t.Run("GORMAutoMigrateTwice", func(t *testing.T) {
				var dialector gorm.Dialector = gormpostgres.New(gormpostgres.Config{Conn: db})
				if kind == rwsplittest.MariaDB {
					dialector = gormmysql.New(gormmysql.Config{Conn: db})
				}
				g, err := gorm.Open(dialector, &gorm.Config{Logger: logger.Discard})
				if err != nil {
					t.Fatalf("gorm.Open: %v", err)
				}
				for i := 1; i <= 2; i++ {
					if err := g.WithContext(ctx).AutoMigrate(&schemaNote{}); err != nil {
						t.Fatalf("AutoMigrate, run %d: %v", i, err)
					}
				}
				if err := g.WithContext(ctx).Create(&schemaNote{Body: "hello"}).Error; err != nil {
					t.Fatalf("Create: %v", err)
				}
				var n int64
				if err := g.WithContext(ctx).Model(&schemaNote{}).Count(&n).Error; err != nil {
					t.Fatalf("Count right after the migration: %v", err)
				}
			})

			t.Run("CreateTableThenRead", func(t *testing.T) {
				primary, replicas := ports(c)
				if _, err := db.ExecContext(ctx, "CREATE TABLE plain_schema (id int)"); err != nil {
					t.Fatal(err)
				}
				if _, err := db.ExecContext(ctx, "INSERT INTO plain_schema VALUES (1)"); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				// The first read, at once: the table exists where it goes.
				if port := pgPort(t, ctx, db, portQuery); port != primary {
					t.Errorf("read right after CREATE TABLE served by %s, want the primary", replicas[port])
				}
				// Reads return to the replicas once they have replayed it:
				// the apply delay, and about 300ms more at most.
				var back time.Duration
				for back == 0 {
					if port := pgPort(t, ctx, db, portQuery); replicas[port] != "" {
						back = time.Since(start)
					} else if time.Since(start) > delay+5*time.Second {
						t.Fatalf("reads not back on a replica %v after CREATE TABLE (apply delay %v)\n%s", time.Since(start), delay, db.Stats())
					}
					time.Sleep(5 * time.Millisecond)
				}
				t.Logf("%v: reads back on a replica %v after CREATE TABLE (apply delay %v); %d reads re-run on the primary",
					kind, back.Round(time.Millisecond), delay, db.Stats().SchemaReruns)
				if back > delay+2*time.Second {
					t.Errorf("reads back on a replica only %v after CREATE TABLE (apply delay %v)", back, delay)
				}
			})

			// A write concern that waited for every replica to replay the
			// change has seen their positions: the next read goes to a
			// replica, with no wait for a health probe.
			t.Run("CreateTableWithWriteConcernThenRead", func(t *testing.T) {
				_, replicas := ports(c)
				all := rwsplit.WithWriteConcern(ctx, rwsplit.WriteConcern{Replicas: rwsplit.AllReplicas, Timeout: 30 * time.Second})
				if _, err := db.ExecContext(all, "CREATE TABLE concern_schema (id int)"); err != nil {
					t.Fatal(err)
				}
				// One row, wherever the table exists, empty as it is.
				q := "SELECT inet_server_port() WHERE (SELECT count(*) FROM concern_schema) >= 0"
				if kind == rwsplittest.MariaDB {
					q = "SELECT @@port FROM DUAL WHERE (SELECT COUNT(*) FROM concern_schema) >= 0"
				}
				for i := range 4 {
					if port := pgPort(t, ctx, db, q); replicas[port] == "" {
						t.Fatalf("read %d right after CREATE TABLE with an all-replicas write concern served by the primary\n%s", i+1, db.Stats())
					}
				}
			})
		})
	}
}
