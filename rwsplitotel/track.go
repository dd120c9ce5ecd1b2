package rwsplitotel

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/rwsplit/rwsplit"
)

// statsInstruments are the asynchronous instruments observed from
// [rwsplit.DB.Stats] at each collection.
type statsInstruments struct {
	// Per node, with rwsplit.node.name and rwsplit.node.role.
	up, eligible, fenced, primary, broken metric.Int64ObservableGauge
	inFlight                              metric.Int64ObservableUpDownCounter
	lag, latency                          metric.Float64ObservableGauge

	// Per node, with rwsplit.node.name only: a role change does not start
	// a new series.
	ejections, retries, readOnlyRetries, errors metric.Int64ObservableCounter
	hedgesSent, hedgesWon                       metric.Int64ObservableCounter

	// Per node's connection pool, with db.client.connection.pool.name.
	connCount, connMax metric.Int64ObservableUpDownCounter
	poolWaits          metric.Int64ObservableCounter
	poolWaitTime       metric.Float64ObservableCounter

	// Per DB.
	info, eligibleReplicas, writesRefused, schemaFloor metric.Int64ObservableGauge
	lastOutage                                         metric.Float64ObservableGauge
	fallbacks, fallbacksRefused                        metric.Int64ObservableCounter
	primaryChanges, fencings, splits, promotions       metric.Int64ObservableCounter
	sessionReads, positionReads                        metric.Int64ObservableCounter
	tokensRejected, schemaReruns                       metric.Int64ObservableCounter
}

