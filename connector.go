package rwsplit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/rwsplit/rwsplit/internal/sqlclass"
)

// The routing *sql.DB. Libraries that want a *sql.DB (sqlx, bun, ent,
// goose) get one from sql.OpenDB(db.Connector()): a database/sql pool of
// routing connections, each a driver.Conn that holds no node connection
// and sends every statement through the DB by the same rules as the DB's
// own methods. A routing connection holds a node connection (it is
// pinned) only while it needs one:
//
//   - during a transaction, on the node the transaction rules choose;
//   - once a statement changed the state of its session
//     (sqlclass.ChangesSession: SET, temporary tables, LISTEN, locks...),
//     on the primary, until database/sql takes the routing connection
//     back into its pool; the node connection is then closed, not
//     returned to the node's pool, so no other caller inherits the state;
//   - for a connection from DB.Conn, on the primary until it is closed.
//
// Node connections are used only through the node's *sql.DB (its *sql.Conn,
// *sql.Tx, *sql.Stmt and *sql.Rows), never as driver connections.

// routing is the DB's side of its routing *sql.DB.
type routing struct {
	connector *connector

	mu sync.Mutex
	db *sql.DB // the DB's own routing *sql.DB, opened on first use (guarded by mu)

	stmts    stmtCache  // statements prepared on nodes, shared by the routing connections
	sessions classCache // which statements change their session
}

// recordsCommitKey marks the context of a transaction begun by RunInTx,
// which records the commit's position itself: the transaction does not
// leave the session pending.
type recordsCommitKey struct{}

// Connector returns a driver.Connector whose connections route every
// statement by the DB's rules: sql.OpenDB(db.Connector()) is a *sql.DB
// for libraries that need one (sqlx, bun, ent, goose, golang-migrate).
//
// On that *sql.DB, as on the DB itself: a pure read runs on a replica
// chosen by the policy (retried elsewhere when the node fails, hedged when
// hedging is on, within the fallback cap), anything else on the primary;
// BeginTx follows the transaction rules and a transaction stays on its
// node; the context's session, consistency, write concern and
// [WithPrimary] apply; a schema change sets the floor of reads (in a
// transaction, when it ends). It shares the DB's nodes, pools, health
// checks and accounting: Connect does no I/O, and a routing connection
// holds a node connection only in a transaction, on a connection from
// [DB.Conn], or once one of its statements changed its session (SET,
// RESET, set_config, temporary tables, LISTEN, PREPARE, cursors, advisory
// and named locks, LOCK TABLES, user variables, USE, BEGIN or COMMIT
// sent as text, and any statement the classifier cannot read): from then
// on the connection stays on one connection to the primary, and that
// connection is closed rather than pooled once database/sql takes the
// routing connection back. A statement prepared on it is prepared on a
// node at its first execution there (see [DB.PrepareContext]). Rows keep
// the node driver's column types and values.
//
// Every call returns the same connector. It is not an io.Closer: closing
// a *sql.DB opened from it leaves the DB open. After [DB.Close] its
// connections return [ErrClosed]. Give such a *sql.DB a generous
// SetMaxIdleConns: a routing connection costs no node connection while
// idle, and database/sql keeps only two by default.
func (db *DB) Connector() driver.Connector { return db.routing.connector }

// routerDB returns the DB's own routing *sql.DB, which BeginTx, Conn and
// PrepareContext hand out transactions, connections and statements of.
func (db *DB) routerDB() (*sql.DB, error) {
	rt := &db.routing
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if db.closed.Load() {
		return nil, ErrClosed
	}
	if rt.db == nil {
		rt.db = sql.OpenDB(rt.connector)
		rt.db.SetMaxIdleConns(routerIdleConns)
	}
	return rt.db, nil
}

// routerIdleConns is how many idle routing connections the DB's own
// routing *sql.DB keeps: they hold no node connection, and reusing one
// saves an allocation per transaction.
const routerIdleConns = 64

// closeRouter closes the DB's routing *sql.DB and the statements prepared
// on nodes; Close calls it before it closes the nodes.
func (db *DB) closeRouter() error {
	rt := &db.routing
	rt.mu.Lock()
	r := rt.db
	rt.mu.Unlock()
	var err error
	if r != nil {
		err = r.Close()
	}
	rt.stmts.closeAll()
	return err
}

