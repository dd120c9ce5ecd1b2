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
	"database/sql"
	"fmt"
	"net"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/rwsplit/rwsplit"
)

// Open opens the primary and each replica with pgx (DSNs in URL or
// key=value form, as pgx.ParseConfig takes them) and returns them behind
// one DB, as rwsplit.New does, with the options given after its own:
// [rwsplit.WithConnTracker] over every node's connections, and the nodes
// named host:port. It does not connect. Errors name the node (the primary,
// replica 2, ...) and never contain a DSN or a password; on error every
// handle Open opened is closed.
func Open(primaryDSN string, replicaDSNs []string, opts ...rwsplit.Option) (*rwsplit.DB, error) {
	tracker := rwsplit.NewConnTracker()
	dsns := append([]string{primaryDSN}, replicaDSNs...)
	handles := make([]*sql.DB, 0, len(dsns))
	names := make([]string, 0, len(dsns))
	closeAll := func() {
		for _, h := range handles {
			h.Close()
		}
	}
	for i, dsn := range dsns {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			closeAll()
			// pgx's message repeats the DSN; say which node's is wrong.
			return nil, fmt.Errorf("rwsplitpgx: open %s: malformed DSN", ordinal(i))
		}
		cfg.DialFunc = tracker.DialFunc(i, cfg.DialFunc)
		handles = append(handles, stdlib.OpenDB(*cfg))
		name := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
		for _, n := range names {
			if n == name {
				name = fmt.Sprintf("%s#%d", name, i)
				break
			}
		}
		names = append(names, name)
	}
	all := append([]rwsplit.Option{rwsplit.WithConnTracker(tracker), rwsplit.WithNodeNames(names[0], names[1:]...)}, opts...)
	db, err := rwsplit.New(handles[0], handles[1:], all...)
	if err != nil {
		closeAll()
		return nil, err
	}
	return db, nil
}

func ordinal(i int) string {
	if i == 0 {
		return "the primary"
	}
	return fmt.Sprintf("replica %d", i)
}
