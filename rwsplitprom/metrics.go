package rwsplitprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rwsplit/rwsplit"
)

// Label names.
const (
	labelDB      = "db"
	labelNode    = "node"
	labelRole    = "role"
	labelOp      = "op"
	labelReason  = "reason"
	labelOutcome = "outcome"
	labelWhere   = "where"
	labelState   = "state"
)

// metrics is every metric of a Collector: the vectors the observers
// count into, and the descriptors of the series made from Stats at each
// scrape.
type metrics struct {
	// Counted by the observers.
	calls        *prometheus.CounterVec
	callDuration *prometheus.HistogramVec
	outage       *prometheus.HistogramVec
	sessionWait  *prometheus.HistogramVec
	promotion    *prometheus.HistogramVec
	transitions  *prometheus.CounterVec

	// From Stats, per DB.
	info              *prometheus.Desc
	eligible          *prometheus.Desc
	fallbacks         *prometheus.Desc
	fallbackRefusals  *prometheus.Desc
	primaryChanges    *prometheus.Desc
	fencings          *prometheus.Desc
	splitBrains       *prometheus.Desc
	writesRefused     *prometheus.Desc
	lastOutage        *prometheus.Desc
	promotions        *prometheus.Desc
	sessionReads      *prometheus.Desc
	positionReads     *prometheus.Desc
	tokensRejected    *prometheus.Desc
	schemaFloor       *prometheus.Desc
	schemaReruns      *prometheus.Desc
	nodeUp            *prometheus.Desc
	nodeFenced        *prometheus.Desc
	nodeEligible      *prometheus.Desc
	nodeRole          *prometheus.Desc
	nodeLag           *prometheus.Desc
	nodeBroken        *prometheus.Desc
	nodeInFlight      *prometheus.Desc
	nodeLatency       *prometheus.Desc
	nodeEjections     *prometheus.Desc
	nodeRetries       *prometheus.Desc
	nodeRORetries     *prometheus.Desc
	nodeHedges        *prometheus.Desc
	nodeHedgeWins     *prometheus.Desc
	nodeErrors        *prometheus.Desc
	nodeConns         *prometheus.Desc
	nodeConnWaits     *prometheus.Desc
	nodeConnWaitTotal *prometheus.Desc
}

