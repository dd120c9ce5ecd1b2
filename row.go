package rwsplit

import (
	"context"
	"database/sql"
	"database/sql/driver"
)

// errRow returns a *sql.Row whose Scan and Err return err. database/sql
// offers no constructor for a failed Row, so it makes one the only way
// there is: a query on a throwaway handle whose connector fails with err.
// Only error paths pay for it.
func errRow(err error) *sql.Row {
	h := sql.OpenDB(failingConnector{err})
	row := h.QueryRowContext(context.Background(), "")
	h.Close()
	return row
}

type failingConnector struct{ err error }

func (c failingConnector) Connect(context.Context) (driver.Conn, error) { return nil, c.err }
func (c failingConnector) Driver() driver.Driver                        { return failingDriver(c) }

type failingDriver struct{ err error }

func (d failingDriver) Open(string) (driver.Conn, error) { return nil, d.err }
