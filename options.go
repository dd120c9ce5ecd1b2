package rwsplit

import (
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// An Option configures a [DB] in [New] or [Open]. Options are validated by
// New and Open, which return an error for a bad one; they never panic.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	// Read by every call: first, on the DB's hot cache line.
	hedging       *Hedging // nil: off
	fallbackLimit int      // reads in flight on the primary for want of a replica; <0 unlimited

	policy   Policy
	logger   *slog.Logger
	dialect  string    // "" means: detect from the driver
	names    []string  // primary first, then replicas; nil means default names
	monitors []*sql.DB // probe handles, primary first; nil: probe through the nodes' own handles

	interval       time.Duration // health check interval
	probeTimeout   time.Duration // 0: derived from interval
	ejectAfter     int           // consecutive failures that take a node out
	reinstateAfter int           // consecutive successes that bring it back
	maxLag         time.Duration // 0: no bound
	slowStart      time.Duration // ramp-up of a reinstated replica; 0 off

	sessionKey    []byte        // signs session tokens; nil: unsigned
	sessionWindow time.Duration // read-your-writes window without positions
	sessionWait   time.Duration // how long a session read waits for a replica
	primaryWait   time.Duration // how long a write waits for a primary; 0 fails at once

	auto *AutoFailover // automatic promotion; nil: off

	tracker *ConnTracker // the nodes' connections, closed on ejection; nil: none

	discovery *Discovery // nil: the node set changes only by AddNode and RemoveNode
	// opener opens a node from its DSN as Open (or OpenTracked) opened
	// the first ones, for the nodes that discovery finds; nil with New.
	opener func(index int, dsn string) (*sql.DB, string, error)

	observers []Observer   // as given to WithObserver
	observer  Observer     // what the DB calls: nil for none, one, or all of them (set by validate)
	debugLog  *slog.Logger // the logger, for one line per call at Debug; nil when it discards everything
}

// Defaults of the health and fallback settings; the With... functions
// document them.
const (
	defaultInterval       = time.Second
	defaultEjectAfter     = 2
	defaultReinstateAfter = 2
	defaultFallbackLimit  = 32
	defaultSlowStart      = 5 * time.Second
	defaultSessionWindow  = 5 * time.Second
	minProbeTimeout       = 500 * time.Millisecond
	maxProbeTimeout       = 2 * time.Second
)

func defaultConfig() config {
	return config{
		policy:         LeastLatency(),
		logger:         slog.New(slog.DiscardHandler),
		interval:       defaultInterval,
		ejectAfter:     defaultEjectAfter,
		reinstateAfter: defaultReinstateAfter,
		fallbackLimit:  defaultFallbackLimit,
		slowStart:      defaultSlowStart,
		sessionWindow:  defaultSessionWindow,
	}
}

// timeout returns the probe timeout: the configured one, or the interval
// bounded to [500ms, 2s]: a probe is one short query, but loaded servers
// and CI machines answer slowly, and a long interval must not make a hung
// probe wait long.
func (c *config) timeout() time.Duration {
	if c.probeTimeout > 0 {
		return c.probeTimeout
	}
	return min(max(c.interval, minProbeTimeout), maxProbeTimeout)
}

// WithPolicy sets the policy that spreads reads over the eligible replicas.
// The default is [LeastLatency]. A nil policy is an error.
func WithPolicy(p Policy) Option {
	return optionFunc(func(c *config) { c.policy = p })
}

// WithLogger sets the logger for node state changes and routing events.
// The default, and nil, discards everything. rwsplit logs at Info when a
// node goes down or comes back and the primary changes, at Warn for
// failovers and when no replica is eligible, and at Debug for routing
// decisions: one line per routed call ("rwsplit: call", with op, node,
// role, reason, latency, attempt and err), written only when the logger
// is enabled for Debug, which each call asks it. Keys are stable: node,
// role, lag, err.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l == nil {
			l = slog.New(slog.DiscardHandler)
		}
		c.logger = l
	})
}

// WithDialect overrides the SQL dialect that rwsplit detects from the
// driver. It chooses the lexer of the read/write classifier (and, for the
// position-aware features, the queries rwsplit asks each node). Accepted
// names: "postgres" (also "postgresql", "pgx"), "mysql", "mariadb" and
// "generic". By default the dialect follows the driver: pgx and lib/pq are
// PostgreSQL, go-sql-driver/mysql is MySQL/MariaDB, anything else is
// generic, whose classifier calls a statement a read only when both the
// PostgreSQL and the MySQL rules do.
func WithDialect(name string) Option {
	return optionFunc(func(c *config) { c.dialect = name })
}

