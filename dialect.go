package rwsplit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"reflect"
	"strconv"
	"strings"

	"github.com/rwsplit/rwsplit/internal/sqlclass"
)

// dialect is what rwsplit knows of a database family, as data: the lexer
// of its read/write classifier and, for the position-aware features, what
// it asks each node, how it reads and compares the answers, and how it
// promotes a replica. The rest of the package asks a dialect what to do,
// never which dialect it is: the differences between databases live in
// the table below and nowhere else.
type dialect struct {
	name    string
	aliases []string // other names WithDialect accepts
	class   sqlclass.Dialect
	drivers []string // Go package paths of the drivers that speak it, or their prefixes

	// askFlavor: the driver serves several databases whose positions
	// differ (go-sql-driver/mysql: MySQL and MariaDB), so unless
	// WithDialect named one, the first probe that answers asks VERSION()
	// which (see DB.flavor).
	askFlavor bool
	// versionMark picks this dialect, among those of its classifier, for
	// a server whose VERSION() contains it.
	versionMark string

	// checkDSN checks a DSN that the driver parses only when it first
	// connects, so that Open can report it; nil: the driver checks it.
	checkDSN func(dsn string) error

	// probe asks a node, under ctx, whether it is alive, its role, epoch
	// and position (see probe.go); nil: a ping.
	probe     func(ctx context.Context, d *dialect, h *sql.DB) probeResult
	roleQuery string // the first query of a MySQL-family probe

	// Replication positions; a dialect without them leaves the queries
	// empty. primaryPositionQuery asks a primary for its position after a
	// commit and its epoch; replicaPositionQuery asks a replica what it
	// has applied.
	primaryPositionQuery string
	replicaPositionQuery string
	parsePosition        func(text string) (position, bool)
	parseEpoch           func(text string) (epoch, bool)
	pos                  positionOps

	// timelines: epochs are PostgreSQL timelines. They are ordered, so a
	// writable node on a lower one than the highest seen is fenced; and a
	// standby reports the one it follows, so one that does not proves
	// nothing once a promotion was seen. Without timelines two writable
	// nodes cannot be told apart, and a replica reports no epoch.
	timelines bool

	tokenKind byte      // the position's kind in session tokens
	promoter  *promoter // automatic promotion; nil: not supported
}

// hasPositions reports whether the dialect knows replication positions.
func (d *dialect) hasPositions() bool { return d.primaryPositionQuery != "" }

// historyCovers reports whether a node at have has applied every
// transaction of need, on the same history (read-your-writes).
func (d *dialect) historyCovers(have, need position) bool { return d.pos.history(have, need) }

// progressCovers reports whether a node at have has got as far as need
// (replication lag), whichever server wrote what it applied.
func (d *dialect) progressCovers(have, need position) bool { return d.pos.progress(have, need) }

// merge returns a position that covers both a and b.
func (d *dialect) merge(a, b position) position { return d.pos.merge(a, b) }

// promoter is how automatic promotion examines, promotes and repoints the
// nodes of a dialect (see autofailover.go).
type promoter struct {
	received func(ctx context.Context, c *candidate) error
	promote  func(ctx context.Context, admin *sql.DB) error
	follow   func(ctx context.Context, admin *sql.DB, addr string) error
}

