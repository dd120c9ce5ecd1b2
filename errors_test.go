package rwsplit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/go-sql-driver/mysql"
)

type stateErr string

func (e stateErr) Error() string    { return "server error " + string(e) }
func (e stateErr) SQLState() string { return string(e) }

type textErr string

func (e textErr) Error() string { return string(e) }

func TestErrorClassification(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		err       error
		nodeFault bool
		readOnly  bool
	}{
		{"nil", nil, false, false},
		{"bad conn", driver.ErrBadConn, true, false},
		{"wrapped bad conn", fmt.Errorf("query: %w", driver.ErrBadConn), true, false},
		{"mysql invalid conn", mysql.ErrInvalidConn, true, false},
		{"wrapped mysql invalid conn", fmt.Errorf("query: %w", mysql.ErrInvalidConn), true, false},
		{"invalid connection of another type", textErr("invalid connection"), false, false},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true, false},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true, false},
		{"sqlstate 08006", stateErr("08006"), true, false},
		{"admin shutdown", stateErr("57P01"), true, false},
		{"cannot connect now", stateErr("57P03"), true, false},
		{"hot standby read-only", stateErr("25006"), false, true},
		{"mysql read-only", &mysql.MySQLError{Number: 1290, Message: "--read-only"}, false, true},
		{"joined mysql read-only", errors.Join(errors.New("exec"), &mysql.MySQLError{Number: 1290}), false, true},
		{"mysql server gone", &mysql.MySQLError{Number: 2006}, true, false},
		{"mysql server lost", &mysql.MySQLError{Number: 2013}, true, false},
		{"syntax error", stateErr("42601"), false, false},
		{"unique violation", &mysql.MySQLError{Number: 1062}, false, false},
		{"no rows", sql.ErrNoRows, false, false},
		{"canceled", context.Canceled, false, false},
		{"deadline", fmt.Errorf("read: %w", context.DeadlineExceeded), false, false},
	}
	for _, tt := range tests {
		if got := isNodeFault(ctx, tt.err); got != tt.nodeFault {
			t.Errorf("%s: isNodeFault = %v, want %v", tt.name, got, tt.nodeFault)
		}
		if got := isReadOnlyRejection(tt.err); got != tt.readOnly {
			t.Errorf("%s: isReadOnlyRejection = %v, want %v", tt.name, got, tt.readOnly)
		}
	}
	// Once the caller's context is done, nothing is the node's fault.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if isNodeFault(done, driver.ErrBadConn) {
		t.Error("error after the caller cancelled counted as the node's fault")
	}
}

func TestErrorType(t *testing.T) {
	err := &Error{Op: "ping", Node: "127.0.0.1:5432", Err: sql.ErrConnDone}
	if got, want := err.Error(), "rwsplit: ping 127.0.0.1:5432: sql: connection is already closed"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, sql.ErrConnDone) {
		t.Error("Error does not unwrap")
	}
}

// TestCoreImportsNoDriver checks that the package links no database
// driver: a program gets the drivers it imports itself, and no other
// registers with database/sql. (This test binary imports
// go-sql-driver/mysql for its error types; the package does not.)
func TestCoreImportsNoDriver(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, drv := range []string{"github.com/go-sql-driver/", "github.com/jackc/", "github.com/lib/pq"} {
			if strings.HasPrefix(pkg, drv) {
				t.Errorf("the package depends on %s", pkg)
			}
		}
	}
}