// changesSession reports whether query leaves state on its connection
// (sqlclass.ChangesSession).
func (db *DB) changesSession(query string) bool {
	return db.routing.sessions.changesSession(db.dialect.class, query)
}

type connector struct{ db *DB }

// Connect returns a routing connection; it does no I/O.
func (c *connector) Connect(context.Context) (driver.Conn, error) {
	if c.db.closed.Load() {
		return nil, ErrClosed
	}
	return &routingConn{db: c.db}, nil
}

func (c *connector) Driver() driver.Driver { return routingDriver{} }

// routingDriver is what the connector's Driver method returns; it opens
// no DSN.
type routingDriver struct{}

var errNoDSN = errors.New("rwsplit: the routing driver opens no DSN; use sql.OpenDB(db.Connector())")

func (routingDriver) Open(string) (driver.Conn, error) { return nil, errNoDSN }

// routingConn is one connection of a routing *sql.DB. database/sql uses
// it from one goroutine at a time.
type routingConn struct {
	db   *DB
	pin  *pinned    // the node connection it holds; nil: it routes each statement
	tx   *routingTx // the transaction under way on pin, if any
	args []any      // reused by argsOf
}

// pinned is a node connection a routing connection holds.
type pinned struct {
	r       *Replica
	conn    *sql.Conn
	session bool                 // a statement changed its session state: closed at release, not pooled
	keep    bool                 // held for DB.Conn: until the routing connection is released
	stmts   map[string]*sql.Stmt // statements prepared on conn
}

var (
	_ driver.Conn               = (*routingConn)(nil)
	_ driver.ConnBeginTx        = (*routingConn)(nil)
	_ driver.ConnPrepareContext = (*routingConn)(nil)
	_ driver.ExecerContext      = (*routingConn)(nil)
	_ driver.QueryerContext     = (*routingConn)(nil)
	_ driver.Pinger             = (*routingConn)(nil)
	_ driver.Validator          = (*routingConn)(nil)
	_ driver.NamedValueChecker  = (*routingConn)(nil)
)

// CheckNamedValue accepts every argument as it is: the node's *sql.DB
// converts it by its own driver's rules, as it would without rwsplit.
func (c *routingConn) CheckNamedValue(*driver.NamedValue) error { return nil }

// IsValid is called whenever database/sql takes the connection back into
// its pool. A connection that took on session state is then discarded
// (its node connection closed); one held for DB.Conn gives its node
// connection back to the node's pool.
func (c *routingConn) IsValid() bool {
	switch {
	case c.db.closed.Load(), c.tx != nil:
		return false
	case c.pin == nil:
		return true
	case c.pin.session:
		return false
	}
	c.release()
	return true
}

// Close releases the node connection the routing connection holds.
func (c *routingConn) Close() error {
	c.release()
	return nil
}