func (s *statsInstruments) create(m metric.Meter) error {
	var errs []error
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	fgauge := func(name, unit, desc string) metric.Float64ObservableGauge {
		g, err := m.Float64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	fcounter := func(name, unit, desc string) metric.Float64ObservableCounter {
		c, err := m.Float64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	updown := func(name, unit, desc string) metric.Int64ObservableUpDownCounter {
		c, err := m.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	s.up = gauge("rwsplit.node.up", "1", "1 when the node is in rotation (not taken out by failures), else 0.")
	s.eligible = gauge("rwsplit.node.eligible", "1", "1 when reads may go to the node now (a replica up and within the lag bound), else 0.")
	s.fenced = gauge("rwsplit.node.fenced", "1", "1 when the node takes writes on an old timeline and is neither written to nor read from, else 0.")
	s.primary = gauge("rwsplit.node.primary", "1", "The node's role: 1 for the primary, 0 for a replica.")
	s.broken = gauge("rwsplit.node.replication_broken", "1", "1 when a replica's replication is broken, 0 when it replicates; absent while unknown.")
	s.inFlight = updown("rwsplit.node.in_flight", "{call}", "Calls sent to the node and not answered yet.")
	s.lag = fgauge("rwsplit.node.lag", "s", "A replica's replication lag as the health probes measure it; absent while unknown or broken.")
	s.latency = fgauge("rwsplit.node.latency", "s", "The node's latency estimate (peak EWMA) that the load-aware policies use; absent before its first answer.")

	s.ejections = counter("rwsplit.node.ejections", "{ejection}", "Times the node was taken out of rotation.")
	s.retries = counter("rwsplit.node.retries", "{read}", "Reads that failed on the node and were retried on another node.")
	s.readOnlyRetries = counter("rwsplit.node.read_only_retries", "{read}", "Reads the node rejected as writes and that were re-run on the primary.")
	s.errors = counter("rwsplit.node.errors", "{call}", "Calls that failed because of the node (connection-level errors).")
	s.hedgesSent = counter("rwsplit.hedge.sent", "{read}", "Reads slow on the node that were also sent to another replica.")
	s.hedgesWon = counter("rwsplit.hedge.won", "{read}", "Hedged reads the node answered first, as the replica asked second.")

	s.connCount = updown("db.client.connection.count", "{connection}", "Connections of the node's pool, by state.")
	s.connMax = updown("db.client.connection.max", "{connection}", "The maximum number of open connections of the node's pool; 0 is unlimited.")
	s.poolWaits = counter("rwsplit.pool.waits", "{wait}", "Times a call waited for a connection of the node's pool.")
	s.poolWaitTime = fcounter("rwsplit.pool.wait_time", "s", "Time calls waited for a connection of the node's pool.")

	s.info = gauge("rwsplit.info", "1", "1, with the DB's dialect and read policy.")
	s.eligibleReplicas = gauge("rwsplit.replicas.eligible", "{replica}", "Replicas reads may go to now.")
	s.fallbacks = counter("rwsplit.fallback.reads", "{read}", "Reads sent to the primary because no replica was eligible.")
	s.fallbacksRefused = counter("rwsplit.fallback.refused", "{read}", "Reads refused with ErrNoReplica: no replica eligible and the fallback limit reached.")
	s.primaryChanges = counter("rwsplit.primary.changes", "{change}", "Primary changes followed.")
	s.fencings = counter("rwsplit.primary.fencings", "{fencing}", "Nodes fenced: found writable on an old timeline.")
	s.splits = counter("rwsplit.primary.split_brains", "{event}", "Times several writable nodes were seen that could not be told apart (writes refused).")
	s.writesRefused = gauge("rwsplit.primary.writes_refused", "1", "1 while writes are refused (split brain), else 0.")
	s.lastOutage = fgauge("rwsplit.write_outage.last", "s", "The last write outage: from the first sign of trouble with the old primary to the first successful write on the new one; 0 before any.")
	s.promotions = counter("rwsplit.promotions", "{promotion}", "Attempts of automatic promotion, by outcome (promoted, failed).")
	s.sessionReads = counter("rwsplit.session.reads", "{read}", "Session reads, by where they went (rwsplit.session.target: replica or primary).")
	s.positionReads = counter("rwsplit.session.position_reads", "{read}", "Round trips made to read replication positions for sessions, write concerns and session waits.")
	s.tokensRejected = counter("rwsplit.session.rejected_tokens", "{token}", "Resumed session tokens not accepted (refused by the DB, or unreadable).")
	s.schemaFloor = gauge("rwsplit.schema.floor", "1", "1 while reads are held to replicas that replayed a schema change made through the DB (or the primary), else 0.")
	s.schemaReruns = counter("rwsplit.schema.reruns", "{read}", "Reads a replica refused for a schema change it had not replayed, re-run on the primary.")
	return errors.Join(errs...)
}

func (s *statsInstruments) all() []metric.Observable {
	return []metric.Observable{
		s.up, s.eligible, s.fenced, s.primary, s.broken, s.inFlight, s.lag, s.latency,
		s.ejections, s.retries, s.readOnlyRetries, s.errors, s.hedgesSent, s.hedgesWon,
		s.connCount, s.connMax, s.poolWaits, s.poolWaitTime,
		s.info, s.eligibleReplicas, s.writesRefused, s.schemaFloor, s.lastOutage,
		s.fallbacks, s.fallbacksRefused, s.primaryChanges, s.fencings, s.splits, s.promotions,
		s.sessionReads, s.positionReads, s.tokensRejected, s.schemaReruns,
	}
}

// Track registers a callback that observes db's [rwsplit.DB.Stats] at
// each collection of the Observer's meter provider:
//
//   - per node, with rwsplit.node.name and rwsplit.node.role: the gauges
//     rwsplit.node.up, rwsplit.node.eligible, rwsplit.node.fenced,
//     rwsplit.node.primary (1 primary, 0 replica),
//     rwsplit.node.replication_broken and rwsplit.node.lag (s) for a
//     replica whose lag the probes have measured (lag absent while
//     broken), rwsplit.node.latency (s, the policies' estimate), and the
//     up-down counter rwsplit.node.in_flight;
//   - per node, with rwsplit.node.name: the counters
//     rwsplit.node.ejections, rwsplit.node.retries,
//     rwsplit.node.read_only_retries, rwsplit.node.errors,
//     rwsplit.hedge.sent and rwsplit.hedge.won;
//   - per node's pool, with db.client.connection.pool.name set to the
//     node's name: db.client.connection.count (db.client.connection.state
//     idle or used), db.client.connection.max, rwsplit.pool.waits and
//     rwsplit.pool.wait_time (s);
//   - per DB: the gauges rwsplit.info (1, with rwsplit.dialect and
//     rwsplit.policy), rwsplit.replicas.eligible,
//     rwsplit.primary.writes_refused, rwsplit.write_outage.last (s) and
//     rwsplit.schema.floor, and the counters rwsplit.fallback.reads,
//     rwsplit.fallback.refused, rwsplit.primary.changes,
//     rwsplit.primary.fencings, rwsplit.primary.split_brains,
//     rwsplit.promotions (rwsplit.promotion.outcome promoted or failed),
//     rwsplit.session.reads (rwsplit.session.target replica or primary),
//     rwsplit.session.position_reads, rwsplit.session.rejected_tokens and
//     rwsplit.schema.reruns.
//
// The counters count from the DB's start. Without WithSystem, the first
// DB tracked gives db.system.name from its dialect. Call Track once per
// DB, right after opening it; the Registration's Unregister stops the
// observations (Stats works after Close, so the order does not matter).
// Several DBs may be tracked by one Observer when their node names
// differ; otherwise give each its own Observer with [WithAttributes].
func (o *Observer) Track(db *rwsplit.DB) (metric.Registration, error) {
	if db == nil {
		return nil, errors.New("rwsplitotel: Track: nil DB")
	}
	o.settle(db, db.Stats().Dialect)
	return o.meter.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		s := db.Stats()
		o.settle(db, s.Dialect)
		o.observeStats(obs, o.attrs.Load().base, &s)
		return nil
	}, o.stats.all()...)
}

func (o *Observer) observeStats(obs metric.Observer, base []attribute.KeyValue, s *rwsplit.Stats) {
	in := &o.stats
	set := func(kv ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append(append(make([]attribute.KeyValue, 0, len(base)+len(kv)), base...), kv...)...))
	}
	b2i := func(b bool) int64 {
		if b {
			return 1
		}
		return 0
	}
	for i := range s.Nodes {
		n := &s.Nodes[i]
		name := NodeNameKey.String(n.Name)
		withRole := set(name, NodeRoleKey.String(n.Role.String()))
		obs.ObserveInt64(in.up, b2i(n.Up), withRole)
		obs.ObserveInt64(in.eligible, b2i(n.Eligible), withRole)
		obs.ObserveInt64(in.fenced, b2i(n.Fenced), withRole)
		obs.ObserveInt64(in.primary, b2i(n.Role == rwsplit.RolePrimary), withRole)
		obs.ObserveInt64(in.inFlight, n.InFlight, withRole)
		if n.LagKnown && n.Role == rwsplit.RoleReplica {
			obs.ObserveInt64(in.broken, b2i(n.Lag < 0), withRole)
			if n.Lag >= 0 {
				obs.ObserveFloat64(in.lag, n.Lag.Seconds(), withRole)
			}
		}
		if n.Latency > 0 {
			obs.ObserveFloat64(in.latency, n.Latency.Seconds(), withRole)
		}

		node := set(name)
		obs.ObserveInt64(in.ejections, int64(n.Ejections), node)
		obs.ObserveInt64(in.retries, int64(n.Retries), node)
		obs.ObserveInt64(in.readOnlyRetries, int64(n.ReadOnlyRetries), node)
		obs.ObserveInt64(in.errors, int64(n.Errors), node)
		obs.ObserveInt64(in.hedgesSent, int64(n.Hedges), node)
		obs.ObserveInt64(in.hedgesWon, int64(n.HedgeWins), node)

		pool := semconv.DBClientConnectionPoolName(n.Name)
		obs.ObserveInt64(in.connCount, int64(n.DB.Idle), set(pool, semconv.DBClientConnectionStateIdle))
		obs.ObserveInt64(in.connCount, int64(n.DB.InUse), set(pool, semconv.DBClientConnectionStateUsed))
		withPool := set(pool)
		obs.ObserveInt64(in.connMax, int64(n.DB.MaxOpenConnections), withPool)
		obs.ObserveInt64(in.poolWaits, n.DB.WaitCount, withPool)
		obs.ObserveFloat64(in.poolWaitTime, n.DB.WaitDuration.Seconds(), withPool)
	}
	all := set()
	obs.ObserveInt64(in.info, 1, set(DialectKey.String(s.Dialect), PolicyKey.String(s.Policy)))
	obs.ObserveInt64(in.eligibleReplicas, int64(s.Eligible), all)
	obs.ObserveFloat64(in.lastOutage, s.LastWriteOutage.Seconds(), all)
	obs.ObserveInt64(in.schemaFloor, b2i(s.SchemaFloor), all)
	obs.ObserveInt64(in.promotions, int64(s.Promotions), set(PromotionOutcomeKey.String("promoted")))
	obs.ObserveInt64(in.promotions, int64(s.PromotionsFailed), set(PromotionOutcomeKey.String("failed")))
	obs.ObserveInt64(in.fallbacks, int64(s.Fallbacks), all)
	obs.ObserveInt64(in.fallbacksRefused, int64(s.FallbackRejected), all)
	obs.ObserveInt64(in.primaryChanges, int64(s.PrimaryChanges), all)
	obs.ObserveInt64(in.fencings, int64(s.Fencings), all)
	obs.ObserveInt64(in.splits, int64(s.SplitBrains), all)
	obs.ObserveInt64(in.writesRefused, b2i(s.WritesRefused != ""), all)
	obs.ObserveInt64(in.sessionReads, int64(s.SessionReplicaReads), set(SessionTargetKey.String("replica")))
	obs.ObserveInt64(in.sessionReads, int64(s.SessionPrimaryReads), set(SessionTargetKey.String("primary")))
	obs.ObserveInt64(in.positionReads, int64(s.PositionReads), all)
	obs.ObserveInt64(in.tokensRejected, int64(s.TokensRejected), all)
	obs.ObserveInt64(in.schemaReruns, int64(s.SchemaReruns), all)
}
