package fakedriver

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

func newDB(t testing.TB, s *Server) *sql.DB {
	t.Helper()
	db := s.DB()
	t.Cleanup(func() { db.Close() })
	return db
}

func nodeOf(t testing.TB, db *sql.DB, q string) string {
	t.Helper()
	var node string
	if err := db.QueryRow(q).Scan(&node); err != nil {
		t.Fatalf("QueryRow(%q): %v", q, err)
	}
	return node
}

type sqlStater interface{ SQLState() string }

func TestQueryReturnsNodeName(t *testing.T) {
	for _, name := range []string{"primary", "replica-1", ""} {
		t.Run(name, func(t *testing.T) {
			s := NewServer(name)
			if s.Name() != name {
				t.Fatalf("Name() = %q", s.Name())
			}
			db := newDB(t, s)
			for _, q := range []string{"SELECT 1", "INSERT INTO t VALUES (1)", ""} {
				if got := nodeOf(t, db, q); got != name {
					t.Errorf("query %q served by %q, want %q", q, got, name)
				}
			}
		})
	}
}

func TestRowsShape(t *testing.T) {
	db := newDB(t, NewServer("n1"))
	rs, err := db.Query("SELECT x FROM y WHERE a = $1 AND b = $2", 42, struct{ A int }{1})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	cols, err := rs.Columns()
	if err != nil || !slices.Equal(cols, []string{"node"}) {
		t.Fatalf("Columns() = %v, %v", cols, err)
	}
	n := 0
	for rs.Next() {
		var v any
		if err := rs.Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != "n1" {
			t.Fatalf("value %#v", v)
		}
		n++
	}
	if err := rs.Err(); err != nil || n != 1 {
		t.Fatalf("rows = %d, err %v", n, err)
	}
}

func TestExecResult(t *testing.T) {
	db := newDB(t, NewServer("n1"))
	res, err := db.Exec("UPDATE t SET a = $1", []byte("any"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := res.RowsAffected(); n != 1 || err != nil {
		t.Errorf("RowsAffected = %d, %v", n, err)
	}
	if id, err := res.LastInsertId(); id != 0 || err != nil {
		t.Errorf("LastInsertId = %d, %v", id, err)
	}
}

func TestCounts(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		op   func(t *testing.T, db *sql.DB)
		want map[Kind]int64 // kinds not listed must be 0 (Connect is checked separately)
	}{
		{"query", func(t *testing.T, db *sql.DB) { nodeOf(t, db, "SELECT 1") }, map[Kind]int64{Query: 1}},
		{"exec", func(t *testing.T, db *sql.DB) {
			if _, err := db.Exec("DELETE FROM t"); err != nil {
				t.Fatal(err)
			}
		}, map[Kind]int64{Exec: 1}},
		{"ping", func(t *testing.T, db *sql.DB) {
			if err := db.Ping(); err != nil {
				t.Fatal(err)
			}
		}, map[Kind]int64{Ping: 1}},
		{"tx commit", func(t *testing.T, db *sql.DB) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec("INSERT"); err != nil {
				t.Fatal(err)
			}
			var n string
			if err := tx.QueryRow("SELECT").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}, map[Kind]int64{Begin: 1, Exec: 1, Query: 1, Commit: 1}},
		{"tx rollback", func(t *testing.T, db *sql.DB) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
		}, map[Kind]int64{Begin: 1, Rollback: 1}},
		{"prepared", func(t *testing.T, db *sql.DB) {
			st, err := db.Prepare("SELECT $1")
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var n string
			if err := st.QueryRow(1).Scan(&n); err != nil || n != "s" {
				t.Fatalf("stmt query: %q, %v", n, err)
			}
			if _, err := st.Exec(2); err != nil {
				t.Fatal(err)
			}
		}, map[Kind]int64{Prepare: 1, Query: 1, Exec: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer("s")
			db := newDB(t, s)
			tc.op(t, db)
			for k := Query; k < numKinds; k++ {
				if k == Connect {
					continue
				}
				if got := s.Count(k); got != tc.want[k] {
					t.Errorf("Count(%v) = %d, want %d", k, got, tc.want[k])
				}
			}
			if got := s.Count(Connect); got != 1 {
				t.Errorf("Count(Connect) = %d, want 1", got)
			}
			s.ResetCounts()
			for k := Query; k < numKinds; k++ {
				if got := s.Count(k); got != 0 {
					t.Errorf("after ResetCounts Count(%v) = %d", k, got)
				}
			}
		})
	}
	if NewServer("x").Count(Kind(99)) != 0 || NewServer("x").Count(-1) != 0 {
		t.Error("out-of-range kind should count 0")
	}
}

