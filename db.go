package rwsplit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rwsplit/rwsplit/internal/sqlclass"
)

// DB is one primary and any number of read replicas behind the method set
// of *sql.DB. Writes go to the primary; reads that the classifier proves
// pure go to a replica chosen by the [Policy]; everything else goes to the
// primary. See the package documentation for the routing rules.
//
// A DB is safe for concurrent use by multiple goroutines. It owns the
// *sql.DB handles it was given or opened and closes them in [DB.Close].
type DB struct {
	// Read by every call, written rarely: first, so that a call touches
	// few of the DB's cache lines, which matters more than instructions
	// once the driver's own work has pushed them out of the nearest cache.
	closed        atomic.Bool              // set by Close
	awaitingWrite atomic.Bool              // set by a primary change (health loop), cleared by the first write after it
	primary       atomic.Pointer[Replica]  // health loop
	snap          atomic.Pointer[snapshot] // rebuilt under health.mu, by the health loop and by traffic that ejects a node
	writeBlock    atomic.Pointer[error]    // health loop: why writes are refused (split brain); nil: accepted
	schemaOpen    atomic.Bool              // a schema change is in flight or its floor open (schema.go)
	replicaCount  int                      // replicas given to New or Open
	dialect       *dialect                 // chooses the classifier's lexer; fixed
	classes       classCache               // traffic
	cfg           config                   // fixed by New; its fields read by every call come first

	nodes atomic.Pointer[[]*Replica] // every node, the configured primary first, then in the order they joined; replaced by the health loop (fleet.go)

	positions   positionDialect // the dialect of positions: settled by the first probe that answers
	health      health          // the health loop's state (health.go)
	roles       roleState       // roles, fencing and write outages: written by the health loop and by writes (failover.go)
	counts      counters        // written by traffic, read by Stats
	waits       sessionWaits    // session waits: written by session reads and the position pollers (sessionwait.go)
	schema      schemaState     // the floor of schema changes: written by them and the health loop (schema.go)
	hedgeTokens hedgeTokens     // traffic (hedge.go)
	errRows     errRows         // rows that carry a refusal: opened by the first, closed by Close (row.go)
	auto        *autoFailover   // automatic promotion, nil: off; written by the health loop (autofailover.go)
	routing     routing         // the routing *sql.DB and the statements prepared on nodes (connector.go)
	fleet       fleet           // changes of the node set (fleet.go, discovery.go)
	pools       poolSettings    // the Set... calls, for nodes that join later

	closeMu sync.Mutex // serialises Close
}

// positionDialect is the dialect whose positions the probes read: the
// DB's dialect, or MariaDB once a probe found that a "mysql" driver talks
// to one (see DB.flavor).
type positionDialect struct {
	d     atomic.Pointer[dialect]
	known atomic.Bool // settled: d no longer changes
}

func (p *positionDialect) Load() *dialect { return p.d.Load() }

// counters are the DB-wide counts that Stats reports, written by traffic.
type counters struct {
	fallbackInFlight    atomic.Int64  // reads on the primary for want of a replica
	fallbacks           atomic.Uint64 // reads sent to the primary for want of a replica
	fallbackRejected    atomic.Uint64 // reads refused with ErrNoReplica
	sessionReplicaReads atomic.Uint64 // session reads routed to a replica
	sessionPrimaryReads atomic.Uint64 // session reads routed to the primary
	positionReads       atomic.Uint64 // round trips made to read a position for sessions and write concerns
	tokensRejected      atomic.Uint64 // resumed tokens not accepted
}

// New returns a DB that writes to primary and reads from replicas. It
// takes ownership of the handles: [DB.Close] closes them. Zero replicas is
// valid: every call then runs on the primary.
//
// New returns an error, and closes nothing, if primary or a replica is nil,
// if the same *sql.DB is given twice, if the nodes use different drivers,
// or if an option is invalid. It does not connect: a node that is down
// joins when it comes up.
func New(primary *sql.DB, replicas []*sql.DB, opts ...Option) (*DB, error) {
	names := make([]string, len(replicas)+1)
	names[0] = "primary"
	for i := range replicas {
		names[i+1] = fmt.Sprintf("replica%d", i+1)
	}
	return newDB("new", primary, replicas, names, nil, opts)
}

