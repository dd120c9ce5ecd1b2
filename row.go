package rwsplit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"sync"
)

// database/sql offers no constructor for a *sql.Row that carries an error,
// so rwsplit makes one the only way there is: a query on a handle whose
// connector fails with that error.

// errRows is the DB's handle for rows that carry an error: the load
// shedding of ErrNoReplica refuses a QueryRow this way, so one handle
// serves them all. Its connector returns the error the query's context
// carries; it is opened at the first refusal and closed by Close.
type errRows struct {
	once sync.Once
	h    *sql.DB
}

type rowErrKey struct{}

// errNoRowError is what the handle's connector says to a connection asked
// for without an error to carry (database/sql does not ask for one).
var errNoRowError = errors.New("rwsplit: internal: a row without its error")

// errRow returns a *sql.Row whose Scan and Err return err.
func (db *DB) errRow(err error) *sql.Row {
	db.errRows.once.Do(func() { db.errRows.h = sql.OpenDB(failingConnector{}) })
	h := db.errRows.h
	if h == nil { // Close came first
		return errRow(ErrClosed)
	}
	row := h.QueryRowContext(context.WithValue(context.Background(), rowErrKey{}, err), "")
	if db.closed.Load() {
		// Close may have closed the handle under the query.
		return errRow(ErrClosed)
	}
	return row
}

// close closes the handle, if one was opened; Close calls it after
// marking the DB closed.
func (e *errRows) close() error {
	var err error
	e.once.Do(func() {}) // no handle opens after this
	if e.h != nil {
		err = e.h.Close()
	}
	return err
}

// errRow returns a *sql.Row whose Scan and Err return err, on a throwaway
// handle: for the rare rows that no DB's handle can serve (after Close).
func errRow(err error) *sql.Row {
	h := sql.OpenDB(failingConnector{err})
	row := h.QueryRowContext(context.Background(), "")
	h.Close()
	return row
}

// failingConnector fails every connection with err, or with the error the
// context carries when err is nil.
type failingConnector struct{ err error }

func (c failingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if c.err != nil {
		return nil, c.err
	}
	if err, ok := ctx.Value(rowErrKey{}).(error); ok && err != nil {
		return nil, err
	}
	return nil, errNoRowError
}

func (c failingConnector) Driver() driver.Driver { return failingDriver(c) }

type failingDriver struct{ err error }

func (d failingDriver) Open(string) (driver.Conn, error) { return nil, d.err }
