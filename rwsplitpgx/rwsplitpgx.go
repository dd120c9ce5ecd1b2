// Package rwsplitpgx opens a [rwsplit.DB] over PostgreSQL with pgx, with
// each node's network connections tracked ([rwsplit.ConnTracker]): when
// the DB takes a node out of rotation (a hung or unreachable host), the
// calls stuck on it fail at once as connection errors, and the reads
// among them are retried on another node, instead of waiting for their
// deadline.
//
//	db, err := rwsplitpgx.Open(primaryDSN, []string{replica1DSN, replica2DSN})
//
// It is rwsplit.Open("pgx", ...) plus the tracking; the core module
// imports no driver, so the pgx-specific part lives here.
package rwsplitpgx

import (
	"context"
	"database/sql/driver"
	"net"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/rwsplit/rwsplit"
)

// Open opens the primary and each replica with pgx (DSNs in URL or
// key=value form, as pgx.ParseConfig takes them) and returns them behind
// one DB, as rwsplit.Open does, with [rwsplit.WithConnTracker] over every
// node's connections (see [rwsplit.OpenTracked]). It does not connect.
// Errors name the node and never contain a DSN or a password; on error
// every handle Open opened is closed.
func Open(primaryDSN string, replicaDSNs []string, opts ...rwsplit.Option) (*rwsplit.DB, error) {
	return rwsplit.OpenTracked(primaryDSN, replicaDSNs, connect, opts...)
}

func connect(_ int, dsn string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (driver.Connector, string, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, "", err
	}
	cfg.DialFunc = dial
	return stdlib.GetConnector(*cfg), net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), nil
}
