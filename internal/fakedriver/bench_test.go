package fakedriver

import (
	"context"
	"database/sql/driver"
	"runtime"
	"testing"
)

func benchDB(b *testing.B) *Server {
	b.Helper()
	return NewServer("bench")
}

// BenchmarkQuery is a QueryRow+Scan through database/sql, in parallel.
func BenchmarkQuery(b *testing.B) {
	s := benchDB(b)
	db := s.DB()
	defer db.Close()
	db.SetMaxIdleConns(4 * runtime.GOMAXPROCS(0))
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var name string
		for pb.Next() {
			if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&name); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkExec is an ExecContext through database/sql, in parallel.
func BenchmarkExec(b *testing.B) {
	s := benchDB(b)
	db := s.DB()
	defer db.Close()
	db.SetMaxIdleConns(4 * runtime.GOMAXPROCS(0))
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := db.ExecContext(ctx, "UPDATE t SET a = 1"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkQuerySerial and BenchmarkExecSerial give exact per-op allocation
// counts without parallel pool churn.
func BenchmarkQuerySerial(b *testing.B) {
	db := benchDB(b).DB()
	defer db.Close()
	ctx := context.Background()
	var name string
	b.ReportAllocs()
	for b.Loop() {
		if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&name); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExecSerial(b *testing.B) {
	db := benchDB(b).DB()
	defer db.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := db.ExecContext(ctx, "UPDATE t SET a = 1"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDriverQuery measures the driver alone (no database/sql):
// QueryContext + Columns + Next + Close on one connection.
func BenchmarkDriverQuery(b *testing.B) {
	c, err := benchDB(b).Connector().Connect(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	qc := c.(driver.QueryerContext)
	ctx := context.Background()
	dest := make([]driver.Value, 1)
	b.ReportAllocs()
	for b.Loop() {
		r, err := qc.QueryContext(ctx, "SELECT 1", nil)
		if err != nil {
			b.Fatal(err)
		}
		_ = r.Columns()
		_ = r.Next(dest)
		r.Close()
	}
}

func BenchmarkDriverExecReadOnlyCheck(b *testing.B) {
	s := benchDB(b)
	s.SetReadOnly(true)
	c, err := s.Connector().Connect(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	ec := c.(driver.ExecerContext)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ec.ExecContext(ctx, "SELECT a, b, c FROM some_table WHERE id = $1 AND x > 10", nil); err != nil {
			b.Fatal(err)
		}
	}
}
