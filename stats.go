package rwsplit

import (
	"database/sql"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// Stats is a snapshot of a DB's nodes, taken by [DB.Stats].
type Stats struct {
	Dialect string      // the dialect in use: postgres, mysql, mariadb or generic
	Policy  string      // the read policy's type, e.g. "LeastLatency"
	Nodes   []NodeStats // every node: those given to New or Open (the configured primary first), then those that joined since, in order

	Eligible         int    // replicas reads may go to now
	Fallbacks        uint64 // reads sent to the primary because no replica was eligible
	FallbackRejected uint64 // reads refused with ErrNoReplica (fallback limit reached)

	// Read-your-writes: session reads routed to a replica and to the
	// primary, round trips made to read positions (after session writes,
	// for pending sessions, write concerns and session waits), and
	// resumed tokens not accepted (refused by the DB, or unreadable by
	// SessionMiddleware).
	// Failover: primary changes followed, nodes fenced (writable on an
	// old timeline), times several writable nodes were seen (writes
	// refused), why writes are refused now (empty when they are not), and
	// the last write outage: from the first sign of trouble with the old
	// primary to the first successful write on the new one.
	PrimaryChanges  uint64
	Fencings        uint64
	SplitBrains     uint64
	WritesRefused   string
	LastWriteOutage time.Duration

	// Automatic promotion ([WithAutoFailover]): replicas promoted, attempts
	// that promoted none (vetoed, or a step failed), and why the last one
	// failed.
	Promotions         uint64
	PromotionsFailed   uint64
	LastPromotionError string

	SessionReplicaReads uint64
	SessionPrimaryReads uint64
	PositionReads       uint64
	TokensRejected      uint64

	// Schema changes: whether reads are held to replicas that have
	// replayed a schema change made through this DB (or to the primary),
	// and how many reads a replica refused for an unknown table or column
	// of such a change and were re-run on the primary.
	SchemaFloor  bool
	SchemaReruns uint64

	// Discovery ([WithDiscovery]): listings applied, listings that failed
	// or were ignored in part (the node set then stays as it was, or
	// takes the usable part), and the last failure.
	Listings           uint64
	DiscoveryFailures  uint64
	LastDiscoveryError string
}

// NodeStats describes one node. Counters count calls made through the
// rwsplit handle since it was created.
type NodeStats struct {
	Name     string        // host:port or the given name; never a DSN or password
	Role     Role          // current role
	Up       bool          // in rotation: not taken out by failures
	Fenced   bool          // takes writes on an old timeline: neither written to nor read from
	Eligible bool          // reads may go to it now (a replica that is up, within the lag bound)
	InFlight int64         // calls sent and not answered yet
	Latency  time.Duration // latency estimate (see Replica.Latency); 0 before the first answer

	// Lag is the replica's replication lag as the health probes measure it
	// (see WithMaxReplicationLag); LagKnown is false before it could be
	// measured, and Lag is -1 when replication is broken.
	Lag       time.Duration
	LagKnown  bool
	LastError string // the node's last failure (probe or traffic), if any

	// Position is the node's replication position as the last probe read
	// it (LSN or GTID set), and Epoch its timeline (PostgreSQL) or, on a
	// MySQL/MariaDB primary, its server id; empty when unknown.
	Position string
	Epoch    string

	Ejections uint64 // times it was taken out of rotation
	Retries   uint64 // reads that failed on it and were retried on another node
	Hedges    uint64 // reads slow on it that were also sent to another replica
	HedgeWins uint64 // hedged reads it answered first, as the second replica asked

	Reads        uint64 // pure reads served
	Writes       uint64 // Exec calls and writing queries served
	Transactions uint64 // transactions begun
	Errors       uint64 // calls that failed because of the node (connection-level errors)

	// ReadOnlyRetries counts reads this node rejected as writes (SQLSTATE
	// 25006, MySQL 1290) that were re-run on the primary.
	ReadOnlyRetries uint64

	DB sql.DBStats // the node's connection pool
}

// Stats returns a snapshot of every node. It is safe to call at any time,
// also after Close.
func (db *DB) Stats() Stats {
	snap := db.snap.Load()
	s := Stats{
		Dialect:          db.positions.Load().name,
		Policy:           policyName(db.cfg.policy),
		Eligible:         len(snap.replicas),
		Fallbacks:        db.counts.fallbacks.Load(),
		FallbackRejected: db.counts.fallbackRejected.Load(),

		PrimaryChanges:  db.roles.primaryChanges.Load(),
		Fencings:        db.roles.fencings.Load(),
		SplitBrains:     db.roles.splitBrains.Load(),
		LastWriteOutage: time.Duration(db.roles.lastOutage.Load()),

		SessionReplicaReads: db.counts.sessionReplicaReads.Load(),
		SessionPrimaryReads: db.counts.sessionPrimaryReads.Load(),
		PositionReads:       db.counts.positionReads.Load(),
		TokensRejected:      db.counts.tokensRejected.Load(),

		SchemaFloor:  db.schemaOpen.Load(),
		SchemaReruns: db.schema.reruns.Load(),

		Listings:          db.fleet.disco.listings.Load(),
		DiscoveryFailures: db.fleet.disco.failures.Load(),
	}
	s.LastDiscoveryError, _ = db.fleet.disco.lastErr.Load().(string)
	if e := db.writeBlock.Load(); e != nil {
		s.WritesRefused = (*e).Error()
	}
	if a := db.auto; a != nil {
		s.Promotions, s.PromotionsFailed = a.promotions.Load(), a.failures.Load()
		s.LastPromotionError, _ = a.lastErr.Load().(string)
	}
	for _, r := range db.nodeList() {
		lastErr, _ := r.lastErr.Load().(string)
		lag := r.lag.Load()
		ns := NodeStats{
			Name:            r.name,
			Role:            r.Role(),
			Up:              r.healthy.Load(),
			Fenced:          r.fenced.Load(),
			InFlight:        r.InFlight(),
			Latency:         r.Latency(),
			Lag:             time.Duration(lag),
			LagKnown:        lag != lagUnknown,
			LastError:       lastErr,
			Ejections:       r.ejections.Load(),
			Retries:         r.retries.Load(),
			Hedges:          r.hedges.Load(),
			HedgeWins:       r.hedgeWins.Load(),
			Reads:           r.reads(),
			Writes:          r.writes(),
			Transactions:    r.transactions.Load(),
			Errors:          r.errors.Load(),
			ReadOnlyRetries: r.readOnlyRetries.Load(),
			DB:              r.db.Stats(),
		}
		if np := r.pos.Load(); np != nil {
			ns.Position = np.pos.String()
			if np.epochKnown {
				ns.Epoch = np.epoch.String()
			}
		}
		if lag == lagBroken {
			ns.Lag = -1
		}
		if !ns.LagKnown {
			ns.Lag = 0
		}
		for _, e := range snap.replicas {
			ns.Eligible = ns.Eligible || e == r
		}
		s.Nodes = append(s.Nodes, ns)
	}
	return s
}

// policyName names a policy in Stats: by its String method, else by its
// type.
func policyName(p Policy) string {
	if s, ok := p.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", p)
}

// String formats the snapshot as a table, one node a line.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dialect %s, policy %s, %d replicas eligible, %d fallback reads (%d refused)\n",
		s.Dialect, s.Policy, s.Eligible, s.Fallbacks, s.FallbackRejected)
	if s.PrimaryChanges+s.Fencings+s.SplitBrains > 0 || s.WritesRefused != "" {
		fmt.Fprintf(&b, "failover: %d primary changes (last write outage %v), %d fenced, %d split brains",
			s.PrimaryChanges, s.LastWriteOutage.Round(time.Millisecond), s.Fencings, s.SplitBrains)
		if s.WritesRefused != "" {
			fmt.Fprintf(&b, "; writes refused: %s", s.WritesRefused)
		}
		b.WriteString("\n")
	}
	if s.Promotions+s.PromotionsFailed > 0 {
		fmt.Fprintf(&b, "automatic failover: %d promoted, %d attempts failed", s.Promotions, s.PromotionsFailed)
		if s.LastPromotionError != "" {
			fmt.Fprintf(&b, " (last: %s)", s.LastPromotionError)
		}
		b.WriteString("\n")
	}
	if s.SessionReplicaReads+s.SessionPrimaryReads+s.PositionReads+s.TokensRejected > 0 {
		fmt.Fprintf(&b, "sessions: %d reads on replicas, %d on the primary, %d position reads, %d tokens rejected\n",
			s.SessionReplicaReads, s.SessionPrimaryReads, s.PositionReads, s.TokensRejected)
	}
	if s.SchemaFloor || s.SchemaReruns > 0 {
		fmt.Fprintf(&b, "schema changes: reads held to replicas that replayed them %v, %d reads re-run on the primary\n", s.SchemaFloor, s.SchemaReruns)
	}
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tROLE\tSTATE\tLAG\tREADS\tWRITES\tTX\tERRORS\tRETRIES\tRO-RETRIES\tEJECTED\tIN-FLIGHT\tLATENCY\tOPEN\tIN-USE")
	for _, n := range s.Nodes {
		state := "down"
		switch {
		case n.Fenced:
			state = "fenced"
		case n.Eligible:
			state = "eligible"
		case n.Up:
			state = "up"
		}
		lag := "-"
		switch {
		case n.Role == RolePrimary:
		case n.Lag < 0:
			lag = "broken"
		case n.LagKnown:
			lag = n.Lag.Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%d\n",
			n.Name, n.Role, state, lag, n.Reads, n.Writes, n.Transactions, n.Errors, n.Retries, n.ReadOnlyRetries,
			n.Ejections, n.InFlight, n.Latency.Round(time.Microsecond), n.DB.OpenConnections, n.DB.InUse)
	}
	w.Flush()
	return b.String()
}
