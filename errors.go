package rwsplit

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"syscall"
)

var (
	// ErrClosed is returned by the methods of a [DB] that run
	// statements, ping, or hand out a transaction, connection or handle,
	// after [DB.Close].
	ErrClosed = errors.New("rwsplit: database is closed")

	// ErrNoPrimary is returned for a call that needs the primary when no
	// node is known to be the primary.
	ErrNoPrimary = errors.New("rwsplit: no primary available")

	// ErrSplitBrain is returned, wrapped with the nodes' names, for a write while more than one node takes writes and none can be
	// told to be the primary (the same PostgreSQL timeline, or
	// MySQL/MariaDB): writes are refused until one steps down.
	ErrSplitBrain = errors.New("rwsplit: more than one node takes writes; writes refused until one steps down")

	// ErrNoReplica is returned for a read when no replica is eligible and
	// the reads already sent to the primary for that reason reach the
	// limit set by [WithFallbackLimit].
	ErrNoReplica = errors.New("rwsplit: no replica eligible and the primary's fallback limit is reached")

	// errProbeTimeout replaces the error of a probe that ran out of time.
	errProbeTimeout = errors.New("rwsplit: health probe timed out")
)

// Error adds the operation and the node to an error that rwsplit returns
// on its own account (opening a node, validating configuration). It
// unwraps to the cause, so errors.Is and errors.As keep working. Errors a
// driver returns for a statement are passed through unchanged.
//
// Error never contains a DSN, a password or a session token.
type Error struct {
	Op   string // what rwsplit was doing: "new", "open", "ping", ...
	Node string // the node's name (host:port or the given name); may be empty
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("rwsplit: ")
	b.WriteString(e.Op)
	if e.Node != "" {
		b.WriteString(" ")
		b.WriteString(e.Node)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// configError reports a bad argument or option given to New or Open.
func configError(op, format string, args ...any) error {
	return &Error{Op: op, Err: fmt.Errorf(format, args...)}
}

// SQLSTATE codes and MySQL error numbers the classification below uses.
const (
	sqlstateReadOnlyTransaction = "25006" // read_only_sql_transaction (hot standby)
	sqlstateAdminShutdown       = "57P01"
	sqlstateCrashShutdown       = "57P02"
	sqlstateCannotConnectNow    = "57P03"

	mysqlOptionPreventsStatement = 1290 // ER_OPTION_PREVENTS_STATEMENT (--read-only)
	mysqlServerGone              = 2006 // CR_SERVER_GONE_ERROR
	mysqlServerLost              = 2013 // CR_SERVER_LOST
	mysqlParseError              = 1064 // ER_PARSE_ERROR
)

// sqlState returns the SQLSTATE of err when the driver reports one through a
// SQLState() method (pgx's *pgconn.PgError, lib/pq through Code is not
// covered), or "".
func sqlState(err error) string {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

// The core imports no driver, so that a program links only the drivers
// it imports itself. go-sql-driver/mysql's errors are recognised by their
// shape: a server error is a struct named MySQLError with a uint16 Number
// field, and a connection that broke mid-call is ErrInvalidConn, a plain
// errors.New("invalid connection").

// mysqlNumber returns the number of the first MySQL or MariaDB server
// error in err's tree, or 0.
func mysqlNumber(err error) uint16 {
	var n uint16
	findError(err, func(e error) bool {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return false
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct || v.Type().Name() != "MySQLError" {
			return false
		}
		f := v.FieldByName("Number")
		if !f.IsValid() || f.Kind() != reflect.Uint16 {
			return false
		}
		n = uint16(f.Uint())
		return true
	})
	return n
}

// isMySQLInvalidConn reports whether err's tree holds go-sql-driver/mysql's
// ErrInvalidConn.
func isMySQLInvalidConn(err error) bool {
	return findError(err, func(e error) bool {
		return e.Error() == "invalid connection" && reflect.TypeOf(e) == errorStringType
	})
}

// errorStringType is the type of the errors errors.New makes.
var errorStringType = reflect.TypeOf(errors.New(""))

// findError reports whether match holds for an error in err's tree, which
// it walks as errors.Is does: err, then what Unwrap returns, depth first.
func findError(err error, match func(error) bool) bool {
	for err != nil {
		if match(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if findError(e, match) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

// isReadOnlyRejection reports whether err says the node refused a statement
// because it is read-only: PostgreSQL SQLSTATE 25006 on a hot standby, or
// MySQL/MariaDB error 1290 under read_only. Such a statement failed before
// doing anything, so re-running it on the primary is safe.
func isReadOnlyRejection(err error) bool {
	if err == nil {
		return false
	}
	return sqlState(err) == sqlstateReadOnlyTransaction || mysqlNumber(err) == mysqlOptionPreventsStatement
}

// isUnknownObject reports whether err is a server's "no such table" or
// "no such column": PostgreSQL 42P01 (undefined_table) or 42703
// (undefined_column), MySQL/MariaDB 1146 (ER_NO_SUCH_TABLE) or 1054
// (ER_BAD_FIELD_ERROR).
func isUnknownObject(err error) bool {
	switch sqlState(err) {
	case "42P01", "42703":
		return true
	}
	switch mysqlNumber(err) {
	case 1146, 1054:
		return true
	}
	return false
}

// isRecoveryConflict reports whether err is a hot standby cancelling a
// query because it conflicts with replay. PostgreSQL reports it with the
// codes of a serialization failure (40001) or a deadlock (40P01); from a
// replica it means "try elsewhere", not "the node is down".
func isRecoveryConflict(err error) bool {
	switch sqlState(err) {
	case "40001", "40P01":
		return true
	}
	return false
}

// isCallerDone reports whether err is the caller's own cancellation or
// deadline. Such an error is never the node's fault and never retried.
func isCallerDone(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return true
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// isNodeFault reports whether err means the node (or the path to it) is
// broken rather than the statement: a refused or reset connection, a
// server shutting down, a lost connection. A caller's cancellation is never
// the node's fault.
func isNodeFault(ctx context.Context, err error) bool {
	if err == nil || isCallerDone(ctx, err) {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || isMySQLInvalidConn(err) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	switch state := sqlState(err); {
	case strings.HasPrefix(state, "08"), // connection exception
		state == sqlstateAdminShutdown, state == sqlstateCrashShutdown, state == sqlstateCannotConnectNow:
		return true
	}
	switch mysqlNumber(err) {
	case mysqlServerGone, mysqlServerLost:
		return true
	}
	return false
}

// errorText is an error's message for logs and Stats. Driver errors carry
// no credentials; rwsplit's own never do.
func errorText(err error) string {
	if err == nil {
		return ""
	}
	return withoutConnString(err.Error())
}

// withoutConnString drops the connection settings that some drivers quote
// in their connection errors (pgx: "failed to connect to `user=app
// database=app`: ..."), which name the user and database.
func withoutConnString(s string) string {
	for {
		i := strings.Index(s, "`")
		if i < 0 {
			return s
		}
		j := strings.Index(s[i+1:], "`")
		if j < 0 || !strings.Contains(s[i+1:i+1+j], "=") {
			return s
		}
		s = s[:i] + "(settings not shown)" + s[i+j+2:]
	}
}