// newDB builds the DB; addrs are the nodes' host:port from their DSNs (Open)
// or nil (New).
func newDB(op string, primary *sql.DB, replicas []*sql.DB, names, addrs []string, opts []Option) (*DB, error) {
	if primary == nil {
		return nil, configError(op, "primary is nil")
	}
	handles := append([]*sql.DB{primary}, replicas...)
	for i, h := range handles {
		if i > 0 && h == nil {
			return nil, configError(op, "replica %d is nil", i)
		}
		for j := 0; j < i; j++ {
			if handles[j] == h {
				return nil, configError(op, "%s is the same *sql.DB as %s", nodeOrdinal(i), nodeOrdinal(j))
			}
		}
	}

	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, configError(op, "nil Option")
		}
		o.apply(&cfg)
	}
	if cfg.policy == nil {
		return nil, configError(op, "WithPolicy: policy is nil")
	}
	if err := cfg.validate(len(handles), addrs); err != nil {
		return nil, &Error{Op: op, Err: err}
	}
	weights, _ := cfg.policy.(replicaWeights)
	if weights != nil {
		if err := weights.checkReplicas(len(replicas)); err != nil {
			return nil, &Error{Op: op, Err: err}
		}
	}
	if cfg.names != nil {
		if len(cfg.names) != len(handles) {
			return nil, configError(op, "WithNodeNames: %d names for %d nodes", len(cfg.names), len(handles))
		}
		names = cfg.names
	}
	for i, n := range names {
		if n == "" {
			return nil, configError(op, "%s has an empty name", nodeOrdinal(i))
		}
		for j := 0; j < i; j++ {
			if names[j] == n {
				return nil, configError(op, "%s and %s have the same name %q", nodeOrdinal(j), nodeOrdinal(i), n)
			}
		}
	}

	var d *dialect
	if cfg.dialect != "" {
		var ok bool
		if d, ok = dialectByName(cfg.dialect); !ok {
			return nil, configError(op, "WithDialect: unknown dialect %q (want postgres, mysql, mariadb or generic)", cfg.dialect)
		}
	} else {
		d = driverDialect(primary.Driver())
		for i, h := range replicas {
			if rd := driverDialect(h.Driver()); rd != d {
				return nil, configError(op, "replica %d uses a %s driver but the primary a %s one", i+1, rd.name, d.name)
			}
		}
	}

	db := &DB{cfg: cfg, dialect: d, replicaCount: len(replicas)}
	if cfg.auto != nil {
		// A driver of several databases (askFlavor) may turn out to
		// serve one that promotes; promote checks again.
		if d.promoter == nil && !(d.askFlavor && cfg.dialect == "") {
			return nil, configError(op, "WithAutoFailover: automatic promotion supports PostgreSQL and MariaDB, not %s", d.name)
		}
		db.auto = &autoFailover{cfg: *cfg.auto}
	}
	var nodes []*Replica
	for i, h := range handles {
		r := &Replica{name: names[i], db: h, monitor: h, owner: db, weight: 1, index: i}
		r.healthy.Store(true) // until a probe says otherwise: New does not wait
		r.lag.Store(lagUnknown)
		if cfg.monitors != nil {
			r.monitor = cfg.monitors[i]
		}
		if cfg.auto != nil {
			r.admin, r.addr = cfg.auto.Admin[i], cfg.auto.Addrs[i]
		}
		if i == 0 {
			r.role.Store(int32(RolePrimary))
			r.probedPrimary.Store(true) // until a probe says otherwise
		} else if weights != nil {
			r.weight = weights.weightOf(i - 1)
		}
		nodes = append(nodes, r)
	}
	db.nodes.Store(&nodes)
	db.fleet.next.Store(int64(len(nodes)))
	db.fleet.ops = make(chan fleetOp)
	db.fleet.found = make(chan []DiscoveredNode, 1)
	db.classes.init()
	db.routing.connector = &connector{db: db}
	db.routing.sessions.init()
	db.positions.d.Store(d)
	db.positions.known.Store(!d.askFlavor || cfg.dialect != "")
	db.primary.Store(db.nodeList()[0])
	db.snap.Store(newSnapshot(db.cfg.policy, db.nodeList()[1:]))
	db.setTracking(db.nodeList()[1:])
	db.startHealth()
	db.cfg.logger.Debug("rwsplit: ready", "dialect", d.name, "replicas", len(replicas))
	return db, nil
}

