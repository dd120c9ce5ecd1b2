// Package rwsplit puts one primary database and any number of read
// replicas behind a single handle with the method set of *sql.DB.
//
// A [DB] drops in where a *sql.DB was used (it satisfies sqlc's DBTX and
// GORM's ConnPool, TxBeginner and GetDBConnector interfaces): writes go to
// the primary, pure reads are spread over the replicas by a [Policy], and
// the standard *sql.Rows, *sql.Row, *sql.Tx, *sql.Conn and *sql.Stmt come
// back unwrapped.
//
//	db, err := rwsplit.Open("pgx", primaryDSN, []string{replica1DSN, replica2DSN})
//	if err != nil { ... }
//	defer db.Close()
//	db.ExecContext(ctx, "INSERT INTO users (name) VALUES ($1)", "ada")        // primary
//	db.QueryRowContext(ctx, "SELECT count(*) FROM users").Scan(&n)            // a replica
//	db.QueryRowContext(rwsplit.WithPrimary(ctx), "SELECT ...").Scan(&n)       // the primary
//
// # Routing
//
//  1. A context made by [WithPrimary] sends every call to the primary.
//  2. [DB.ExecContext] goes to the primary.
//  3. [DB.QueryContext] and [DB.QueryRowContext] go to a replica only when
//     the statement is a pure read. The classifier is conservative: a
//     statement reaches a replica only if it is a SELECT, WITH ... SELECT,
//     VALUES, TABLE, SHOW or EXPLAIN with no locking clause (FOR UPDATE,
//     FOR SHARE, LOCK IN SHARE MODE, ...), no INTO, no data-modifying CTE,
//     no call of a known side-effecting function (nextval, setval, advisory
//     locks, GET_LOCK, LAST_INSERT_ID, ...), no catalog read
//     (information_schema, pg_catalog: migrations must see the primary's
//     schema) and no second statement. Anything else, including anything it
//     cannot lex, goes to the primary. It has one lexer per dialect family:
//     PostgreSQL (nested comments, dollar quotes, standard and E'...' strings)
//     and MySQL/MariaDB (# comments, backslash escapes, backticks, and
//     executable /*! ... */ comments, which count as code). An unquoted
//     identifier spelled like a write keyword (a column named "update")
//     sends the statement to the primary; quote it to read it from a
//     replica.
//     The classifier cannot see inside user functions, so a read that a
//     replica rejects as a write (SQLSTATE 25006, MySQL error 1290) is
//     re-run once on the primary and counted in [DB.Stats]. It is safe
//     because the statement failed before doing anything. It works where
//     the rejection arrives before the call returns: pgx's stdlib reads the
//     first row inside QueryContext and go-sql-driver/mysql reports it with
//     the result header, so with both a refused read never reaches the
//     caller. A driver that reports the refusal only from Rows.Next leaves
//     it to the caller.
//  4. [DB.BeginTx] with ReadOnly runs on a replica, except at
//     sql.LevelSerializable (a hot standby refuses it); every other
//     transaction, and [DB.Conn], runs on the primary. A transaction never
//     changes node. A statement from [DB.PrepareContext] is routed at each
//     execution as the same statement sent as text: a prepared read runs
//     on a replica, prepared there at its first use.
//
// After a schema change (CREATE, ALTER, DROP, TRUNCATE, RENAME, COMMENT,
// GRANT, REVOKE) made through the DB or its routing *sql.DB, in a
// transaction or not, reads go only to replicas that have replayed it,
// else to the primary, until every replica has; a read a replica refuses
// for an unknown table or column of such a change is re-run on the
// primary. Changes made by other processes are not seen.
//
// # Data libraries
//
// Libraries that take an interface (sqlc's DBTX, GORM's ConnPool) take
// the DB itself. Those that want a *sql.DB (sqlx, bun, ent, goose,
// golang-migrate) take sql.OpenDB(db.[DB.Connector]()): a *sql.DB whose
// every statement is routed by the rules above, sharing the DB's nodes,
// health checks and accounting. Its transactions, and the DB's, hold one
// node connection until they end. A statement that leaves state on its
// connection (SET, temporary tables, LISTEN, PREPARE, cursors, advisory
// and named locks, LOCK TABLES, user variables, USE, anything the
// classifier cannot read) pins its *sql.Conn to one primary connection,
// which is closed rather than pooled when the *sql.Conn is released: the
// state is seen by the statements after it on that *sql.Conn, as on a
// plain *sql.DB, and by nobody else. A pinned connection costs a primary
// connection for as long as it lives, and a new one afterwards. Use the
// Result's LastInsertId rather than SELECT LAST_INSERT_ID() (or currval)
// on a separate statement outside a transaction: the statement that reads
// it is pinned, but the INSERT before it was not.
//
// A read goes to an eligible replica: up, within [WithMaxReplicationLag],
// and not claiming to be a primary. With none eligible it goes to the
// primary, within [WithFallbackLimit]; beyond it a read fails with
// [ErrNoReplica]. A read that fails because of its node is retried on
// another eligible replica, then the primary (three nodes at most); a
// caller's cancellation is never retried, and neither is a write.
//
// # Health
//
// One goroutine per DB, started by [New] and stopped by [DB.Close], probes
// every node concurrently every [WithHealthCheckInterval]: alive, role,
// replication position and lag. A node leaves rotation after consecutive
// failures (failing traffic counts too) and returns after consecutive good
// probes ([WithHysteresis]), ramping up over [WithSlowStart]. New and Open
// never wait for a node: one that is down joins when it answers.
//
// A replica whose probe is unanswered well after the other nodes' probes
// answered gets no new reads until it answers: a hung host keeps no reads
// waiting on it. With [WithConnTracker] (which the rwsplitpgx and
// rwsplitmysql modules' Open set up), the DB closes the connections of a
// node it takes out of rotation, so calls stuck on a hung host fail at
// once and reads among them are retried elsewhere.
//
// [WithHedging] (off by default) sends a read that a replica leaves
// unanswered past an adaptive delay to a second replica too; the first
// answer wins, so a hung replica costs a read that delay rather than the
// caller's deadline.
//
// # Failover
//
// The probes learn each node's role, so the DB follows a promotion made by
// anyone: writes move to the node that takes them, and [DB.Primary] with
// them. While there is none, writes fail at once with [ErrNoPrimary] (or
// wait up to [WithPrimaryWait]); a write never goes to a node not known to
// be the primary. On PostgreSQL a node writable on an older timeline than
// the highest seen is fenced; two writable nodes that cannot be told apart
// make writes fail with [ErrSplitBrain]. [WithAutoFailover] (off by
// default, for a single writer process) promotes a replica itself.
//
// # Policies
//
// [LeastLatency] (the default) deals reads in the shares that the power of
// two choices would give over the library's own per-node accounting, and
// [LeastInFlight] draws two replicas and keeps the less busy; [RoundRobin],
// [Random] and [Weighted] need none. A [Policy] of your own builds a
// [Picker] over a snapshot of the eligible replicas; [Replica] exposes the
// accounting it may weigh.
//
// # Read-your-writes
//
// A [Session] attached with [WithSession] reads its own writes and never
// reads older data than it read before, while being served by replicas as
// soon as they have applied its writes: rwsplit records the primary's
// replication position after each write (one round trip) and compares it
// with each replica's, as the health probes read it. [Session.Token] and
// [ResumeSession] carry a session across requests and processes,
// [DB.SessionMiddleware] does so for net/http, and [DB.RunInTx] writes in a
// transaction with the position recorded at commit. [WithConsistency]
// chooses per call between [Strong], [ReadYourWrites], [BoundedStaleness]
// and [Eventual]; [WithWriteConcern] makes a write wait until replicas have
// applied it.
//
// # Dialects
//
// rwsplit takes *sql.DB handles, so any database/sql driver routes. The
// dialect, which chooses the classifier's lexer, is detected from the
// driver: github.com/jackc/pgx (stdlib) and github.com/lib/pq are
// PostgreSQL, github.com/go-sql-driver/mysql is MySQL/MariaDB, any other
// driver is generic (a read must pass both lexers). [WithDialect]
// overrides it. rwsplit imports no driver: import the one you use, as
// with database/sql ([Open] with "mysql" needs
// _ "github.com/go-sql-driver/mysql" in your program).
//
// # Fleets
//
// The node set can change while the DB serves: [DB.AddNode] and
// [DB.RemoveNode] change it by hand, and [WithDiscovery] makes it follow a
// [Discoverer]: [NewPatroni] reads a Patroni cluster's members from its
// REST API, [NewDNS] a DNS name's records. A node that joins is probed and
// serves once its probes pass; a node that leaves gets no new call and is
// closed once its calls return. A discoverer's word on roles is a hint:
// only a node's own probe makes it the primary.
//
// # Observing
//
// [DB.Stats] is a snapshot of every node. To see every call, give
// [WithObserver] an [Observer]: it is told of each routed call when it ends
// (a [CallEvent]: operation, node, role, the [Reason] the node was chosen,
// latency, error) and of each change ([NodeEvent], [PrimaryChanged],
// [WriteOutage], [PromotionEvent], [SessionWaited], [TokenRejected]). It
// runs on the caller's goroutine and must be fast. Without an observer no
// call is timed or reported. The modules rwsplitprom (Prometheus) and
// rwsplitotel (OpenTelemetry) are observers. Without one, [WithCallInfo]
// tells a caller which node served its last call, and a logger enabled
// for Debug ([WithLogger]) gets one line per call.
//
// # Errors
//
// Errors a driver returns for a statement come back unchanged, so
// errors.Is(err, sql.ErrNoRows) and errors.As(err, &pgErr) work. Errors of
// rwsplit's own:
//   - [ErrClosed]: a call after [DB.Close].
//   - [ErrNoPrimary]: a write (or a read that needs the primary) while no
//     node is known to be a writable primary.
//   - [ErrSplitBrain], wrapped with the nodes' names: a write while
//     several nodes take writes and none can be told to be the primary.
//   - [ErrNoReplica]: a read with no replica eligible, beyond
//     [WithFallbackLimit].
//   - [ErrBadToken], wrapped with the reason: [ResumeSession] cannot read
//     a token.
//   - [*WriteConcernError]: a write committed on the primary that fewer
//     replicas applied in time than its [WriteConcern] asked.
//   - [*Error]: rwsplit's own account of a failure (opening a node, a
//     bad option, a ping), naming the operation and node.
//
// None contains a DSN, a password or a session token.
package rwsplit

