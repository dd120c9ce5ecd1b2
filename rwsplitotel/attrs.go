package rwsplitotel

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/rwsplit/rwsplit"
)

// Attribute keys of rwsplit's own, beside the semantic conventions'
// db.system.name, db.namespace, db.operation.name, db.response.status_code,
// server.address, server.port, error.type and
// db.client.connection.pool.name / db.client.connection.state.
const (
	// NodeNameKey is the node's name as rwsplit gives it (host:port for
	// [rwsplit.Open], the names given to [rwsplit.WithNodeNames]); never a
	// DSN.
	NodeNameKey = attribute.Key("rwsplit.node.name")
	// NodeRoleKey is the node's role when the call ended: "primary" or
	// "replica".
	NodeRoleKey = attribute.Key("rwsplit.node.role")
	// NodeStateKey is the state a node changed to ([rwsplit.NodeState]:
	// "ejected", "reinstated", "fenced", "unfenced", "lagging",
	// "caught-up").
	NodeStateKey = attribute.Key("rwsplit.node.state")
	// RouteReasonKey says why a call went to its node ([rwsplit.Reason]:
	// "policy", "rule", "forced", "fallback", "session", "consistency",
	// "schema", "retry", "hedge").
	RouteReasonKey = attribute.Key("rwsplit.route.reason")
	// AttemptKey numbers a call's attempt; set only from the second on.
	AttemptKey = attribute.Key("rwsplit.attempt")
	// OutcomeKey is how an attempt ended: "ok"; "error" (the node or the
	// statement failed); "canceled" (it failed while the caller's context
	// was done: the caller's doing, even when no node was tried); or
	// "refused" (refused before reaching any node: no replica eligible
	// within the fallback limit, no primary, a split brain).
	OutcomeKey = attribute.Key("rwsplit.call.outcome")
	// HedgesKey is the number of hedges a hedged read sent (span
	// attribute, set when any was).
	HedgesKey = attribute.Key("rwsplit.hedges")
	// SessionTargetKey says where a session read went: "replica" or
	// "primary".
	SessionTargetKey = attribute.Key("rwsplit.session.target")
	// PromotionOutcomeKey is how an attempt of automatic promotion ended:
	// "promoted" or "failed".
	PromotionOutcomeKey = attribute.Key("rwsplit.promotion.outcome")
	// DialectKey and PolicyKey describe a DB on rwsplit.info: its dialect
	// ([rwsplit.Stats].Dialect) and its read policy's name.
	DialectKey = attribute.Key("rwsplit.dialect")
	PolicyKey  = attribute.Key("rwsplit.policy")
)

// Outcomes, the values of [OutcomeKey].
const (
	OutcomeOK       = "ok"
	OutcomeError    = "error"
	OutcomeCanceled = "canceled"
	OutcomeRefused  = "refused"
)

// systemOf maps a dialect of [rwsplit.Stats] to a db.system.name value.
func systemOf(dialect string) string {
	switch dialect {
	case "postgres":
		return "postgresql"
	case "mysql":
		return "mysql"
	case "mariadb":
		return "mariadb"
	}
	return "other_sql"
}

// serverAttrs returns server.address and server.port for a node named
// host:port (as [rwsplit.Open] names nodes), or nothing for any other
// name.
func serverAttrs(node string) []attribute.KeyValue {
	host, port, err := net.SplitHostPort(node)
	if err != nil || host == "" {
		return nil
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return nil
	}
	return []attribute.KeyValue{semconv.ServerAddress(host), semconv.ServerPort(p)}
}

// sqlStater is the SQLSTATE of a driver's error (pgconn.PgError has it).
type sqlStater interface{ SQLState() string }

// errorType returns a low-cardinality error.type for err (rwsplit's
// sentinels by name, the caller's cancellation, a SQLSTATE, else the
// error's type as semconv.ErrorType names it) and the SQLSTATE for
// db.response.status_code when the driver gives one. It never returns
// the error's text: that may quote a statement or a server's message.
func errorType(err error) (typ, status string) {
	switch {
	case errors.Is(err, rwsplit.ErrNoReplica):
		return "rwsplit.ErrNoReplica", ""
	case errors.Is(err, rwsplit.ErrNoPrimary):
		return "rwsplit.ErrNoPrimary", ""
	case errors.Is(err, rwsplit.ErrSplitBrain):
		return "rwsplit.ErrSplitBrain", ""
	case errors.Is(err, rwsplit.ErrClosed):
		return "rwsplit.ErrClosed", ""
	case errors.Is(err, context.Canceled):
		return "context.Canceled", ""
	case errors.Is(err, context.DeadlineExceeded):
		return "context.DeadlineExceeded", ""
	case errors.Is(err, driver.ErrBadConn):
		return "driver.ErrBadConn", ""
	}
	var s sqlStater
	if errors.As(err, &s) {
		if code := s.SQLState(); code != "" {
			return code, code
		}
	}
	return semconv.ErrorType(err).Value.AsString(), ""
}
