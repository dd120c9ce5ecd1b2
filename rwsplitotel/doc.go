// Package rwsplitotel reports what an [rwsplit.DB] does through
// OpenTelemetry: metrics for every routed call and every node, and the
// node that served a call on the caller's active span.
//
//	obs, err := rwsplitotel.New(rwsplitotel.WithMeterProvider(mp))
//	if err != nil { ... }
//	db, err := rwsplit.Open("pgx", primaryDSN, replicaDSNs, rwsplit.WithObserver(obs))
//	if err != nil { ... }
//	reg, err := obs.Track(db) // the node gauges and counters from db.Stats()
//	if err != nil { ... }
//	defer reg.Unregister()
//
// The [Observer] learns of calls and events through rwsplit's observer
// ([rwsplit.WithObserver]) and of nodes through [rwsplit.DB.Stats]; it
// composes with other observers (give WithObserver several).
//
// # Calls
//
// Each attempt of a routed call is recorded, on the caller's goroutine,
// in two instruments:
//
//   - db.client.operation.duration (histogram, s, the semantic
//     conventions' buckets): the attempt's time on its node.
//   - rwsplit.calls (counter): the same attempts, and calls refused
//     before reaching a node, with rwsplit.call.outcome "ok", "error",
//     "canceled" (failed while the caller's context was done) or
//     "refused" (no node tried). A read retried on another node counts
//     once per node, its failed attempt as "error".
//
// Their attributes follow the semantic conventions for database clients
// where they apply: db.system.name ("postgresql", "mariadb", "mysql";
// [WithSystem], else the DB's dialect), db.namespace ([WithNamespace]),
// db.operation.name, server.address and server.port (when the node's
// name is host:port, as [rwsplit.Open] names nodes), and on failure
// error.type and db.response.status_code. db.operation.name is rwsplit's
// operation, "query", "exec", "begin" or "conn" ([rwsplit.Op]), not the
// SQL verb: rwsplit does not parse statements for their verb, and a
// statement's text is never recorded. error.type is rwsplit's sentinel
// ("rwsplit.ErrNoReplica", ...), "context.Canceled" or
// "context.DeadlineExceeded", the SQLSTATE when the driver gives one
// (PostgreSQL; then also db.response.status_code), else the error's Go
// type; never the error's text. rwsplit's own attributes are
// rwsplit.node.name, rwsplit.node.role, rwsplit.route.reason
// ([rwsplit.Reason]: policy, rule, forced, fallback, session, ...) and,
// from the second attempt of a call on, rwsplit.attempt.
//
// The attributes of a kind of call are built once and kept: a call that
// was seen before costs an atomic load and a map read besides the
// instruments' own work.
//
// # Spans
//
// rwsplitotel starts no span. When the caller's context carries a
// recording span (trace.SpanFromContext), the attempt that ended the call
// sets rwsplit.node.name, rwsplit.node.role, rwsplit.route.reason,
// server.address and server.port on it (and rwsplit.hedges for a hedged
// read; a later call on the same span overwrites them), a failed attempt
// that was retried adds the event "rwsplit.retry", a refused call the
// event "rwsplit.refused", and a session read that waited for a replica
// the event "rwsplit.session.wait". The span's status is left to the
// caller.
//
// # Nodes and events
//
// [Observer.Track] observes a DB's Stats at each collection: per node
// whether it is up, eligible, fenced and the primary, its in-flight
// calls, lag and latency, its ejections, retries and hedges, and its
// connection pool (db.client.connection.count, db.client.connection.max);
// per DB the fallbacks and refusals, primary changes, promotions, session
// reads by where they went, rejected tokens (the list is on Track). The
// metrics have the meaning of the rwsplitprom module's, under
// OpenTelemetry's names. Events add
// rwsplit.node.state_changes (by rwsplit.node.state),
// rwsplit.write_outage.duration, rwsplit.promotion.duration and
// rwsplit.session.wait.duration.
//
// Attribute values are node names, roles, reasons, states, operations,
// error types and SQLSTATEs: never a DSN, a password, a statement or an
// error's text.
package rwsplitotel
