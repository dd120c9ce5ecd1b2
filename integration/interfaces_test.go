package integration

import (
	"context"
	"database/sql"

	"gorm.io/gorm"

	"github.com/rwsplit/rwsplit"
)

// DBTX is the interface sqlc generates in every project's db.go; a *DB
// must satisfy it to be passed to sqlc's New(db DBTX).
type DBTX interface {
	ExecContext(context.Context, string, ...interface{}) (sql.Result, error)
	PrepareContext(context.Context, string) (*sql.Stmt, error)
	QueryContext(context.Context, string, ...interface{}) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...interface{}) *sql.Row
}

// Compile-time proof that *rwsplit.DB drops in for sqlc and GORM.
var (
	_ DBTX                = (*rwsplit.DB)(nil)
	_ gorm.ConnPool       = (*rwsplit.DB)(nil)
	_ gorm.TxBeginner     = (*rwsplit.DB)(nil)
	_ gorm.GetDBConnector = (*rwsplit.DB)(nil)
)