func TestKindString(t *testing.T) {
	want := []string{"Query", "Exec", "Begin", "Prepare", "Ping", "Connect", "Commit", "Rollback", "Refused"}
	for i, w := range want {
		if got := Kind(i).String(); got != w {
			t.Errorf("Kind(%d) = %q, want %q", i, got, w)
		}
	}
	if got := Kind(42).String(); got != "Kind(42)" {
		t.Errorf("Kind(42) = %q", got)
	}
}

// isDownErr is what a caller of database/sql may see from a down server.
func isDownErr(err error) bool {
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, syscall.ECONNREFUSED)
}

func TestDown(t *testing.T) {
	ctx := context.Background()
	ops := []struct {
		name string
		op   func(db *sql.DB) error
	}{
		{"query", func(db *sql.DB) error { var n string; return db.QueryRowContext(ctx, "SELECT 1").Scan(&n) }},
		{"exec", func(db *sql.DB) error { _, err := db.ExecContext(ctx, "SELECT 1"); return err }},
		{"ping", func(db *sql.DB) error { return db.PingContext(ctx) }},
		{"begin", func(db *sql.DB) error {
			tx, err := db.BeginTx(ctx, nil)
			if err == nil {
				tx.Rollback()
			}
			return err
		}},
		{"prepare", func(db *sql.DB) error {
			st, err := db.PrepareContext(ctx, "SELECT 1")
			if err == nil {
				st.Close()
			}
			return err
		}},
	}
	for _, warm := range []bool{false, true} {
		for _, o := range ops {
			name := o.name + "/fresh"
			if warm {
				name = o.name + "/warm"
			}
			t.Run(name, func(t *testing.T) {
				s := NewServer("s")
				db := newDB(t, s)
				if warm {
					db.SetMaxIdleConns(4)
					for range 3 {
						nodeOf(t, db, "warm")
					}
				}
				s.SetDown(true)
				s.ResetCounts()
				err := o.op(db)
				if !isDownErr(err) {
					t.Fatalf("err = %v, want ErrBadConn or ECONNREFUSED", err)
				}
				// Through a pool, database/sql's last retry dials, so the
				// caller sees the connect error.
				var oe *net.OpError
				if !errors.As(err, &oe) || oe.Op != "dial" || !errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("err = %#v, want *net.OpError dial ECONNREFUSED", err)
				}
				if s.Count(Refused) == 0 {
					t.Error("Refused not counted")
				}
				for _, k := range []Kind{Query, Exec, Ping, Begin, Prepare, Connect} {
					if s.Count(k) != 0 {
						t.Errorf("Count(%v) = %d while down", k, s.Count(k))
					}
				}
				s.SetDown(false)
				if err := o.op(db); err != nil {
					t.Fatalf("after SetDown(false): %v", err)
				}
			})
		}
	}
}