func nodeOrdinal(i int) string {
	if i == 0 {
		return "the primary"
	}
	return fmt.Sprintf("replica %d", i)
}

// Open opens the primary and each replica with sql.Open(driverName, dsn)
// and returns them behind one DB, as [New] does. Nodes are named host:port
// after their DSNs. Open checks each DSN as far as the driver can without
// connecting: go-sql-driver/mysql parses its DSN at open time, and for
// PostgreSQL drivers, which parse it only when they connect, Open checks
// the URL or key=value form, the ports and sslmode itself. It does not
// connect.
//
// Errors name the node (replica 2, ...) but never contain a DSN or
// password. On error, every handle Open opened is closed.
func Open(driverName, primaryDSN string, replicaDSNs []string, opts ...Option) (*DB, error) {
	if driverName == "" {
		return nil, configError("open", "driver name is empty")
	}
	return openNodes(primaryDSN, replicaDSNs, opts, func(i int, dsn string) (*sql.DB, string, error) {
		h, err := sql.Open(driverName, dsn)
		if err != nil {
			return nil, "", redact(err, dsn)
		}
		if check := driverDialect(h.Driver()).checkDSN; check != nil {
			if err := check(dsn); err != nil {
				h.Close()
				return nil, "", fmt.Errorf("malformed DSN: %w", err)
			}
		}
		return h, dsnAddr(dsn), nil
	})
}

// openNodes opens the primary and each replica from its DSN with open,
// which returns the node's handle and host:port ("" if it has none), or an
// error that holds no DSN; and puts them behind one DB named by their
// addresses, the addresses also serving WithAutoFailover. Empty and
// repeated DSNs are errors; on error, every handle opened is closed.
func openNodes(primaryDSN string, replicaDSNs []string, opts []Option, open func(i int, dsn string) (*sql.DB, string, error)) (*DB, error) {
	const op = "open"
	dsns := append([]string{primaryDSN}, replicaDSNs...)
	handles := make([]*sql.DB, 0, len(dsns))
	names := make([]string, 0, len(dsns))
	addrs := make([]string, 0, len(dsns)) // nil once a node has no host:port
	closeAll := func() {
		for _, h := range handles {
			h.Close()
		}
	}
	for i, dsn := range dsns {
		if dsn == "" {
			closeAll()
			return nil, configError(op, "%s DSN is empty", nodeOrdinal(i))
		}
		for j := 0; j < i; j++ {
			if dsns[j] == dsn {
				closeAll()
				return nil, configError(op, "%s DSN is the same as %s DSN", nodeOrdinal(i), nodeOrdinal(j))
			}
		}
		h, name, err := open(i, dsn)
		if err != nil {
			closeAll()
			return nil, &Error{Op: op, Node: nodeOrdinal(i), Err: err}
		}
		handles = append(handles, h)
		if addrs != nil && name != "" {
			addrs = append(addrs, name)
		} else {
			addrs = nil
		}
		names = append(names, name)
	}
	// Nodes that discovery finds later open the same way.
	later := optionFunc(func(c *config) { c.opener = open })
	db, err := newDB(op, handles[0], handles[1:], nodeNames(names), addrs, append(opts[:len(opts):len(opts)], later))
	if err != nil {
		closeAll()
		return nil, err
	}
	return db, nil
}

// closedErr turns the error of a call that raced with Close into ErrClosed.
func (db *DB) closedErr(err error) error {
	if err != nil && db.closed.Load() {
		return ErrClosed
	}
	return err
}

// QueryContext runs a query. A pure read (see the package documentation)
// goes to a replica chosen by the policy, or to the primary when no
// replica is eligible or ctx comes from [WithPrimary]; anything else goes
// to the primary. A read that a replica rejects as a write (the classifier
// cannot see inside user functions) is re-run once on the primary, when
// the driver reports the rejection before QueryContext returns (pgx and
// go-sql-driver/mysql do). Errors met while iterating rows reach the
// caller unchanged.
func (db *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	rows, _, err := db.read(ctx, query, nil, args, false)
	return rows, err
}

// QueryRowContext runs a query expected to return at most one row, routed
// as [DB.QueryContext]. Errors are deferred to the returned row's Scan, as
// with *sql.DB; after Close, Scan returns [ErrClosed].
func (db *DB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if db.closed.Load() {
		return errRow(ErrClosed)
	}
	_, row, err := db.read(ctx, query, nil, args, true)
	if row == nil {
		return db.errRow(err)
	}
	return row
}

