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
	"database/sql"
	"fmt"

	"github.com/go-sql-driver/mysql"

	"github.com/rwsplit/rwsplit"
)

// Open opens the primary and each replica with go-sql-driver/mysql (DSNs
// in its format) and returns them behind one DB, as rwsplit.New does, with
// the options given after its own: [rwsplit.WithConnTracker] over every
// node's connections, and the nodes named by their address. It does not
// connect. Errors name the node (the primary, replica 2, ...) and never
// contain a DSN or a password; on error every handle Open opened is
// closed.
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
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("rwsplitmysql: open %s: malformed DSN", ordinal(i))
		}
		cfg.DialFunc = tracker.DialFunc(i, cfg.DialFunc)
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("rwsplitmysql: open %s: malformed DSN", ordinal(i))
		}
		handles = append(handles, sql.OpenDB(conn))
		name := cfg.Addr
		if name == "" {
			name = "primary"
			if i > 0 {
				name = fmt.Sprintf("replica%d", i)
			}
		}
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