// release lets go of the pinned node connection: back to its pool, or
// closed when it took on session state.
func (c *routingConn) release() {
	p := c.pin
	if p == nil {
		return
	}
	c.pin, c.tx = nil, nil
	for _, st := range p.stmts {
		st.Close()
	}
	if p.session {
		// Returning driver.ErrBadConn from Raw's callback has
		// database/sql close the connection instead of pooling it.
		p.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	p.conn.Close()
}

// pinPrimary holds a connection to the primary for DB.Conn, until the
// routing connection is released.
func (c *routingConn) pinPrimary(ctx context.Context) error {
	if err := c.pinToPrimary(ctx); err != nil {
		return err
	}
	c.pin.keep = true
	return nil
}

// pinToPrimary holds a connection to the primary. A session on ctx is
// pending from then on: what the connection writes commits out of sight.
func (c *routingConn) pinToPrimary(ctx context.Context) error {
	db := c.db
	if db.closed.Load() {
		return ErrClosed
	}
	o := optionsOf(ctx)
	if o != nil && o.session != nil {
		o.session.beginPending(db, ctx)
	}
	watch := db.watching(ctx, o)
	r, err := db.writer(ctx)
	if err != nil {
		if watch {
			db.observeRefused(ctx, o, OpConn, err)
		}
		return err
	}
	var start int64
	if watch {
		start = monotime()
	}
	conn, err := r.db.Conn(ctx)
	if watch {
		db.observeCall(ctx, o, OpConn, route{r: r}, ReasonRule, 1, 0, start, err, false)
	}
	if err != nil {
		db.writeFailed(ctx, err)
		return db.closedErr(err)
	}
	c.pin = &pinned{r: r, conn: conn}
	return nil
}

// target is what a statement on a pinned connection runs on: the
// transaction under way, or the node connection.
type target interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (c *routingConn) target() target {
	if c.tx != nil {
		return c.tx.tx
	}
	return c.pin.conn
}

// pinnedStatement notes what a statement about to run on the pinned
// connection changes: its session, or the schema. done must be called
// once it has run.
func (c *routingConn) pinnedStatement(ctx context.Context, query string) (done func()) {
	if c.db.changesSession(query) {
		c.pin.session = true
	}
	if !sqlclass.IsSchemaChange(c.db.dialect.class, query) || c.pin.r.Role() != RolePrimary {
		return nil
	}
	if c.tx != nil {
		c.tx.schemaChange()
		return nil
	}
	c.db.schemaBegin()
	return func() { c.db.schemaEnd(ctx) }
}

func (c *routingConn) ExecContext(ctx context.Context, query string, nv []driver.NamedValue) (driver.Result, error) {
	args := c.argsOf(nv)
	if c.pin == nil {
		if !c.db.changesSession(query) {
			return c.db.exec(ctx, query, nil, args)
		}
		if err := c.pinToPrimary(ctx); err != nil {
			return nil, err
		}
	}
	done := c.pinnedStatement(ctx, query)
	res, err := c.target().ExecContext(ctx, query, args...)
	if done != nil {
		done()
	}
	return res, err
}

func (c *routingConn) QueryContext(ctx context.Context, query string, nv []driver.NamedValue) (driver.Rows, error) {
	args := c.argsOf(nv)
	if c.pin == nil {
		if !c.db.changesSession(query) {
			rows, _, err := c.db.read(ctx, query, nil, args, false)
			if err != nil {
				return nil, err
			}
			return newRoutingRows(rows)
		}
		if err := c.pinToPrimary(ctx); err != nil {
			return nil, err
		}
	}
	done := c.pinnedStatement(ctx, query)
	rows, err := c.target().QueryContext(ctx, query, args...)
	if done != nil {
		done()
	}
	if err != nil {
		return nil, err
	}
	return newRoutingRows(rows)
}

func (c *routingConn) Ping(ctx context.Context) error {
	if c.db.closed.Load() {
		return ErrClosed
	}
	if c.pin != nil {
		return c.pin.conn.PingContext(ctx)
	}
	p, err := c.db.writer(ctx)
	if err != nil {
		return err
	}
	return c.db.closedErr(p.db.PingContext(ctx))
}

func (c *routingConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

// BeginTx begins a transaction on the pinned node connection, or on a
// connection of the node that the transaction rules choose, held until
// the transaction ends (and after it, if a statement in it changed the
// session).
func (c *routingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if c.db.closed.Load() {
		return nil, ErrClosed
	}
	if c.tx != nil {
		return nil, errors.New("rwsplit: a transaction is already under way on this connection")
	}
	sqlOpts := &sql.TxOptions{Isolation: sql.IsolationLevel(opts.Isolation), ReadOnly: opts.ReadOnly}
	var tx *sql.Tx
	if c.pin != nil {
		var err error
		if tx, err = c.pin.conn.BeginTx(ctx, sqlOpts); err != nil {
			return nil, err
		}
	} else {
		pending := ctx.Value(recordsCommitKey{}) == nil
		err := c.db.beginRoute(ctx, sqlOpts, pending, func(r *Replica) error {
			conn, err := r.db.Conn(ctx)
			if err != nil {
				return err
			}
			if tx, err = conn.BeginTx(ctx, sqlOpts); err != nil {
				conn.Close()
				return err
			}
			c.pin = &pinned{r: r, conn: conn}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	c.tx = &routingTx{c: c, tx: tx, ctx: ctx}
	return c.tx, nil
}

// routingTx is a transaction of a routing connection: a *sql.Tx of the
// node connection it holds.
type routingTx struct {
	c      *routingConn
	tx     *sql.Tx
	ctx    context.Context
	schema bool                 // a schema change ran in it: the floor is set when it ends
	stmts  map[string]*sql.Stmt // statements of the pinned connection, in this transaction
}

// schemaChange notes a schema change in the transaction: reads go to the
// primary from now until its end has recorded the primary's position.
func (t *routingTx) schemaChange() {
	if !t.schema {
		t.schema = true
		t.c.db.schemaBegin()
	}
}

func (t *routingTx) Commit() error   { return t.end(t.tx.Commit()) }
func (t *routingTx) Rollback() error { return t.end(t.tx.Rollback()) }

// end closes the transaction's books once it has committed or rolled
// back: the schema floor, and the node connection, which goes back to its
// pool unless it is held for other reasons.
func (t *routingTx) end(err error) error {
	c := t.c
	if c.tx == t {
		c.tx = nil
	}
	if t.schema {
		// The transaction's context may be done (a rollback on
		// cancellation); the position read gets a probe's time.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), c.db.cfg.timeout())
		c.db.schemaEnd(ctx)
		cancel()
	}
	if p := c.pin; p != nil && !p.session && !p.keep {
		c.release()
	}
	return err
}

func (c *routingConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// PrepareContext returns a statement that prepares itself on a node at
// its first execution there; it does no I/O.
func (c *routingConn) PrepareContext(_ context.Context, query string) (driver.Stmt, error) {
	if c.db.closed.Load() {
		return nil, ErrClosed
	}
	return &routingStmt{c: c, query: query, shared: c.db.routing.stmts.acquire(c.db, query)}, nil
}

// routingStmt is a statement of a routing connection.
type routingStmt struct {
	c      *routingConn
	query  string
	shared *sharedStmt
	closed bool
}

var (
	_ driver.StmtExecContext   = (*routingStmt)(nil)
	_ driver.StmtQueryContext  = (*routingStmt)(nil)
	_ driver.NamedValueChecker = (*routingStmt)(nil)
)

func (s *routingStmt) CheckNamedValue(*driver.NamedValue) error { return nil }

func (s *routingStmt) Close() error {
	if !s.closed {
		s.closed = true
		s.c.db.routing.stmts.release(s.shared)
	}
	return nil
}

// NumInput returns -1: the node's driver checks the arguments.
func (s *routingStmt) NumInput() int { return -1 }

func (s *routingStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), valuesToNamed(args))
}

func (s *routingStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), valuesToNamed(args))
}

func (s *routingStmt) ExecContext(ctx context.Context, nv []driver.NamedValue) (driver.Result, error) {
	c := s.c
	if c.pin == nil && !c.db.changesSession(s.query) {
		return c.db.exec(ctx, s.query, s.shared, c.argsOf(nv))
	}
	st, err := s.pinned(ctx)
	if err != nil {
		return nil, err
	}
	done := c.pinnedStatement(ctx, s.query)
	res, err := st.ExecContext(ctx, c.argsOf(nv)...)
	if done != nil {
		done()
	}
	return res, err
}

func (s *routingStmt) QueryContext(ctx context.Context, nv []driver.NamedValue) (driver.Rows, error) {
	c := s.c
	if c.pin == nil && !c.db.changesSession(s.query) {
		rows, _, err := c.db.read(ctx, s.query, s.shared, c.argsOf(nv), false)
		if err != nil {
			return nil, err
		}
		return newRoutingRows(rows)
	}
	st, err := s.pinned(ctx)
	if err != nil {
		return nil, err
	}
	done := c.pinnedStatement(ctx, s.query)
	rows, err := st.QueryContext(ctx, c.argsOf(nv)...)
	if done != nil {
		done()
	}
	if err != nil {
		return nil, err
	}
	return newRoutingRows(rows)
}

// pinned returns the statement prepared on the pinned connection (pinning
// one to the primary first if the statement changes the session), within
// the transaction under way if there is one.
func (s *routingStmt) pinned(ctx context.Context) (*sql.Stmt, error) {
	c := s.c
	if c.pin == nil {
		if err := c.pinToPrimary(ctx); err != nil {
			return nil, err
		}
	}
	p := c.pin
	st := p.stmts[s.query]
	if st == nil {
		var err error
		if st, err = p.conn.PrepareContext(ctx, s.query); err != nil {
			return nil, err
		}
		if p.stmts == nil {
			p.stmts = make(map[string]*sql.Stmt)
		}
		p.stmts[s.query] = st
	}
	t := c.tx
	if t == nil {
		return st, nil
	}
	if ts := t.stmts[s.query]; ts != nil {
		return ts, nil
	}
	ts := t.tx.StmtContext(ctx, st) // closed by database/sql when the transaction ends
	if t.stmts == nil {
		t.stmts = make(map[string]*sql.Stmt)
	}
	t.stmts[s.query] = ts
	return ts, nil
}

// argsOf turns database/sql's arguments back into what a *sql.DB takes.
// The slice is the connection's own, reused by its next statement: a
// *sql.DB converts the arguments before its call returns and keeps none.
// With hedging on, a read's arguments outlive the call (the hedge that
// lost is still running), so each statement gets its own.
func (c *routingConn) argsOf(nv []driver.NamedValue) []any {
	if len(nv) == 0 {
		return nil
	}
	var args []any
	if c.db.cfg.hedging == nil && len(nv) <= cap(c.args) {
		args = c.args[:len(nv)]
	} else {
		args = make([]any, len(nv))
		if c.db.cfg.hedging == nil {
			c.args = args
		}
	}
	for i, v := range nv {
		if v.Name != "" {
			args[i] = sql.Named(v.Name, v.Value)
		} else {
			args[i] = v.Value
		}
	}
	return args
}

func valuesToNamed(args []driver.Value) []driver.NamedValue {
	nv := make([]driver.NamedValue, len(args))
	for i, v := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return nv
}

// stmtCache holds the statements prepared on nodes, one entry per query
// text, shared by every routing connection that prepared it.
type stmtCache struct {
	mu     sync.Mutex
	m      map[string]*sharedStmt // guarded by mu
	closed bool                   // guarded by mu
}

// sharedStmt is one query text prepared on the nodes it has run on.
type sharedStmt struct {
	query string
	refs  int // routing statements holding it (guarded by stmtCache.mu)

	mu    sync.Mutex                 // serialises preparing
	nodes []atomic.Pointer[sql.Stmt] // by node index; nil: not prepared there yet
	later map[int]*sql.Stmt          // on nodes that joined after it was made, by index (guarded by mu)
}

func (sc *stmtCache) acquire(db *DB, query string) *sharedStmt {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	s := sc.m[query]
	if s == nil {
		s = &sharedStmt{query: query, nodes: make([]atomic.Pointer[sql.Stmt], db.fleet.next.Load())}
		if sc.m == nil {
			sc.m = make(map[string]*sharedStmt)
		}
		if !sc.closed {
			sc.m[query] = s
		}
	}
	s.refs++
	return s
}

func (sc *stmtCache) release(s *sharedStmt) {
	sc.mu.Lock()
	s.refs--
	last := s.refs == 0
	if last && sc.m[s.query] == s {
		delete(sc.m, s.query)
	}
	sc.mu.Unlock()
	if last {
		s.close()
	}
}

func (sc *stmtCache) closeAll() {
	sc.mu.Lock()
	m := sc.m
	sc.m, sc.closed = nil, true
	sc.mu.Unlock()
	for _, s := range m {
		s.close()
	}
}

// on returns the statement prepared on node r, preparing it there first
// if this is its first use on r.
func (s *sharedStmt) on(ctx context.Context, r *Replica) (*sql.Stmt, error) {
	if r.index >= len(s.nodes) {
		return s.onLater(ctx, r)
	}
	slot := &s.nodes[r.index]
	if st := slot.Load(); st != nil {
		return st, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := slot.Load(); st != nil {
		return st, nil
	}
	st, err := r.db.PrepareContext(ctx, s.query)
	if err != nil {
		return nil, err
	}
	slot.Store(st)
	return st, nil
}

// onLater is on for a node that joined after s was made.
func (s *sharedStmt) onLater(ctx context.Context, r *Replica) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.later[r.index]; st != nil {
		return st, nil
	}
	st, err := r.db.PrepareContext(ctx, s.query)
	if err != nil {
		return nil, err
	}
	if s.later == nil {
		s.later = make(map[int]*sql.Stmt)
	}
	s.later[r.index] = st
	return st, nil
}

func (s *sharedStmt) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.nodes {
		if st := s.nodes[i].Swap(nil); st != nil {
			st.Close()
		}
	}
	for i, st := range s.later {
		st.Close()
		delete(s.later, i)
	}
}

// routingRows passes a node's *sql.Rows on to database/sql: the values
// its driver produced, and its column types.
type routingRows struct {
	rows  *sql.Rows
	cols  []string
	dest  []driver.Value // the slice Next fills, for the captures
	scan  []any          // a capture per column
	types []*sql.ColumnType
	ahead bool // HasNextResultSet has moved to the next result set already

	// Room for the captures of a few columns, so that most rows need
	// no allocation of their own for them.
	capsBuf [inlineColumns]capture
	scanBuf [inlineColumns]any
}

// inlineColumns is how many columns' captures a routingRows holds without
// allocating.
const inlineColumns = 8

var (
	_ driver.RowsNextResultSet              = (*routingRows)(nil)
	_ driver.RowsColumnTypeDatabaseTypeName = (*routingRows)(nil)
	_ driver.RowsColumnTypeScanType         = (*routingRows)(nil)
	_ driver.RowsColumnTypeNullable         = (*routingRows)(nil)
	_ driver.RowsColumnTypeLength           = (*routingRows)(nil)
	_ driver.RowsColumnTypePrecisionScale   = (*routingRows)(nil)
)

// rowsPool recycles routingRows: database/sql calls nothing on them after
// Close.
var rowsPool = sync.Pool{New: func() any { return new(routingRows) }}

func newRoutingRows(rows *sql.Rows) (driver.Rows, error) {
	cols, err := rows.Columns()
	if err != nil {
		rows.Close()
		return nil, err
	}
	r := rowsPool.Get().(*routingRows)
	r.rows, r.cols = rows, cols
	return r, nil
}

func (r *routingRows) Columns() []string { return r.cols }

func (r *routingRows) Close() error {
	err := r.rows.Close()
	*r = routingRows{}
	rowsPool.Put(r)
	return err
}

// capture is a scan destination that keeps the driver's value as it is.
type capture struct {
	rows *routingRows
	i    int
}

func (c *capture) Scan(src any) error {
	c.rows.dest[c.i] = src
	return nil
}

func (r *routingRows) Next(dest []driver.Value) error {
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return io.EOF
	}
	if len(r.scan) != len(r.cols) {
		var caps []capture
		if n := len(r.cols); n <= inlineColumns {
			caps, r.scan = r.capsBuf[:n], r.scanBuf[:n]
		} else {
			caps, r.scan = make([]capture, n), make([]any, n)
		}
		for i := range caps {
			caps[i] = capture{rows: r, i: i}
			r.scan[i] = &caps[i]
		}
	}
	r.dest = dest
	return r.rows.Scan(r.scan...)
}