// Where things are. A plain read goes from db.go (the front door) to
// balancer.go (its route), policy.go (the pick) and replica.go (the
// call's accounting), with the classifier (classcache.go,
// internal/sqlclass) and the call options (callopts.go) on the way.
//
//	db.go            DB, New, Open, the database/sql method set, Close
//	balancer.go      where a call goes: the route, the snapshot of eligible replicas, fallback and its cap, retry on another node
//	policy.go        Policy, Picker and the built-in policies, with the optional interfaces the library asks them through
//	replica.go       Replica: one node, its role and per-call accounting (in-flight, peak EWMA latency, counters)
//	classcache.go    the classifier's verdicts on recent statements
//	callopts.go      per-call options on the context: WithPrimary, WithConsistency, WithSession, WithWriteConcern
//	health.go        the health loop: probe rounds, liveness, ejection and reinstatement, lag, snapshot rebuilds, cadence
//	probe.go         what one probe asks a node, and reading a node's position
//	dialect.go       what differs per database, as data: one table of dialects
//	position.go      replication positions and epochs: parsed once, compared, merged
//	schema.go        the floor of reads after a schema change
//	failover.go      roles, fencing, choosing the writer, write outages
//	autofailover.go  opt-in promotion
//	readyourwrites.go Session, pending writes, session routing, RunInTx
//	sessionwait.go   session reads that wait for a replica: position events and pollers
//	token.go         session tokens and their checks
//	writeconcern.go  waiting for replicas to apply a write
//	hedge.go         hedged reads
//	http.go          the session middleware
//	options.go       Option and the DB-wide settings
//	stats.go         Stats
//	observer.go      Observer, its events, CallInfo, the debug line per call
//	fleet.go         a node set that changes at run time: AddNode, RemoveNode, draining a node that left
//	discovery.go     Discoverer, WithDiscovery: listings applied by the health loop
//	patroni.go       the Patroni discoverer (its REST API)
//	dnsdiscovery.go  the DNS discoverer (A/AAAA or SRV records)
//	conntrack.go     ConnTracker and OpenTracked: the nodes' connections, closed when a node leaves rotation
//	errors.go        errors, and the one place that decides whose fault a failure is
//	dsn.go           reading DSNs without leaking them, and naming nodes after them
//	row.go           a *sql.Row that carries an error
//	connector.go     the routing driver.Connector behind DB.Connector: routing connections, pinned node connections, routed statements