var (
	dialectPostgres = &dialect{
		name:     "postgres",
		aliases:  []string{"postgresql", "pgx"},
		class:    sqlclass.Postgres,
		drivers:  []string{"github.com/jackc/pgx", "github.com/lib/pq"},
		checkDSN: checkPostgresDSN,
		probe:    probePostgres,
		// The insert LSN is at or past the end of every committed
		// transaction's WAL; the timeline is read from the name of the
		// WAL file it falls in.
		primaryPositionQuery: `SELECT pg_current_wal_insert_lsn()::text,
	('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int8::text`,
		replicaPositionQuery: "SELECT pg_last_wal_replay_lsn()::text",
		parsePosition:        parseLSNPosition,
		parseEpoch:           parseTimeline,
		pos:                  lsnOps,
		timelines:            true,
		tokenKind:            kindPG,
		promoter:             &promoter{received: pgReceived, promote: pgPromote, follow: pgFollow},
	}
	dialectMySQL = &dialect{
		name:                 "mysql",
		class:                sqlclass.MySQL,
		drivers:              []string{"github.com/go-sql-driver/mysql"},
		askFlavor:            true,
		probe:                probeMySQL,
		roleQuery:            "SELECT @@read_only, @@gtid_executed, @@server_uuid",
		primaryPositionQuery: "SELECT @@gtid_executed, @@server_uuid",
		replicaPositionQuery: "SELECT @@gtid_executed",
		parsePosition:        parseMySQLPosition,
		parseEpoch:           parseServerUUID,
		pos:                  mysqlOps,
		tokenKind:            kindMySQL,
	}
	dialectMariaDB = &dialect{
		name:                 "mariadb",
		versionMark:          "mariadb",
		class:                sqlclass.MySQL,
		probe:                probeMySQL,
		roleQuery:            "SELECT @@read_only, CASE WHEN @@read_only THEN @@gtid_slave_pos ELSE @@gtid_binlog_pos END, @@server_id",
		primaryPositionQuery: "SELECT @@gtid_binlog_pos, @@server_id",
		replicaPositionQuery: "SELECT @@gtid_slave_pos",
		parsePosition:        parseMariaPosition,
		parseEpoch:           parseServerID,
		pos:                  mariaOps,
		tokenKind:            kindMariaDB,
		promoter:             &promoter{received: mariaReceived, promote: mariaPromote, follow: mariaFollow},
	}
	dialectGeneric = &dialect{
		name:          "generic",
		class:         sqlclass.Generic,
		parsePosition: func(string) (position, bool) { return position{}, false },
		parseEpoch:    func(string) (epoch, bool) { return epoch{}, false },
		pos:           noPositionOps,
		tokenKind:     kindNone,
	}

	// dialects lists every dialect; the first whose drivers match a
	// driver's package is that driver's.
	dialects = []*dialect{dialectPostgres, dialectMySQL, dialectMariaDB, dialectGeneric}
)

// dialectByName resolves a WithDialect name.
func dialectByName(name string) (*dialect, bool) {
	name = strings.ToLower(name)
	for _, d := range dialects {
		if d.name == name {
			return d, true
		}
		for _, a := range d.aliases {
			if a == name {
				return d, true
			}
		}
	}
	return nil, false
}

// driverDialect tells the dialect from the Go package that implements the
// driver, so that it needs no connection.
func driverDialect(drv driver.Driver) *dialect {
	t := reflect.TypeOf(drv)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return dialectGeneric
	}
	pkg := t.PkgPath()
	for _, d := range dialects {
		for _, p := range d.drivers {
			if pkg == p || strings.HasPrefix(pkg, p+"/") {
				return d
			}
		}
	}
	return dialectGeneric
}

// flavorOf returns the dialect of a server of d's driver whose VERSION()
// is version: the dialect of d's classifier whose mark the version
// carries, or d.
func (d *dialect) flavorOf(version string) *dialect {
	version = strings.ToLower(version)
	for _, x := range dialects {
		if x.class == d.class && x.versionMark != "" && strings.Contains(version, x.versionMark) {
			return x
		}
	}
	return d
}

// dialectOfKind returns the dialect whose positions a token kind holds,
// or nil.
func dialectOfKind(k byte) *dialect {
	for _, d := range dialects {
		if d.hasPositions() && d.tokenKind == k {
			return d
		}
	}
	return nil
}

// parseTimeline reads a PostgreSQL timeline; timelines start at 1.
func parseTimeline(s string) (epoch, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	return epoch{n: n}, err == nil && n > 0
}

// parseServerID reads a MariaDB primary's @@server_id.
func parseServerID(s string) (epoch, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return epoch{n: n}, err == nil
}

// parseServerUUID reads a MySQL primary's @@server_uuid.
func parseServerUUID(s string) (epoch, bool) {
	return epoch{id: strings.ToLower(s)}, s != ""
}