// HasNextResultSet moves the node's rows to their next result set, if
// any: *sql.Rows cannot look ahead without moving.
func (r *routingRows) HasNextResultSet() bool {
	if !r.ahead {
		r.ahead = r.nextSet()
	}
	return r.ahead
}

func (r *routingRows) NextResultSet() error {
	if r.ahead || r.nextSet() {
		r.ahead = false
		return nil
	}
	if err := r.rows.Err(); err != nil {
		return err
	}
	return io.EOF
}

// nextSet moves to the next result set and reads its columns.
func (r *routingRows) nextSet() bool {
	if !r.rows.NextResultSet() {
		return false
	}
	cols, err := r.rows.Columns()
	if err != nil {
		return false
	}
	r.cols, r.scan, r.types = cols, nil, nil
	return true
}

// columnType returns the node's type of column i, nil if it has none.
func (r *routingRows) columnType(i int) *sql.ColumnType {
	if r.types == nil {
		r.types, _ = r.rows.ColumnTypes()
	}
	if i < len(r.types) {
		return r.types[i]
	}
	return nil
}

func (r *routingRows) ColumnTypeDatabaseTypeName(i int) string {
	if t := r.columnType(i); t != nil {
		return t.DatabaseTypeName()
	}
	return ""
}

func (r *routingRows) ColumnTypeScanType(i int) reflect.Type {
	if t := r.columnType(i); t != nil {
		return t.ScanType()
	}
	return reflect.TypeFor[any]()
}

func (r *routingRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if t := r.columnType(i); t != nil {
		return t.Nullable()
	}
	return false, false
}

func (r *routingRows) ColumnTypeLength(i int) (int64, bool) {
	if t := r.columnType(i); t != nil {
		return t.Length()
	}
	return 0, false
}

func (r *routingRows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	if t := r.columnType(i); t != nil {
		return t.DecimalSize()
	}
	return 0, 0, false
}
