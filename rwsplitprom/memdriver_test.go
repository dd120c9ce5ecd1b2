package rwsplitprom_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
)

// memServer is an in-memory database node for the tests that need no
// server: every query answers one row, the server's name, so a test
// knows which node served it, and counts what it served. A query that
// contains "sleep" waits for its context to end; one that contains
// "fail" fails. A down server refuses connections, as a
// closed port does.
type memServer struct {
	name    string
	value   driver.Value // name, boxed once
	down    atomic.Bool
	queries atomic.Int64
	execs   atomic.Int64
	begins  atomic.Int64
}

var errFailed = errors.New("memdriver: statement failed")

func newMemServer(name string) *memServer {
	return &memServer{name: name, value: name}
}

// DB returns a *sql.DB over the server.
func (s *memServer) DB() *sql.DB { return sql.OpenDB(memConnector{s}) }

type memConnector struct{ s *memServer }

func (c memConnector) Connect(context.Context) (driver.Conn, error) {
	if c.s.down.Load() {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	return &memConn{s: c.s}, nil
}

func (c memConnector) Driver() driver.Driver { return memDriver{} }

type memDriver struct{}

func (memDriver) Open(string) (driver.Conn, error) {
	return nil, errors.New("memdriver: open through a connector")
}

type memConn struct {
	s  *memServer
	tx bool
}

var (
	_ driver.QueryerContext     = (*memConn)(nil)
	_ driver.ExecerContext      = (*memConn)(nil)
	_ driver.ConnBeginTx        = (*memConn)(nil)
	_ driver.Pinger             = (*memConn)(nil)
	_ driver.NamedValueChecker  = (*memConn)(nil)
	_ driver.SessionResetter    = (*memConn)(nil)
	_ driver.ConnPrepareContext = (*memConn)(nil)
)

func (c *memConn) Prepare(string) (driver.Stmt, error) {
	return nil, errors.New("memdriver: no prepared statements")
}

func (c *memConn) PrepareContext(context.Context, string) (driver.Stmt, error) {
	return nil, errors.New("memdriver: no prepared statements")
}

func (c *memConn) Close() error { return nil }

func (c *memConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *memConn) BeginTx(context.Context, driver.TxOptions) (driver.Tx, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	if !c.tx {
		c.s.begins.Add(1)
	}
	c.tx = true
	return c, nil
}

func (c *memConn) Commit() error   { c.tx = false; return nil }
func (c *memConn) Rollback() error { c.tx = false; return nil }

func (c *memConn) Ping(context.Context) error { return c.alive() }

func (c *memConn) ResetSession(context.Context) error { return c.alive() }

func (c *memConn) CheckNamedValue(*driver.NamedValue) error { return nil }

func (c *memConn) alive() error {
	if c.s.down.Load() {
		return driver.ErrBadConn
	}
	return nil
}

func (c *memConn) run(ctx context.Context, query string) error {
	if err := c.alive(); err != nil {
		return err
	}
	switch {
	case strings.Contains(query, "sleep"):
		<-ctx.Done()
		return ctx.Err()
	case strings.Contains(query, "fail"):
		return errFailed
	}
	return nil
}

func (c *memConn) QueryContext(ctx context.Context, query string, _ []driver.NamedValue) (driver.Rows, error) {
	if err := c.run(ctx, query); err != nil {
		return nil, err
	}
	if !c.tx {
		c.s.queries.Add(1)
	}
	return &memRows{value: c.s.value}, nil
}

func (c *memConn) ExecContext(ctx context.Context, query string, _ []driver.NamedValue) (driver.Result, error) {
	if err := c.run(ctx, query); err != nil {
		return nil, err
	}
	if !c.tx {
		c.s.execs.Add(1)
	}
	return driver.RowsAffected(1), nil
}

// memRows is one row of one column, "node".
type memRows struct {
	value driver.Value
	done  bool
}

var memColumns = []string{"node"}

func (r *memRows) Columns() []string { return memColumns }
func (r *memRows) Close() error      { return nil }

func (r *memRows) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done = true
	dest[0] = r.value
	return nil
}