// WithNodeNames names the nodes given to [New] in [DB.Stats] and in log
// lines: primary first, then one name per replica, in order. Names must be
// non-empty and distinct. By default New names them "primary", "replica1",
// "replica2", ...; [Open] names them host:port from their DSNs.
func WithNodeNames(primary string, replicas ...string) Option {
	return optionFunc(func(c *config) {
		c.names = append([]string{primary}, replicas...)
	})
}

// WithHealthCheckInterval sets how often the health goroutine probes every
// node (alive, role, replication position and lag), with ±10% jitter. The
// default is 1s; zero keeps the default, a negative value is an error.
// Each probe runs under its own timeout (see [WithHealthCheckTimeout]), all
// nodes concurrently, so one hung node does not delay the others' results
// beyond that timeout.
func WithHealthCheckInterval(d time.Duration) Option {
	return optionFunc(func(c *config) { c.interval = d })
}

// WithHealthCheckTimeout sets the timeout of one probe. The default, and
// zero, is the check interval bounded to between 500ms and 2s. A negative
// value is an error.
func WithHealthCheckTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.probeTimeout = d })
}

// WithHysteresis sets how many consecutive failures take a node out of
// rotation (probes and connection-level errors of real traffic both count)
// and how many consecutive successful probes bring it back. The defaults
// are 2 and 2; zero keeps a default, a negative value is an error.
func WithHysteresis(failures, successes int) Option {
	return optionFunc(func(c *config) {
		if failures != 0 {
			c.ejectAfter = failures
		}
		if successes != 0 {
			c.reinstateAfter = successes
		}
	})
}

// WithMaxReplicationLag keeps reads off a replica that is further behind
// the primary than d. Lag is measured by the health probes:
//   - PostgreSQL: zero while the standby has replayed up to the primary's
//     current WAL position; otherwise the age of the last replayed
//     transaction, capped by the time since the standby was last seen
//     caught up.
//   - MySQL and MariaDB: Seconds_Behind_Source/Master where the probe may
//     read it (NULL, meaning broken replication, counts as infinitely far
//     behind); otherwise GTID comparison with the primary in the same way
//     as for PostgreSQL.
//
// The default, and zero, is no bound. A negative value is an error.
func WithMaxReplicationLag(d time.Duration) Option {
	return optionFunc(func(c *config) { c.maxLag = d })
}

// WithFallbackLimit caps the reads in flight on the primary because no
// replica is eligible: beyond it a read fails at once with [ErrNoReplica]
// instead of queueing on the primary. A replica outage in a read-heavy
// service would otherwise move all of its reads onto the primary, whose
// pool and CPU are sized for the writes, and take the writes down with it.
// The default is 32, about a typical primary pool's worth of connections;
// zero sends no read to the primary for want of a replica; a negative
// value removes the cap. Reads made with [WithPrimary], and every read of a
// DB without replicas, are not fallbacks and are never capped.
func WithFallbackLimit(n int) Option {
	return optionFunc(func(c *config) { c.fallbackLimit = n })
}

// WithSlowStart sets how long a replica that comes back after being taken
// out of rotation takes to receive its full share of reads: its share
// grows linearly over d, so a cold node is not stampeded. The default is
// 5s; zero turns slow start off. A negative value is an error.
func WithSlowStart(d time.Duration) Option {
	return optionFunc(func(c *config) { c.slowStart = d })
}

// WithMonitor makes the health probes use other handles than the ones
// that serve traffic, one per node in the order given to [New] or [Open]
// (primary first), typically opened with monitoring credentials: MariaDB
// and MySQL tell a primary from a replica and report lag only to a user
// with a monitoring privilege (SLAVE MONITOR, REPLICATION CLIENT), which
// the application's user should not need. The DB closes them in Close. By
// default the probes use the nodes' own handles.
func WithMonitor(primary *sql.DB, replicas ...*sql.DB) Option {
	return optionFunc(func(c *config) { c.monitors = append([]*sql.DB{primary}, replicas...) })
}

// WithSessionKey signs the tokens of sessions that write through this DB
// ([Session.Token]) with HMAC-SHA256 under key, and makes the DB accept
// only tokens signed with it: a resumed session whose token is unsigned or
// signed with another key starts empty (and is counted in
// [Stats].TokensRejected). Give every process that shares sessions the same
// key, at least 16 bytes (32 random bytes recommended). Without a key,
// tokens are unsigned and a DB accepts one only if its position is not
// beyond the primary's.
func WithSessionKey(key []byte) Option {
	k := append([]byte(nil), key...)
	return optionFunc(func(c *config) { c.sessionKey = k })
}