func newMetrics(cfg *config) metrics {
	ns := cfg.namespace
	hist := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		o := prometheus.HistogramOpts{Namespace: ns, Name: name, Help: help, Buckets: buckets}
		if cfg.nativeFactorG {
			o.NativeHistogramBucketFactor = cfg.nativeFactor
		}
		return prometheus.NewHistogramVec(o, labels)
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, nil)
	}
	db := []string{labelDB}
	node := []string{labelDB, labelNode}
	return metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "calls_total",
			Help: "Attempts of routed calls, by the node that served them (empty when refused before reaching one), its role, the operation " +
				"(query, exec, begin, conn), why the node was chosen (policy, rule, forced, fallback, session, consistency, schema, retry, hedge; " +
				"none when refused) and the outcome (ok, error, canceled by the caller's context, refused).",
		}, []string{labelDB, labelNode, labelRole, labelOp, labelReason, labelOutcome}),
		callDuration: hist("call_duration_seconds",
			"Time of call attempts on their node, from sending the call to its first response (a hedged read: its whole time).",
			cfg.callBuckets, labelDB, labelNode, labelOp),
		outage: hist("write_outage_seconds",
			"Write outages, from the first sign of trouble with the old primary to the first successful write on the new one.",
			outageBuckets, labelDB),
		sessionWait: hist("session_wait_seconds",
			"Time session reads waited for a replica to replay the session's writes, by where the read went then (replica, or primary when none caught up in time).",
			sessionBuckets, labelDB, labelWhere),
		promotion: hist("promotion_duration_seconds",
			"Attempts of automatic promotion, by outcome (promoted, failed).",
			promotionBuckets, labelDB, labelOutcome),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "node_state_changes_total",
			Help: "Changes of a node's state: ejected, reinstated, fenced, unfenced, lagging, caught-up.",
		}, []string{labelDB, labelNode, labelState}),

		info:             desc("info", "The DB's dialect and read policy; always 1.", labelDB, "dialect", "policy"),
		eligible:         desc("eligible_replicas", "Replicas that reads may go to now.", db...),
		fallbacks:        desc("fallbacks_total", "Reads sent to the primary because no replica was eligible.", db...),
		fallbackRefusals: desc("fallback_refusals_total", "Reads refused because no replica was eligible and the fallback limit was reached.", db...),
		primaryChanges:   desc("primary_changes_total", "Primary changes followed.", db...),
		fencings:         desc("fencings_total", "Nodes fenced: found writable on an old timeline.", db...),
		splitBrains:      desc("split_brains_total", "Times several writable nodes were seen (writes refused meanwhile).", db...),
		writesRefused:    desc("writes_refused", "1 while writes are refused (no primary, or a split brain), else 0.", db...),
		lastOutage:       desc("last_write_outage_seconds", "The last write outage: from the first sign of trouble with the old primary to the first successful write on the new one; 0 before any.", db...),
		promotions:       desc("promotions_total", "Attempts of automatic promotion, by outcome (promoted, failed).", labelDB, labelOutcome),
		sessionReads:     desc("session_reads_total", "Reads of sessions (read-your-writes), by where they went (replica, primary).", labelDB, labelWhere),
		positionReads:    desc("position_reads_total", "Round trips made to read replication positions (after session writes, for pending sessions, write concerns and session waits).", db...),
		tokensRejected:   desc("tokens_rejected_total", "Session tokens not accepted (refused, or unreadable).", db...),
		schemaFloor:      desc("schema_floor", "1 while reads are held to the nodes that have replayed a schema change made through the DB, else 0.", db...),
		schemaReruns:     desc("schema_reruns_total", "Reads a replica refused for a table or column of a schema change it had not replayed, re-run on the primary.", db...),

		nodeUp:            desc("node_up", "1 when the node is in rotation, 0 when taken out after failures.", node...),
		nodeFenced:        desc("node_fenced", "1 when the node is fenced (writable on an old timeline: neither written to nor read from), else 0.", node...),
		nodeEligible:      desc("node_eligible", "1 when reads may go to the node now (a replica that is up, within the lag bound), else 0.", node...),
		nodeRole:          desc("node_role", "The node's current role: 1 for the role it has, 0 for the other.", labelDB, labelNode, labelRole),
		nodeLag:           desc("node_replication_lag_seconds", "A replica's replication lag as the health probes measure it; absent while unknown or broken.", node...),
		nodeBroken:        desc("node_replication_broken", "1 when a replica's replication is broken, 0 when it replicates; absent while unknown.", node...),
		nodeInFlight:      desc("node_in_flight_calls", "Calls sent to the node and not answered yet.", node...),
		nodeLatency:       desc("node_latency_seconds", "The node's latency estimate (a decaying average of time to first response) that the load-aware policies use; absent before the first answer.", node...),
		nodeEjections:     desc("node_ejections_total", "Times the node was taken out of rotation.", node...),
		nodeRetries:       desc("node_retries_total", "Reads that failed on the node and were retried on another one.", node...),
		nodeRORetries:     desc("node_read_only_retries_total", "Reads the node rejected as writes and that were re-run on the primary.", node...),
		nodeHedges:        desc("node_hedges_total", "Reads slow on the node that were also sent to another replica.", node...),
		nodeHedgeWins:     desc("node_hedge_wins_total", "Hedged reads the node answered first, as the second replica asked.", node...),
		nodeErrors:        desc("node_errors_total", "Calls that failed because of the node (connection-level errors).", node...),
		nodeConns:         desc("node_connections", "Connections of the node's pool, by state (in_use, idle).", labelDB, labelNode, labelState),
		nodeConnWaits:     desc("node_connection_waits_total", "Times a call waited for a connection of the node's pool.", node...),
		nodeConnWaitTotal: desc("node_connection_wait_seconds_total", "Time calls waited for a connection of the node's pool.", node...),
	}
}

