// Package rwsplitmysql opens a [rwsplit.DB] over MySQL or MariaDB with
// go-sql-driver/mysql, with each node's network connections tracked
// ([rwsplit.ConnTracker]): when the DB takes a node out of rotation (a hung
// or unreachable host), the calls stuck on it fail at once as connection
// errors, and the reads among them are retried on another node, instead
// of waiting for their deadline.
//
//	db, err := rwsplitmysql.Open(primaryDSN, []string{replica1DSN, replica2DSN})
//
// It is rwsplit.Open("mysql", ...) plus the tracking; the core module
// imports no driver, so the driver-specific part lives here.
package rwsplitmysql

import (
	"context"
	"database/sql/driver"
	"net"

	"github.com/go-sql-driver/mysql"

	"github.com/rwsplit/rwsplit"
)

// Open opens the primary and each replica with go-sql-driver/mysql (DSNs
// in its format) and returns them behind one DB, as rwsplit.Open does,
// with [rwsplit.WithConnTracker] over every node's connections (see
// [rwsplit.OpenTracked]). It does not connect. Errors name the node and
// never contain a DSN or a password; on error every handle Open opened is
// closed.
func Open(primaryDSN string, replicaDSNs []string, opts ...rwsplit.Option) (*rwsplit.DB, error) {
	return rwsplit.OpenTracked(primaryDSN, replicaDSNs, connect, opts...)
}

func connect(_ int, dsn string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (driver.Connector, string, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, "", err
	}
	cfg.DialFunc = dial
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, "", err
	}
	addr := ""
	if cfg.Net == "tcp" {
		addr = cfg.Addr
	}
	return c, addr, nil
}