// ExecContext runs a statement on the primary. It is never retried on
// another node.
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return db.exec(ctx, query, nil, args)
}

// exec runs a statement on the primary: its text query, or the prepared
// statement prep when set.
func (db *DB) exec(ctx context.Context, query string, prep *sharedStmt, args []any) (sql.Result, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	o := optionsOf(ctx)
	if o != nil && o.concern != nil {
		if err := o.concern.check("exec"); err != nil {
			return nil, err
		}
	}
	watch := db.watching(ctx, o)
	r, err := db.writer(ctx)
	if err != nil {
		if watch {
			db.observeRefused(ctx, o, OpExec, err)
		}
		return nil, err
	}
	ddl := sqlclass.IsSchemaChange(db.dialect.class, query)
	if ddl {
		db.schemaBegin()
	}
	var start int64
	if watch {
		start = monotime()
	}
	c := r.begin(callWrite)
	var res sql.Result
	if prep != nil {
		res, err = execOn(ctx, r, prep, args)
	} else {
		res, err = r.db.ExecContext(ctx, query, args...)
	}
	r.end(ctx, c, err)
	if watch {
		db.observeCall(ctx, o, OpExec, route{r: r}, ReasonRule, 1, 0, start, err, false)
	}
	if ddl {
		db.schemaEnd(ctx)
	}
	if err != nil {
		db.writeFailed(ctx, err)
		return nil, db.closedErr(err)
	}
	db.wrote()
	if o != nil && (o.session != nil || o.concern != nil) {
		return db.afterWrite(ctx, o, res)
	}
	return res, nil
}

// PrepareContext returns a statement of the DB's routing *sql.DB (see
// [DB.Connector]), prepared on no node yet: each execution is routed as
// the same statement sent as text would be, a pure read to a replica
// chosen at that moment and anything else to the primary, and runs there
// as a statement prepared on that node on its first use, shared by every
// execution. An error in the statement is therefore reported by its first
// execution, not by PrepareContext. Inside a transaction or on a
// connection from [DB.BeginTx] or [DB.Conn], tx.StmtContext(ctx, stmt) and
// conn's statements run on their node. After [DB.Close] its executions
// fail with database/sql's error for a closed database.
func (db *DB) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	r, err := db.routerDB()
	if err != nil {
		return nil, err
	}
	return r.PrepareContext(ctx, query)
}

// BeginTx starts a transaction, a *sql.Tx of the DB's routing *sql.DB (see
// [DB.Connector]) held on one node connection. A read-only transaction
// (opts.ReadOnly) runs on a replica chosen by the policy, unless its
// isolation level is sql.LevelSerializable (a PostgreSQL hot standby
// refuses serializable transactions), ctx comes from [WithPrimary], or no
// replica is eligible; every other transaction runs on the primary. A
// read-only transaction that cannot begin because its node fails is begun
// on another; once begun, a transaction never changes node. Statements
// from [DB.PrepareContext] run in it through tx.StmtContext.
func (db *DB) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	r, err := db.routerDB()
	if err != nil {
		return nil, err
	}
	return r.BeginTx(ctx, opts)
}