func TestDownInsideTxAndConn(t *testing.T) {
	ctx := context.Background()
	s := NewServer("s")
	db := newDB(t, s)

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c2, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	s.SetDown(true)
	if _, err := tx.ExecContext(ctx, "INSERT"); !errors.Is(err, driver.ErrBadConn) {
		t.Errorf("tx exec err = %v, want ErrBadConn", err)
	}
	if err := tx.Commit(); !errors.Is(err, driver.ErrBadConn) {
		t.Errorf("commit err = %v, want ErrBadConn", err)
	}
	var n string
	if err := c.QueryRowContext(ctx, "SELECT").Scan(&n); !errors.Is(err, driver.ErrBadConn) {
		t.Errorf("conn query err = %v, want ErrBadConn", err)
	}
	// A restart does not revive connections opened before the crash.
	s.SetDown(false)
	if err := c2.PingContext(ctx); !errors.Is(err, driver.ErrBadConn) {
		t.Errorf("ping on pre-crash conn = %v, want ErrBadConn", err)
	}
	if got := nodeOf(t, db, "SELECT"); got != "s" {
		t.Errorf("pool after restart: %q", got)
	}
}

func TestReadOnly(t *testing.T) {
	s := NewServer("standby")
	db := newDB(t, s)
	s.SetReadOnly(true)
	tests := []struct {
		q     string
		write bool
	}{
		{"SELECT 1", false},
		{"select * from users where id = $1", false},
		{"INSERT INTO t VALUES (1)", true},
		{"insert into t values (1)", true},
		{"  UpDaTe t SET a = 1", true},
		{"DELETE FROM t", true},
		{"SELECT nextval('seq')", true},
		{"SELECT NEXTVAL('seq')", true},
		{"/* write */ SELECT 1", true},
		{"SELECT updated_at FROM t", true}, // substring match, documented caveat
		{"SELECT 'inser'", false},
		{"", false},
	}
	for _, tc := range tests {
		t.Run(tc.q, func(t *testing.T) {
			var n string
			qerr := db.QueryRow(tc.q).Scan(&n)
			_, eerr := db.Exec(tc.q)
			for which, err := range map[string]error{"query": qerr, "exec": eerr} {
				var st sqlStater
				if tc.write {
					if !errors.As(err, &st) || st.SQLState() != "25006" {
						t.Errorf("%s: err = %v, want SQLSTATE 25006", which, err)
					}
					if !errors.Is(err, ReadOnlyError{}) {
						t.Errorf("%s: errors.Is(ReadOnlyError{}) false", which)
					}
				} else if err != nil {
					t.Errorf("%s: err = %v, want nil", which, err)
				}
			}
		})
	}
	s.SetReadOnly(false)
	if _, err := db.Exec("INSERT INTO t"); err != nil {
		t.Errorf("read-only off: %v", err)
	}

	// Custom markers.
	s.SetReadOnly(true)
	s.SetWriteMarkers("MERGE", "")
	if _, err := db.Exec("merge into t"); !errors.Is(err, ReadOnlyError{}) {
		t.Errorf("custom marker: %v", err)
	}
	if _, err := db.Exec("INSERT INTO t"); err != nil {
		t.Errorf("insert with custom markers: %v", err)
	}
	s.SetWriteMarkers()
	if _, err := db.Exec("INSERT INTO t"); !errors.Is(err, ReadOnlyError{}) {
		t.Errorf("defaults restored: %v", err)
	}
	if msg := (ReadOnlyError{}).Error(); msg != "fakedriver: cannot execute statement in a read-only transaction (SQLSTATE 25006)" {
		t.Errorf("message %q", msg)
	}
}

func TestIsWrite(t *testing.T) {
	s := NewServer("s")
	tests := []struct {
		q    string
		want bool
	}{
		{"INSERT", true},
		{"xxInSeRtxx", true},
		{"inser", false},
		{"", false},
		{"iinsert", true},
		{"ÄINSERT", true},
		{"select * from t where x = 'upd'", false},
		{"SELECT 1; DELETE", true},
		{"wwrite", true},
		{"nextva", false},
	}
	for _, tc := range tests {
		if got := s.isWrite(tc.q); got != tc.want {
			t.Errorf("isWrite(%q) = %v", tc.q, got)
		}
	}
	s.SetWriteMarkers("", "LOCK")
	if !s.isWrite("lock table t") || s.isWrite("INSERT") {
		t.Error("custom markers not applied")
	}
}

