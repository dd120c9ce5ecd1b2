package fakedriver

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Kind is the kind of operation a Server records.
type Kind int

// Kinds of recorded operations. Query, Exec, Begin, Prepare, Ping and
// Connect are the operations named by the brief; Commit, Rollback and
// Refused are additions.
const (
	Query    Kind = iota // a query (Conn.QueryContext or a prepared Stmt's Query)
	Exec                 // an exec (Conn.ExecContext or a prepared Stmt's Exec)
	Begin                // a transaction begin
	Prepare              // a statement preparation
	Ping                 // a ping
	Connect              // a new connection
	Commit               // a successful transaction commit
	Rollback             // a successful transaction rollback
	Refused              // any operation rejected because the server was down or the connection was killed by a crash
	numKinds
)

var kindNames = [numKinds]string{"Query", "Exec", "Begin", "Prepare", "Ping", "Connect", "Commit", "Rollback", "Refused"}

// String returns the name of the kind, e.g. "Query".
func (k Kind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Entry is one recorded operation in a Server's log.
type Entry struct {
	Kind Kind
	// Query is the statement text (empty for Begin, Ping, Connect, Commit,
	// Rollback, and for Refused connects).
	Query string
	// InTx is true for statements run inside a transaction and for the
	// Begin, Commit and Rollback of that transaction.
	InTx bool
	// ReadOnlyTx and Isolation are the TxOptions of the enclosing
	// transaction when InTx is true.
	ReadOnlyTx bool
	Isolation  driver.IsolationLevel
}

// ReadOnlyError mimics PostgreSQL SQLSTATE 25006 (read_only_sql_transaction)
// the way pgx reports it. It is returned by a read-only server
// (see [Server.SetReadOnly]) for write-marked statements.
type ReadOnlyError struct{}

func (ReadOnlyError) Error() string {
	return "fakedriver: cannot execute statement in a read-only transaction (SQLSTATE 25006)"
}

// SQLState returns "25006".
func (ReadOnlyError) SQLState() string { return "25006" }

// defaultWriteMarkers are the words that make a statement a write for a
// read-only server, matched as ASCII case-insensitive substrings.
var defaultWriteMarkers = newMarkers("insert", "update", "delete", "nextval", "write")

// markers is an immutable set of lower-case write markers plus a table of
// their first bytes, so isWrite scans the statement once.
type markers struct {
	words []string
	first [256]bool
}

func newMarkers(words ...string) *markers {
	m := &markers{}
	for _, w := range words {
		if w == "" {
			continue
		}
		b := []byte(w)
		for i, c := range b {
			b[i] = lower(c)
		}
		m.words = append(m.words, string(b))
		m.first[b[0]] = true
	}
	return m
}

// Server is one fake database node. All methods are safe for concurrent use.
type Server struct {
	name      string
	nameValue driver.Value // name boxed once so Rows.Next does not allocate

	// Counters, sharded by connection: a real server keeps its counters
	// in another process, so the fake must not make the clients' cores
	// share a cache line that every operation writes. The read-mostly
	// fields below are written by tests only.
	shards  [numShards]opShard
	connSeq atomic.Uint32

	record atomic.Bool
	logMu  sync.Mutex
	log    []Entry

	latency  atomic.Int64 // time.Duration
	down     atomic.Bool
	gen      atomic.Int64 // bumped on every crash; connections of older generations are dead
	readOnly atomic.Bool
	pingErr  atomic.Pointer[error]
	connErr  atomic.Pointer[error] // every new connection fails with it (refused credentials, say)
	queryErr atomic.Pointer[error]
	execErr  atomic.Pointer[error]
	markers  atomic.Pointer[markers]

	gateMu sync.Mutex
	gates  atomic.Pointer[[]*gate] // immutable slice, replaced under gateMu

	// scripts answer or hold the statements that contain their match
	// (SetResult, HangOn): an immutable slice, replaced under gateMu.
	scripts atomic.Pointer[[]*script]
}

// script is what SetResult or HangOn asked of the statements containing
// match: a row to answer with, or a gate to wait at.
type script struct {
	match string
	cols  []string
	row   []driver.Value
	hang  *gate
}

// opShard holds the counters of the connections assigned to it, on cache
// lines of its own.
type opShard struct {
	counts   [numKinds]atomic.Int64
	inFlight atomic.Int64
	_        [128 - (numKinds+1)*8%128]byte
}

const numShards = 8

type gate struct {
	ch   chan struct{}
	once sync.Once
}

// NewServer returns a server named name that is up, has no latency and no
// injected errors, and does not record a log.
func NewServer(name string) *Server {
	s := &Server{name: name, nameValue: name}
	s.markers.Store(defaultWriteMarkers)
	return s
}

// Name returns the server's name, which is the value every query returns.
func (s *Server) Name() string { return s.name }

// Connector returns a driver.Connector whose connections talk to s.
func (s *Server) Connector() driver.Connector { return connector{s} }

// DB returns a new *sql.DB pool on s (sql.OpenDB(s.Connector())).
func (s *Server) DB() *sql.DB { return sql.OpenDB(s.Connector()) }

// Count returns the number of operations of the given kind s received since
// creation or the last ResetCounts.
func (s *Server) Count(kind Kind) int64 {
	if kind < 0 || kind >= numKinds {
		return 0
	}
	var n int64
	for i := range s.shards {
		n += s.shards[i].counts[kind].Load()
	}
	return n
}

// ResetCounts sets all counts to zero. It does not clear the log
// (see ResetLog).
func (s *Server) ResetCounts() {
	for i := range s.shards {
		for k := range s.shards[i].counts {
			s.shards[i].counts[k].Store(0)
		}
	}
}

// SetRecord turns the statement log on or off. It is off by default.
func (s *Server) SetRecord(on bool) { s.record.Store(on) }

// Log returns a copy of the log.
func (s *Server) Log() []Entry {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return append([]Entry(nil), s.log...)
}

// ResetLog clears the log.
func (s *Server) ResetLog() {
	s.logMu.Lock()
	s.log = nil
	s.logMu.Unlock()
}

// SetLatency makes every connect, query, exec, prepare, begin and ping wait d
// first, honouring context cancellation. 0 means no latency.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// SetDown crashes (true) or restarts (false) the server. While down, Connect
// fails with a *net.OpError wrapping syscall.ECONNREFUSED and every operation
// on an existing connection returns driver.ErrBadConn. Connections that
// existed when the server went down stay dead after it comes back up.
func (s *Server) SetDown(down bool) {
	if down {
		if s.down.CompareAndSwap(false, true) {
			s.gen.Add(1)
		}
		return
	}
	s.down.Store(false)
}

// SetPingError makes Ping return err (nil restores success).
func (s *Server) SetPingError(err error) { storeErr(&s.pingErr, err) }

// SetConnectError makes every new connection fail with err (nil: none), as
// a server refusing the credentials does; open connections stay usable.
func (s *Server) SetConnectError(err error) { storeErr(&s.connErr, err) }

// SetQueryError makes every query return err before any row (nil restores success).
func (s *Server) SetQueryError(err error) { storeErr(&s.queryErr, err) }

// SetExecError makes every exec return err (nil restores success).
func (s *Server) SetExecError(err error) { storeErr(&s.execErr, err) }

func storeErr(p *atomic.Pointer[error], err error) {
	if err == nil {
		p.Store(nil)
		return
	}
	p.Store(&err)
}

func loadErr(p *atomic.Pointer[error]) error {
	if e := p.Load(); e != nil {
		return *e
	}
	return nil
}

// SetReadOnly makes the server a hot standby: while on, any query or exec
// whose text contains one of the write markers (ASCII case-insensitive
// substring; default "insert", "update", "delete", "nextval", "write")
// fails with ReadOnlyError.
func (s *Server) SetReadOnly(on bool) { s.readOnly.Store(on) }

// SetWriteMarkers replaces the words SetReadOnly looks for. Matching is an
// ASCII case-insensitive substring search. Calling it with no words restores
// the defaults; empty words are ignored.
func (s *Server) SetWriteMarkers(words ...string) {
	if len(words) == 0 {
		s.markers.Store(defaultWriteMarkers)
		return
	}
	s.markers.Store(newMarkers(words...))
}

// Block makes operations started after it wait until release is called or
// their context is done (they then return ctx.Err()). Connects, queries,
// execs, prepares, begins and pings are blocked; Commit, Rollback and row
// iteration are not. release is idempotent. Several Blocks may be active at
// once; an operation waits for all of them.
func (s *Server) Block() (release func()) {
	g := &gate{ch: make(chan struct{})}
	s.gateMu.Lock()
	var next []*gate
	if old := s.gates.Load(); old != nil {
		next = append(next, *old...)
	}
	next = append(next, g)
	s.gates.Store(&next)
	s.gateMu.Unlock()
	return func() {
		g.once.Do(func() {
			s.gateMu.Lock()
			if old := s.gates.Load(); old != nil {
				rest := make([]*gate, 0, len(*old))
				for _, o := range *old {
					if o != g {
						rest = append(rest, o)
					}
				}
				if len(rest) == 0 {
					s.gates.Store(nil)
				} else {
					s.gates.Store(&rest)
				}
			}
			s.gateMu.Unlock()
			close(g.ch)
		})
	}
}

// InFlight returns the number of operations currently executing on the
// server (connect, query, exec, prepare, begin, ping), including those
// waiting on Block or latency.
func (s *Server) InFlight() int64 {
	var n int64
	for i := range s.shards {
		n += s.shards[i].inFlight.Load()
	}
	return n
}

// ---- internals ----

func (s *Server) add(sh *opShard, kind Kind, query string, t *txState) {
	sh.counts[kind].Add(1)
	if s.record.Load() {
		e := Entry{Kind: kind, Query: query}
		if t != nil && t.active {
			e.InTx, e.ReadOnlyTx, e.Isolation = true, t.readOnly, t.iso
		}
		s.logMu.Lock()
		s.log = append(s.log, e)
		s.logMu.Unlock()
	}
}

// wait blocks for the active gates and the latency.
func (s *Server) wait(ctx context.Context) error {
	if gs := s.gates.Load(); gs != nil {
		for _, g := range *gs {
			select {
			case <-g.ch:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if d := time.Duration(s.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	return nil
}

// isWrite reports whether q contains one of the write markers, ignoring
// ASCII case, in a single pass without allocating.
func (s *Server) isWrite(q string) bool {
	m := s.markers.Load()
	for i := 0; i < len(q); i++ {
		c := lower(q[i])
		if !m.first[c] {
			continue
		}
		for _, w := range m.words {
			if w[0] == c && hasPrefixFold(q[i:], w) {
				return true
			}
		}
	}
	return false
}

// hasPrefixFold reports whether s starts with prefix (lower-case ASCII),
// ignoring ASCII case.
func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for j := 0; j < len(prefix); j++ {
		if lower(s[j]) != prefix[j] {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// fakeAddr names the server in dial errors.
type fakeAddr string

func (fakeAddr) Network() string  { return "tcp" }
func (a fakeAddr) String() string { return string(a) }

func (s *Server) connect(ctx context.Context) (driver.Conn, error) {
	sh := &s.shards[s.connSeq.Add(1)%numShards]
	sh.inFlight.Add(1)
	defer sh.inFlight.Add(-1)
	if s.down.Load() {
		s.add(sh, Refused, "", nil)
		return nil, s.refusedErr()
	}
	if err := loadErr(&s.connErr); err != nil {
		s.add(sh, Refused, "", nil)
		return nil, err
	}
	s.add(sh, Connect, "", nil)
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	gen := s.gen.Load()
	if s.down.Load() {
		return nil, s.refusedErr()
	}
	return &conn{s: s, sh: sh, gen: gen}, nil
}

func (s *Server) refusedErr() error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: fakeAddr(s.name), Err: syscall.ECONNREFUSED}
}

type connector struct{ s *Server }

func (c connector) Connect(ctx context.Context) (driver.Conn, error) { return c.s.connect(ctx) }
func (c connector) Driver() driver.Driver                            { return fakeDriver(c) }

// fakeDriver lets the connector satisfy driver.Connector.Driver; Open ignores
// the name and connects to the server.
type fakeDriver struct{ s *Server }

func (d fakeDriver) Open(string) (driver.Conn, error) { return d.s.connect(context.Background()) }

// okResult is the zero-size result of every Exec; converting it to
// driver.Result does not allocate.
type okResult struct{}

func (okResult) LastInsertId() (int64, error) { return 0, nil }
func (okResult) RowsAffected() (int64, error) { return 1, nil }

type txState struct {
	active   bool
	readOnly bool
	iso      driver.IsolationLevel
}

// conn is one connection. database/sql serialises all calls on a connection
// (including Rows and Tx methods) with its own mutex, so conn's plain fields
// need no locking.
type conn struct {
	s      *Server
	sh     *opShard // where its operations are counted
	gen    int64
	tx     txState
	closed bool

	rows     rows // reused while not in use by an open Rows
	rowsBusy bool
	txObj    tx
	cols     [1]string
}

var (
	_ driver.Conn               = (*conn)(nil)
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
	_ driver.SessionResetter    = (*conn)(nil)
	_ driver.Validator          = (*conn)(nil)
	_ driver.NamedValueChecker  = (*conn)(nil)
)

// bad reports whether the connection is unusable: the server is down or
// crashed since the connection was opened.
func (c *conn) bad() bool {
	return c.closed || c.s.down.Load() || c.gen != c.s.gen.Load()
}

// start is the common prologue of an operation: refuse on a dead
// connection, record, then wait for gates and latency.
func (c *conn) start(ctx context.Context, kind Kind, query string) error {
	s := c.s
	if c.bad() {
		s.add(c.sh, Refused, query, &c.tx)
		return driver.ErrBadConn
	}
	s.add(c.sh, kind, query, &c.tx)
	if err := s.wait(ctx); err != nil {
		return err
	}
	if sc := s.script(query); sc != nil && sc.hang != nil {
		select {
		case <-sc.hang.ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if c.bad() {
		return driver.ErrBadConn
	}
	return nil
}

func (c *conn) query(ctx context.Context, q string) (driver.Rows, error) {
	s := c.s
	c.sh.inFlight.Add(1)
	defer c.sh.inFlight.Add(-1)
	if err := c.start(ctx, Query, q); err != nil {
		return nil, err
	}
	if err := loadErr(&s.queryErr); err != nil {
		return nil, err
	}
	if s.readOnly.Load() && s.isWrite(q) {
		return nil, ReadOnlyError{}
	}
	if sc := s.script(q); sc != nil && sc.row != nil {
		return &scriptRows{cols: sc.cols, row: sc.row}, nil
	}
	r := &c.rows
	if c.rowsBusy {
		r = &rows{} // a second Rows open on this connection at the same time
	} else {
		c.rowsBusy = true
	}
	r.c, r.done, r.closed = c, false, false
	return r, nil
}

func (c *conn) exec(ctx context.Context, q string) (driver.Result, error) {
	s := c.s
	c.sh.inFlight.Add(1)
	defer c.sh.inFlight.Add(-1)
	if err := c.start(ctx, Exec, q); err != nil {
		return nil, err
	}
	if err := loadErr(&s.execErr); err != nil {
		return nil, err
	}
	if s.readOnly.Load() && s.isWrite(q) {
		return nil, ReadOnlyError{}
	}
	return okResult{}, nil
}

func (c *conn) QueryContext(ctx context.Context, q string, _ []driver.NamedValue) (driver.Rows, error) {
	return c.query(ctx, q)
}

func (c *conn) ExecContext(ctx context.Context, q string, _ []driver.NamedValue) (driver.Result, error) {
	return c.exec(ctx, q)
}

// CheckNamedValue accepts every argument as is.
func (c *conn) CheckNamedValue(*driver.NamedValue) error { return nil }

func (c *conn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	c.sh.inFlight.Add(1)
	defer c.sh.inFlight.Add(-1)
	if err := c.start(ctx, Prepare, q); err != nil {
		return nil, err
	}
	return &stmt{c: c, q: q}, nil
}

func (c *conn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.sh.inFlight.Add(1)
	defer c.sh.inFlight.Add(-1)
	c.tx = txState{active: true, readOnly: opts.ReadOnly, iso: opts.Isolation}
	if err := c.start(ctx, Begin, ""); err != nil {
		c.tx = txState{}
		return nil, err
	}
	c.txObj.c = c
	return &c.txObj, nil
}

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) Ping(ctx context.Context) error {
	s := c.s
	c.sh.inFlight.Add(1)
	defer c.sh.inFlight.Add(-1)
	if err := c.start(ctx, Ping, ""); err != nil {
		return err
	}
	return loadErr(&s.pingErr)
}

// ResetSession reports ErrBadConn for a dead connection so database/sql
// discards it before reuse.
func (c *conn) ResetSession(context.Context) error {
	c.tx = txState{}
	if c.bad() {
		return driver.ErrBadConn
	}
	return nil
}

// IsValid reports whether the connection may be returned to the pool.
func (c *conn) IsValid() bool { return !c.bad() }

func (c *conn) Close() error {
	c.closed = true
	return nil
}

// rows is the single-row result of every query.
type rows struct {
	c      *conn
	done   bool
	closed bool
}

func (r *rows) Columns() []string {
	// A fresh copy per connection so a caller mutating the slice returned by
	// sql.Rows.Columns cannot affect other connections; no allocation.
	r.c.cols[0] = "node"
	return r.c.cols[:]
}

// ColumnTypeDatabaseTypeName implements driver.RowsColumnTypeDatabaseTypeName.
func (r *rows) ColumnTypeDatabaseTypeName(int) string { return "TEXT" }

func (r *rows) Next(dest []driver.Value) error {
	if r.done || r.closed {
		return io.EOF
	}
	r.done = true
	dest[0] = r.c.s.nameValue
	return nil
}

func (r *rows) Close() error {
	if !r.closed {
		r.closed = true
		if r == &r.c.rows {
			r.c.rowsBusy = false
		}
	}
	return nil
}

// SetResult makes every query whose text contains match (case-sensitive)
// answer with one row of the given columns and values instead of the
// server's name, as a server answers a statement the test scripts. Later
// calls for the same match replace earlier ones.
func (s *Server) SetResult(match string, cols []string, row ...driver.Value) {
	s.addScript(&script{match: match, cols: append([]string(nil), cols...), row: append([]driver.Value(nil), row...)})
}

// HangOn makes every query or exec whose text contains match, started
// after it, wait until release is called or its context is done (it then
// returns ctx.Err()), as a statement on a hung host does. release is
// idempotent.
func (s *Server) HangOn(match string) (release func()) {
	g := &gate{ch: make(chan struct{})}
	s.addScript(&script{match: match, hang: g})
	return func() { g.once.Do(func() { close(g.ch) }) }
}

func (s *Server) addScript(sc *script) {
	s.gateMu.Lock()
	defer s.gateMu.Unlock()
	var next []*script
	if old := s.scripts.Load(); old != nil {
		for _, o := range *old {
			if o.match != sc.match || (o.hang == nil) != (sc.hang == nil) {
				next = append(next, o)
			}
		}
	}
	next = append(next, sc)
	s.scripts.Store(&next)
}

// script returns the latest script whose match q contains, or nil.
func (s *Server) script(q string) *script {
	scs := s.scripts.Load()
	if scs == nil {
		return nil
	}
	for i := len(*scs) - 1; i >= 0; i-- {
		if sc := (*scs)[i]; strings.Contains(q, sc.match) {
			return sc
		}
	}
	return nil
}

// scriptRows is the one row SetResult scripted.
type scriptRows struct {
	cols []string
	row  []driver.Value
	done bool
}

func (r *scriptRows) Columns() []string { return r.cols }
func (r *scriptRows) Close() error      { return nil }

func (r *scriptRows) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done = true
	copy(dest, r.row)
	return nil
}

// tx is the transaction object, embedded in its connection.
type tx struct{ c *conn }

func (t *tx) end(kind Kind) error {
	c := t.c
	defer func() { c.tx = txState{} }()
	if c.bad() {
		c.s.add(c.sh, Refused, "", &c.tx)
		return driver.ErrBadConn
	}
	c.s.add(c.sh, kind, "", &c.tx)
	return nil
}

func (t *tx) Commit() error   { return t.end(Commit) }
func (t *tx) Rollback() error { return t.end(Rollback) }

// stmt is a prepared statement; Query and Exec behave like the connection's.
type stmt struct {
	c *conn
	q string
}

var (
	_ driver.StmtQueryContext = (*stmt)(nil)
	_ driver.StmtExecContext  = (*stmt)(nil)
)

func (st *stmt) Close() error  { return nil }
func (st *stmt) NumInput() int { return -1 }

func (st *stmt) Exec([]driver.Value) (driver.Result, error) {
	return st.c.exec(context.Background(), st.q)
}

func (st *stmt) Query([]driver.Value) (driver.Rows, error) {
	return st.c.query(context.Background(), st.q)
}

func (st *stmt) ExecContext(ctx context.Context, _ []driver.NamedValue) (driver.Result, error) {
	return st.c.exec(ctx, st.q)
}

func (st *stmt) QueryContext(ctx context.Context, _ []driver.NamedValue) (driver.Rows, error) {
	return st.c.query(ctx, st.q)
}