// beginRoute chooses the node of a transaction by the rules of
// [DB.BeginTx] and calls begin there, again on another node when begin
// fails there in a way that allows it (a read-only transaction on a failed
// replica); pending says whether a read-write transaction leaves the
// session of ctx pending ([DB.RunInTx] records its commit itself).
func (db *DB) beginRoute(ctx context.Context, opts *sql.TxOptions, pending bool, begin func(r *Replica) error) error {
	if db.closed.Load() {
		return ErrClosed
	}
	var rt route
	o := optionsOf(ctx)
	watch := db.watching(ctx, o)
	if opts != nil && opts.ReadOnly {
		var err error
		switch {
		case opts.Isolation == sql.LevelSerializable:
			var p *Replica
			p, err = db.readPrimary()
			rt = route{r: p}
		case o != nil:
			rt, err = db.routeWith(ctx, o, "", nil)
		default:
			rt, err = db.routeReplica(ctx, "", nil)
		}
		if err != nil {
			if watch {
				db.observeRefused(ctx, o, OpBegin, err)
			}
			return db.refused(err)
		}
	} else {
		p, err := db.writer(ctx)
		if err != nil {
			if watch {
				db.observeRefused(ctx, o, OpBegin, err)
			}
			return err
		}
		rt = route{r: p}
		if pending && o != nil && o.session != nil {
			o.session.beginPending(db, ctx)
		}
	}
	var tried triedNodes
	var start int64
	for attempt := 1; ; attempt++ {
		db.sent(rt)
		if watch {
			start = monotime()
		}
		c := rt.r.begin(callOther)
		err := begin(rt.r)
		rt.r.end(ctx, c, err)
		db.done(rt)
		if err == nil {
			if watch {
				db.observeCall(ctx, o, OpBegin, rt, rt.reason(attempt), attempt, 0, start, nil, false)
			}
			rt.r.transactions.Add(1)
			noteRead(ctx, rt)
			return nil
		}
		next, ok := db.retryRoute(ctx, rt, err, "", &tried)
		if watch {
			db.observeCall(ctx, o, OpBegin, rt, rt.reason(attempt), attempt, 0, start, err, ok)
		}
		if !ok {
			if !rt.read {
				db.writeFailed(ctx, err)
			}
			return db.closedErr(err)
		}
		rt = next
	}
}