func TestErrorKnobs(t *testing.T) {
	errX := errors.New("injected")
	tests := []struct {
		name string
		set  func(s *Server, err error)
		op   func(db *sql.DB) error
		kind Kind
	}{
		{"ping", (*Server).SetPingError, func(db *sql.DB) error { return db.Ping() }, Ping},
		{"query", (*Server).SetQueryError, func(db *sql.DB) error { var n string; return db.QueryRow("SELECT").Scan(&n) }, Query},
		{"exec", (*Server).SetExecError, func(db *sql.DB) error { _, err := db.Exec("UPDATE"); return err }, Exec},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer("s")
			db := newDB(t, s)
			tc.set(s, errX)
			if err := tc.op(db); !errors.Is(err, errX) {
				t.Fatalf("err = %v, want %v", err, errX)
			}
			if s.Count(tc.kind) != 1 {
				t.Errorf("failed %v still counted once: got %d", tc.kind, s.Count(tc.kind))
			}
			tc.set(s, nil)
			if err := tc.op(db); err != nil {
				t.Fatalf("after clearing: %v", err)
			}
		})
	}
}

func waitInFlight(t *testing.T, s *Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.InFlight() != n {
		if time.Now().After(deadline) {
			t.Fatalf("InFlight = %d, want %d", s.InFlight(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBlockRelease(t *testing.T) {
	s := NewServer("s")
	db := newDB(t, s)
	db.SetMaxIdleConns(8)
	nodeOf(t, db, "warm")

	release := s.Block()
	const n = 4
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			var name string
			errs <- db.QueryRow("SELECT").Scan(&name)
		})
	}
	waitInFlight(t, s, n)
	select {
	case err := <-errs:
		t.Fatalf("query finished while blocked: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	release()
	release() // idempotent
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if s.InFlight() != 0 {
		t.Errorf("InFlight = %d after release", s.InFlight())
	}
	nodeOf(t, db, "unblocked")
}

func TestBlockNested(t *testing.T) {
	s := NewServer("s")
	db := newDB(t, s)
	nodeOf(t, db, "warm")
	r1 := s.Block()
	r2 := s.Block()
	done := make(chan error, 1)
	go func() { done <- db.Ping() }()
	waitInFlight(t, s, 1)
	r1()
	select {
	case err := <-done:
		t.Fatalf("finished with one block still held: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	r2()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestBlockCancellation(t *testing.T) {
	tests := []struct {
		name string
		warm bool // warm: the query itself blocks; fresh: the connect blocks
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline/query", true, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 30*time.Millisecond)
		}, context.DeadlineExceeded},
		{"deadline/connect", false, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 30*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel/query", true, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(30*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer("s")
			db := newDB(t, s)
			if tc.warm {
				nodeOf(t, db, "warm")
			}
			release := s.Block()
			defer release()
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			var n string
			err := db.QueryRowContext(ctx, "SELECT").Scan(&n)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("took %v", el)
			}
			waitInFlight(t, s, 0)
		})
	}
}

func TestLatency(t *testing.T) {
	s := NewServer("s")
	db := newDB(t, s)
	nodeOf(t, db, "warm")
	const d = 40 * time.Millisecond
	s.SetLatency(d)
	start := time.Now()
	nodeOf(t, db, "SELECT")
	if el := time.Since(start); el < d {
		t.Errorf("query took %v, want >= %v", el, d)
	}

	s.SetLatency(time.Hour)
	ops := []struct {
		name string
		op   func(ctx context.Context) error
	}{
		{"query", func(ctx context.Context) error { var n string; return db.QueryRowContext(ctx, "SELECT").Scan(&n) }},
		{"exec", func(ctx context.Context) error { _, err := db.ExecContext(ctx, "X"); return err }},
		{"ping", func(ctx context.Context) error { return db.PingContext(ctx) }},
		{"begin", func(ctx context.Context) error { _, err := db.BeginTx(ctx, nil); return err }},
		{"connect", func(ctx context.Context) error { return newDB(t, s).PingContext(ctx) }},
	}
	for _, o := range ops {
		t.Run(o.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			start := time.Now()
			if err := o.op(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want DeadlineExceeded", err)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("took %v", el)
			}
		})
	}
	s.SetLatency(0)
	nodeOf(t, db, "no latency")
}

func TestTransactionsRecorded(t *testing.T) {
	tests := []struct {
		name string
		opts *sql.TxOptions
		ro   bool
		iso  driver.IsolationLevel
	}{
		{"default", nil, false, driver.IsolationLevel(sql.LevelDefault)},
		{"read-only", &sql.TxOptions{ReadOnly: true}, true, driver.IsolationLevel(sql.LevelDefault)},
		{"serializable", &sql.TxOptions{Isolation: sql.LevelSerializable}, false, driver.IsolationLevel(sql.LevelSerializable)},
		{"ro repeatable read", &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}, true, driver.IsolationLevel(sql.LevelRepeatableRead)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer("s")
			s.SetRecord(true)
			db := newDB(t, s)
			tx, err := db.BeginTx(context.Background(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var n string
			if err := tx.QueryRow("SELECT in tx").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec("UPDATE in tx"); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			nodeOf(t, db, "SELECT after")
			in := Entry{InTx: true, ReadOnlyTx: tc.ro, Isolation: tc.iso}
			with := func(k Kind, q string) Entry { e := in; e.Kind, e.Query = k, q; return e }
			want := []Entry{
				{Kind: Connect},
				with(Begin, ""),
				with(Query, "SELECT in tx"),
				with(Exec, "UPDATE in tx"),
				with(Commit, ""),
				{Kind: Query, Query: "SELECT after"},
			}
			if got := s.Log(); !slices.Equal(got, want) {
				t.Errorf("log:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestLog(t *testing.T) {
	s := NewServer("s")
	db := newDB(t, s)
	nodeOf(t, db, "not recorded")
	if l := s.Log(); len(l) != 0 {
		t.Fatalf("log recorded while off: %+v", l)
	}
	s.SetRecord(true)
	nodeOf(t, db, "SELECT 1")
	if _, err := db.Exec("INSERT 2"); err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	st, err := db.Prepare("SELECT 3")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Exec(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	want := []Entry{
		{Kind: Query, Query: "SELECT 1"},
		{Kind: Exec, Query: "INSERT 2"},
		{Kind: Ping},
		{Kind: Prepare, Query: "SELECT 3"},
		{Kind: Exec, Query: "SELECT 3"},
	}
	got := s.Log()
	if !slices.Equal(got, want) {
		t.Fatalf("log:\n got %+v\nwant %+v", got, want)
	}
	got[0].Query = "mutated"
	if s.Log()[0].Query != "SELECT 1" {
		t.Error("Log did not return a copy")
	}
	s.SetRecord(false)
	nodeOf(t, db, "off again")
	if len(s.Log()) != len(want) {
		t.Error("recorded after SetRecord(false)")
	}
	s.ResetLog()
	if len(s.Log()) != 0 {
		t.Error("ResetLog did not clear")
	}
}

// Several Rows open on one connection at once must not share state.
func TestConcurrentRowsOnOneConn(t *testing.T) {
	s := NewServer("s")
	db := newDB(t, s)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	r1, err := tx.Query("A")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := tx.Query("B")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*sql.Rows{r1, r2} {
		n := 0
		for r.Next() {
			var v string
			if err := r.Scan(&v); err != nil || v != "s" {
				t.Fatalf("scan %q %v", v, err)
			}
			n++
		}
		if n != 1 || r.Err() != nil {
			t.Fatalf("rows %d err %v", n, r.Err())
		}
		r.Close()
	}
	var v string
	if err := tx.QueryRow("C").Scan(&v); err != nil || v != "s" {
		t.Fatalf("reuse after close: %q %v", v, err)
	}
}

func TestConcurrentUse(t *testing.T) {
	servers := []*Server{NewServer("a"), NewServer("b")}
	var wg sync.WaitGroup
	for _, s := range servers {
		db := newDB(t, s)
		s.SetRecord(true)
		for range 8 {
			wg.Go(func() {
				for i := range 50 {
					if got := nodeOf(t, db, "SELECT"); got != s.Name() {
						t.Errorf("got %q", got)
					}
					if _, err := db.Exec("UPDATE"); err != nil {
						t.Error(err)
					}
					if i%10 == 0 {
						s.SetLatency(0)
						s.SetReadOnly(false)
						_ = s.Log()
						s.Block()()
					}
				}
			})
		}
	}
	wg.Wait()
	for _, s := range servers {
		if s.Count(Query) != 400 || s.Count(Exec) != 400 {
			t.Errorf("%s: queries %d execs %d", s.Name(), s.Count(Query), s.Count(Exec))
		}
		if len(s.Log()) < 800 {
			t.Errorf("%s: log has %d entries", s.Name(), len(s.Log()))
		}
	}
}

// The driver itself must not allocate on the hot path.
func TestDriverAllocs(t *testing.T) {
	s := NewServer("s")
	c, err := s.Connector().Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cc := c.(*conn)
	ctx := context.Background()
	dest := make([]driver.Value, 1)
	q := testing.AllocsPerRun(1000, func() {
		r, err := cc.QueryContext(ctx, "SELECT 1", nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = r.Columns()
		if err := r.Next(dest); err != nil {
			t.Fatal(err)
		}
		r.Close()
	})
	e := testing.AllocsPerRun(1000, func() {
		if _, err := cc.ExecContext(ctx, "UPDATE t", nil); err != nil {
			t.Fatal(err)
		}
	})
	s.SetReadOnly(true)
	ro := testing.AllocsPerRun(1000, func() {
		if _, err := cc.ExecContext(ctx, "UPDATE t", nil); err == nil {
			t.Fatal("want read-only error")
		}
	})
	if q != 0 || e != 0 || ro != 0 {
		t.Errorf("allocs: query %v exec %v read-only exec %v; want 0", q, e, ro)
	}
}

func TestDriverOpen(t *testing.T) {
	s := NewServer("s")
	c, err := s.Connector().Driver().Open("ignored")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if s.Count(Connect) != 1 {
		t.Errorf("Connect = %d", s.Count(Connect))
	}
}

func TestSetResultAndHangOn(t *testing.T) {
	s := NewServer("n")
	db := s.DB()
	defer db.Close()
	s.SetResult("SHOW STATUS", []string{"a", "b"}, "x", int64(7))
	var a string
	var b int64
	if err := db.QueryRow("SHOW STATUS LIKE 'q'").Scan(&a, &b); err != nil || a != "x" || b != 7 {
		t.Fatalf("scripted query: %q %d %v", a, b, err)
	}
	var name string
	if err := db.QueryRow("SELECT 1").Scan(&name); err != nil || name != "n" {
		t.Fatalf("unscripted query: %q %v", name, err)
	}
	release := s.HangOn("SLOW")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := db.ExecContext(ctx, "UPDATE SLOW"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung exec: %v, want the context's deadline", err)
	}
	if _, err := db.Exec("UPDATE fast"); err != nil {
		t.Fatalf("other exec while one hangs: %v", err)
	}
	release()
	if _, err := db.Exec("UPDATE SLOW"); err != nil {
		t.Fatalf("exec after release: %v", err)
	}
}