// WithSessionWindow sets how long after a session's last write its reads
// go to the primary when the dialect has no replication positions (a
// generic driver); default 5s. This is weaker than position tracking: a
// replica lagging more than the window serves stale data.
func WithSessionWindow(d time.Duration) Option {
	return optionFunc(func(c *config) { c.sessionWindow = d })
}

// WithSessionWait sets how long a session read may wait for an eligible
// replica to apply the session's writes, reading the replicas' positions
// every few milliseconds, before it goes to the primary. The default, 0,
// goes to the primary at once; the health loop then probes faster for a
// while so that replicas are seen to catch up soon.
func WithSessionWait(d time.Duration) Option {
	return optionFunc(func(c *config) { c.sessionWait = d })
}

// WithPrimaryWait lets a write that finds no primary (it stopped answering,
// it was fenced, or several nodes take writes) wait up to d for one, as
// during a failover, instead of failing at once with [ErrNoPrimary]. The
// default, 0, fails at once.
func WithPrimaryWait(d time.Duration) Option {
	return optionFunc(func(c *config) { c.primaryWait = d })
}

// validate checks the settings against the number of nodes; addrs are
// the nodes' addresses from their DSNs (nil with New).
func (c *config) validate(nodes int, addrs []string) error {
	switch {
	case c.interval < 0:
		return fmt.Errorf("WithHealthCheckInterval: negative interval %s", c.interval)
	case c.probeTimeout < 0:
		return fmt.Errorf("WithHealthCheckTimeout: negative timeout %s", c.probeTimeout)
	case c.ejectAfter < 0 || c.reinstateAfter < 0:
		return fmt.Errorf("WithHysteresis: negative count")
	case c.maxLag < 0:
		return fmt.Errorf("WithMaxReplicationLag: negative lag %s", c.maxLag)
	case c.slowStart < 0:
		return fmt.Errorf("WithSlowStart: negative duration %s", c.slowStart)
	case c.sessionKey != nil && len(c.sessionKey) < 16:
		return fmt.Errorf("WithSessionKey: key of %d bytes; want at least 16 (32 random bytes recommended)", len(c.sessionKey))
	case c.sessionWindow < 0:
		return fmt.Errorf("WithSessionWindow: negative window %s", c.sessionWindow)
	case c.primaryWait < 0:
		return fmt.Errorf("WithPrimaryWait: negative wait %s", c.primaryWait)
	case c.sessionWait < 0:
		return fmt.Errorf("WithSessionWait: negative wait %s", c.sessionWait)
	}
	if c.interval == 0 {
		c.interval = defaultInterval
	}
	for _, o := range c.observers {
		if o == nil {
			return fmt.Errorf("WithObserver: nil observer")
		}
	}
	c.observer = observerOf(c.observers)
	if c.logger.Handler() != slog.DiscardHandler {
		c.debugLog = c.logger
	}
	if c.hedging != nil {
		if err := c.hedging.validate(); err != nil {
			return err
		}
	}
	if c.auto != nil {
		if err := c.auto.validate(nodes, addrs); err != nil {
			return err
		}
	}
	if c.discovery != nil {
		if err := c.discovery.validate(c.opener != nil); err != nil {
			return err
		}
		if m, ok := c.discovery.Source.(FailoverManager); ok && m.ManagesFailover() && c.auto != nil {
			return errors.New("WithDiscovery and WithAutoFailover: the discovery source promotes replicas itself; two promoters would split the brain")
		}
	}
	if c.monitors != nil {
		if len(c.monitors) != nodes {
			return fmt.Errorf("WithMonitor: %d handles for %d nodes", len(c.monitors), nodes)
		}
		for i, m := range c.monitors {
			if m == nil {
				return fmt.Errorf("WithMonitor: handle of %s is nil", nodeOrdinal(i))
			}
		}
	}
	return nil
}

// suspectAfter is how long a probe may go unanswered, while another node's
// has answered, before its node gets no new reads: half the interval, at
// least 100ms, at most half the probe timeout.
func (c *config) suspectAfter() time.Duration {
	return min(max(c.interval/2, 100*time.Millisecond), c.timeout()/2)
}

// fastInterval is the probe cadence while sessions wait for replicas: a
// tenth of the interval, at least 20ms.
func (c *config) fastInterval() time.Duration {
	return max(c.interval/10, 20*time.Millisecond)
}