// Conn returns a connection of the DB's routing *sql.DB (see
// [DB.Connector]) held on one connection to the primary: every statement
// on it runs there, as on a *sql.Conn of the primary's own *sql.DB.
// Statements from [DB.PrepareContext] run on it through its own
// PrepareContext. Closing it returns the primary's connection to its pool,
// or closes it if a statement left session state on it.
func (db *DB) Conn(ctx context.Context) (*sql.Conn, error) {
	r, err := db.routerDB()
	if err != nil {
		return nil, err
	}
	c, err := r.Conn(ctx)
	if err != nil {
		return nil, db.closedErr(err)
	}
	err = c.Raw(func(dc any) error { return dc.(*routingConn).pinPrimary(ctx) })
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// PingContext pings every node concurrently and returns nil if all
// answer, or the failures joined, each an [*Error] naming its node.
func (db *DB) PingContext(ctx context.Context) error {
	if db.closed.Load() {
		return ErrClosed
	}
	errs := make([]error, len(db.nodeList()))
	var wg sync.WaitGroup
	for i, r := range db.nodeList() {
		wg.Go(func() {
			if err := r.db.PingContext(ctx); err != nil {
				errs[i] = &Error{Op: "ping", Node: r.name, Err: db.closedErr(err)}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Exec is ExecContext with context.Background.
func (db *DB) Exec(query string, args ...any) (sql.Result, error) {
	return db.ExecContext(context.Background(), query, args...)
}

// Query is QueryContext with context.Background.
func (db *DB) Query(query string, args ...any) (*sql.Rows, error) {
	return db.QueryContext(context.Background(), query, args...)
}

// QueryRow is QueryRowContext with context.Background.
func (db *DB) QueryRow(query string, args ...any) *sql.Row {
	return db.QueryRowContext(context.Background(), query, args...)
}

// Prepare is PrepareContext with context.Background.
func (db *DB) Prepare(query string) (*sql.Stmt, error) {
	return db.PrepareContext(context.Background(), query)
}

// Begin starts a read-write transaction on the primary.
func (db *DB) Begin() (*sql.Tx, error) {
	return db.BeginTx(context.Background(), nil)
}

// Ping is PingContext with context.Background.
func (db *DB) Ping() error {
	return db.PingContext(context.Background())
}

// SetMaxOpenConns sets the maximum number of open connections of every
// node's pool, as [sql.DB.SetMaxOpenConns] does for one.
func (db *DB) SetMaxOpenConns(n int) {
	db.setPools(func(p *poolSettings) { p.maxOpen = &n }, func(h *sql.DB) { h.SetMaxOpenConns(n) })
}

// SetMaxIdleConns sets the maximum number of idle connections of every
// node's pool, as [sql.DB.SetMaxIdleConns] does for one.
func (db *DB) SetMaxIdleConns(n int) {
	db.setPools(func(p *poolSettings) { p.maxIdle = &n }, func(h *sql.DB) { h.SetMaxIdleConns(n) })
}

// SetConnMaxLifetime sets the maximum lifetime of a connection in every
// node's pool, as [sql.DB.SetConnMaxLifetime] does for one.
func (db *DB) SetConnMaxLifetime(d time.Duration) {
	db.setPools(func(p *poolSettings) { p.lifetime = &d }, func(h *sql.DB) { h.SetConnMaxLifetime(d) })
}

// SetConnMaxIdleTime sets the maximum idle time of a connection in every
// node's pool, as [sql.DB.SetConnMaxIdleTime] does for one.
func (db *DB) SetConnMaxIdleTime(d time.Duration) {
	db.setPools(func(p *poolSettings) { p.idleTime = &d }, func(h *sql.DB) { h.SetConnMaxIdleTime(d) })
}

// poolSettings are the Set... calls made on the DB, which nodes that join
// later get too (nil: never set).
type poolSettings struct {
	mu       sync.Mutex // serialises the Set... methods and joins
	maxOpen  *int
	maxIdle  *int
	lifetime *time.Duration
	idleTime *time.Duration
}

// setPools records a setting and applies it to every node's pool.
func (db *DB) setPools(record func(*poolSettings), apply func(*sql.DB)) {
	db.pools.mu.Lock()
	defer db.pools.mu.Unlock()
	record(&db.pools)
	for _, r := range db.nodeList() {
		apply(r.db)
	}
}

// applyLocked gives h the settings made so far; p.mu held.
func (p *poolSettings) applyLocked(h *sql.DB) {
	if p.maxOpen != nil {
		h.SetMaxOpenConns(*p.maxOpen)
	}
	if p.maxIdle != nil {
		h.SetMaxIdleConns(*p.maxIdle)
	}
	if p.lifetime != nil {
		h.SetConnMaxLifetime(*p.lifetime)
	}
	if p.idleTime != nil {
		h.SetConnMaxIdleTime(*p.idleTime)
	}
}

// Close stops the health goroutine and its probes, closes every node's
// *sql.DB (and the [WithMonitor] and [WithAutoFailover] handles) and
// returns their errors joined. It is idempotent: later calls return nil.
// After Close every method that runs a statement, pings, or hands out a
// transaction, connection or handle returns [ErrClosed] ([DB.QueryRow]'s
// Scan does); [DB.Primary], [DB.Replicas] and [DB.Stats] still describe
// the closed nodes, and the Set... methods apply to their closed pools.
func (db *DB) Close() error {
	db.closeMu.Lock()
	defer db.closeMu.Unlock()
	if db.closed.Swap(true) {
		return nil
	}
	db.stopHealth()
	db.fleet.drains.Wait() // the nodes that left close their handles
	db.errRows.close()     // closing a handle that never connected cannot fail
	var errs []error
	if err := db.closeRouter(); err != nil {
		errs = append(errs, &Error{Op: "close", Err: err})
	}
	for _, r := range db.nodeList() {
		if err := r.db.Close(); err != nil {
			errs = append(errs, &Error{Op: "close", Node: r.name, Err: err})
		}
		if r.monitor != r.db {
			if err := r.monitor.Close(); err != nil {
				errs = append(errs, &Error{Op: "close monitor", Node: r.name, Err: err})
			}
		}
	}
	if db.auto != nil {
		for _, r := range db.nodeList() {
			if r.admin == nil {
				continue
			}
			if err := r.admin.Close(); err != nil {
				errs = append(errs, &Error{Op: "close admin", Node: r.name, Err: err})
			}
		}
	}
	return errors.Join(errs...)
}

// Primary returns the *sql.DB of the current primary.
func (db *DB) Primary() *sql.DB { return db.primary.Load().db }

// Replicas returns the *sql.DB of every node that is currently a replica,
// in the order they were given.
func (db *DB) Replicas() []*sql.DB {
	var out []*sql.DB
	for _, r := range db.nodeList() {
		if r.Role() == RoleReplica {
			out = append(out, r.db)
		}
	}
	return out
}

// GetDBConn returns the primary's *sql.DB. It is what GORM's DB() asks a
// connection pool for; after Close it returns [ErrClosed].
func (db *DB) GetDBConn() (*sql.DB, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	return db.Primary(), nil
}

// nodeList returns every node: the configured primary first, then the
// others in the order they joined. The slice is never modified: a change
// of the node set publishes a new one.
func (db *DB) nodeList() []*Replica { return *db.nodes.Load() }