func (m *metrics) describe(ch chan<- *prometheus.Desc) {
	m.calls.Describe(ch)
	m.callDuration.Describe(ch)
	m.outage.Describe(ch)
	m.sessionWait.Describe(ch)
	m.promotion.Describe(ch)
	m.transitions.Describe(ch)
	for _, d := range []*prometheus.Desc{
		m.info, m.eligible, m.fallbacks, m.fallbackRefusals, m.primaryChanges, m.fencings, m.splitBrains,
		m.writesRefused, m.lastOutage, m.promotions, m.sessionReads, m.positionReads, m.tokensRejected,
		m.schemaFloor, m.schemaReruns,
		m.nodeUp, m.nodeFenced, m.nodeEligible, m.nodeRole, m.nodeLag, m.nodeBroken, m.nodeInFlight,
		m.nodeLatency, m.nodeEjections, m.nodeRetries, m.nodeRORetries, m.nodeHedges, m.nodeHedgeWins,
		m.nodeErrors, m.nodeConns, m.nodeConnWaits, m.nodeConnWaitTotal,
	} {
		ch <- d
	}
}

// collectObserved sends what the observers counted.
func (m *metrics) collectObserved(ch chan<- prometheus.Metric) {
	m.calls.Collect(ch)
	m.callDuration.Collect(ch)
	m.outage.Collect(ch)
	m.sessionWait.Collect(ch)
	m.promotion.Collect(ch)
	m.transitions.Collect(ch)
}

// collectStats sends the series of the DB named db made from its Stats
// s. Nothing of LastError, WritesRefused or LastPromotionError (free
// text) becomes a label.
func (m *metrics) collectStats(ch chan<- prometheus.Metric, db string, s rwsplit.Stats) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(m.info, 1, db, s.Dialect, s.Policy)
	gauge(m.eligible, float64(s.Eligible), db)
	counter(m.fallbacks, s.Fallbacks, db)
	counter(m.fallbackRefusals, s.FallbackRejected, db)
	counter(m.primaryChanges, s.PrimaryChanges, db)
	counter(m.fencings, s.Fencings, db)
	counter(m.splitBrains, s.SplitBrains, db)
	gauge(m.writesRefused, bit(s.WritesRefused != ""), db)
	gauge(m.lastOutage, s.LastWriteOutage.Seconds(), db)
	counter(m.promotions, s.Promotions, db, "promoted")
	counter(m.promotions, s.PromotionsFailed, db, "failed")
	counter(m.sessionReads, s.SessionReplicaReads, db, "replica")
	counter(m.sessionReads, s.SessionPrimaryReads, db, "primary")
	counter(m.positionReads, s.PositionReads, db)
	counter(m.tokensRejected, s.TokensRejected, db)
	gauge(m.schemaFloor, bit(s.SchemaFloor), db)
	counter(m.schemaReruns, s.SchemaReruns, db)

	for _, n := range s.Nodes {
		gauge(m.nodeUp, bit(n.Up), db, n.Name)
		gauge(m.nodeFenced, bit(n.Fenced), db, n.Name)
		gauge(m.nodeEligible, bit(n.Eligible), db, n.Name)
		gauge(m.nodeRole, bit(n.Role == rwsplit.RolePrimary), db, n.Name, rwsplit.RolePrimary.String())
		gauge(m.nodeRole, bit(n.Role == rwsplit.RoleReplica), db, n.Name, rwsplit.RoleReplica.String())
		if n.Role == rwsplit.RoleReplica && n.LagKnown {
			gauge(m.nodeBroken, bit(n.Lag < 0), db, n.Name)
			if n.Lag >= 0 {
				gauge(m.nodeLag, n.Lag.Seconds(), db, n.Name)
			}
		}
		gauge(m.nodeInFlight, float64(n.InFlight), db, n.Name)
		if n.Latency > 0 {
			gauge(m.nodeLatency, n.Latency.Seconds(), db, n.Name)
		}
		counter(m.nodeEjections, n.Ejections, db, n.Name)
		counter(m.nodeRetries, n.Retries, db, n.Name)
		counter(m.nodeRORetries, n.ReadOnlyRetries, db, n.Name)
		counter(m.nodeHedges, n.Hedges, db, n.Name)
		counter(m.nodeHedgeWins, n.HedgeWins, db, n.Name)
		counter(m.nodeErrors, n.Errors, db, n.Name)
		gauge(m.nodeConns, float64(n.DB.InUse), db, n.Name, "in_use")
		gauge(m.nodeConns, float64(n.DB.Idle), db, n.Name, "idle")
		counter(m.nodeConnWaits, uint64(n.DB.WaitCount), db, n.Name)
		ch <- prometheus.MustNewConstMetric(m.nodeConnWaitTotal, prometheus.CounterValue, n.DB.WaitDuration.Seconds(), db, n.Name)
	}
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
