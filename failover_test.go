package rwsplit

import (
	"context"
	"database/sql"
	"errors"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit/internal/fakedriver"
)

// Role discovery and fencing, round by round: the health goroutine is
// stopped and the tests play the probe rounds themselves, each node
// reporting what the test wants it to, through the steps probeRound takes
// once every probe has answered (liveness, roles, positions, snapshot).

// newRoleCluster returns a primary "p" and replicas "r1", "r2", ... in the
// given dialect, whose health goroutine is stopped once New returns, so
// that only the rounds the test plays (playRound) change health and roles.
// Reads are spread round-robin, so that every eligible replica serves.
func newRoleCluster(t *testing.T, dialect string, replicas int, opts ...Option) *cluster {
	t.Helper()
	names := make([]string, replicas)
	for i := range names {
		names[i] = "r" + strconv.Itoa(i+1)
	}
	base := []Option{
		WithDialect(dialect),
		WithNodeNames("p", names...),
		WithHealthCheckInterval(time.Hour),
		WithPolicy(RoundRobin()),
		WithSlowStart(0),
	}
	c := newCluster(t, replicas, append(base, opts...)...)
	c.db.stopHealth()
	// The loop has returned: give the probes' context back its life, as
	// while the loop runs, so that applyLiveness tells a node's
	// connection failure from the DB closing. Close cancels it.
	c.db.health.ctx, c.db.health.cancel = context.WithCancel(context.Background())
	return c
}

// playRound applies one round of probe results, one per node in the order
// of the nodes (primary first), as probeRound does once all have answered.
func playRound(t *testing.T, db *DB, round []probeResult) {
	t.Helper()
	if len(round) != len(db.nodeList()) {
		t.Fatalf("round of %d results for %d nodes", len(round), len(db.nodeList()))
	}
	results := slices.Clone(round)
	start := monotime()
	for i, r := range db.nodeList() {
		results[i].at = start
		results[i] = db.applyLiveness(r, results[i], 0)
	}
	db.applyRound(results)
}

// playRounds plays round n times.
func playRounds(t *testing.T, db *DB, n int, round []probeResult) {
	t.Helper()
	for range n {
		playRound(t, db, round)
	}
}

// errRefused is what a probe of a node that is down returns.
var errRefused = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}

// unreachable is the probe result of a node that refuses connections.
func unreachable() probeResult { return probeResult{err: errRefused} }

// pgWritable is what the PostgreSQL probe reads from a node out of
// recovery: its current WAL position on timeline tli.
func pgWritable(lsn, tli uint64) probeResult {
	return probeResult{primary: true, roleKnown: true,
		pos: position{lsn: lsn}, posKnown: true, epoch: epoch{n: tli}, epochKnown: true}
}

// pgStandby is what the PostgreSQL probe reads from a standby replaying
// up to lsn, receiving timeline tli.
func pgStandby(lsn, tli uint64) probeResult {
	return probeResult{roleKnown: true, pos: position{lsn: lsn}, posKnown: true,
		epoch: epoch{n: tli}, epochKnown: true, replayAgeOK: true}
}

// mariaWritable is what the MariaDB probe reads from a node with
// read_only off that replicates from nobody.
func mariaWritable(gtid string, serverID uint64) probeResult {
	pos, ok := newPosition(dialectMariaDB, gtid)
	return probeResult{primary: true, roleKnown: true, pos: pos, posKnown: ok,
		epoch: epoch{n: serverID}, epochKnown: true}
}

// mariaReplica is what the MariaDB probe reads from a read-only replica
// that replicates, caught up to gtid.
func mariaReplica(gtid string) probeResult {
	pos, ok := newPosition(dialectMariaDB, gtid)
	return probeResult{roleKnown: true, pos: pos, posKnown: ok, lagReported: true}
}

// genericAlive is what the generic dialect's probe (a ping) returns from
// a node that answers: no role, no position.
func genericAlive() probeResult { return probeResult{} }

// roleServers returns the cluster's servers by name.
func roleServers(c *cluster) map[string]*fakedriver.Server {
	m := map[string]*fakedriver.Server{c.primary.Name(): c.primary}
	for _, r := range c.replicas {
		m[r.Name()] = r
	}
	return m
}

func execCounts(c *cluster) map[string]int64 {
	m := map[string]int64{}
	for name, s := range roleServers(c) {
		m[name] = s.Count(fakedriver.Exec)
	}
	return m
}

// primaryName returns the name of the node whose handle Primary returns.
func primaryName(db *DB) string {
	p := db.Primary()
	for _, r := range db.nodeList() {
		if r.db == p {
			return r.name
		}
	}
	return "<none>"
}

// wantWriteOn runs a write and checks that it succeeds on the server named
// want and reaches no other.
func wantWriteOn(t *testing.T, c *cluster, want string) {
	t.Helper()
	if r, err := c.db.writable(); err != nil || r.name != want {
		name := "<nil>"
		if r != nil {
			name = r.name
		}
		t.Errorf("writable() = %s, %v; want %s", name, err, want)
	}
	before := execCounts(c)
	if _, err := c.db.ExecContext(context.Background(), "INSERT INTO t VALUES (1)"); err != nil {
		t.Errorf("write, want it on %s: %v", want, err)
		return
	}
	for name, n := range execCounts(c) {
		got := n - before[name]
		if name == want && got != 1 || name != want && got != 0 {
			t.Errorf("write: %s received %d Execs, want it on %s alone", name, got, want)
		}
	}
}

// wantWriteRefused runs a write and checks that it fails at once with an
// error that is target, reaching no server; it returns the error.
func wantWriteRefused(t *testing.T, c *cluster, target error) error {
	t.Helper()
	if _, err := c.db.writable(); !errors.Is(err, target) {
		t.Errorf("writable(): %v, want %v", err, target)
	}
	before := execCounts(c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.db.ExecContext(ctx, "INSERT INTO t VALUES (1)")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("refused write took %s, want it to fail at once", took)
	}
	if !errors.Is(err, target) {
		t.Errorf("write: %v, want %v", err, target)
	}
	for name, n := range execCounts(c) {
		if got := n - before[name]; got != 0 {
			t.Errorf("refused write reached %s (%d Execs)", name, got)
		}
	}
	return err
}

// wantEligible checks that reads may go to exactly the named nodes, in
// Stats and in fact.
func wantEligible(t *testing.T, c *cluster, names ...string) {
	t.Helper()
	for _, n := range c.db.Stats().Nodes {
		if want := slices.Contains(names, n.Name); n.Eligible != want {
			t.Errorf("%s: Eligible = %v, want %v (%+v)", n.Name, n.Eligible, want, roleSummary(n))
		}
	}
	if len(names) == 0 {
		return
	}
	seen := map[string]bool{}
	for range 4 * len(names) {
		seen[served(t, context.Background(), c.db, "SELECT 1")] = true
	}
	if got := slices.Sorted(maps.Keys(seen)); !slices.Equal(got, slices.Sorted(slices.Values(names))) {
		t.Errorf("reads served by %v, want %v", got, names)
	}
}

// roleSummary is the part of a node's stats these tests look at.
func roleSummary(n NodeStats) string {
	return n.Name + " role=" + n.Role.String() + " up=" + strconv.FormatBool(n.Up) +
		" fenced=" + strconv.FormatBool(n.Fenced) + " eligible=" + strconv.FormatBool(n.Eligible)
}

// wantNode checks a node's role and fencing as Stats reports them.
func wantNode(t *testing.T, db *DB, name string, role Role, fenced bool) {
	t.Helper()
	n := nodeStats(db, name)
	if n.Role != role || n.Fenced != fenced {
		t.Errorf("%s: role %s fenced %v, want role %s fenced %v", roleSummary(n), n.Role, n.Fenced, role, fenced)
	}
}

// wantFailoverStats checks the failover counters of Stats.
func wantFailoverStats(t *testing.T, db *DB, changes, fencings, splitBrains uint64) {
	t.Helper()
	s := db.Stats()
	if s.PrimaryChanges != changes || s.Fencings != fencings || s.SplitBrains != splitBrains {
		t.Errorf("PrimaryChanges %d Fencings %d SplitBrains %d, want %d %d %d",
			s.PrimaryChanges, s.Fencings, s.SplitBrains, changes, fencings, splitBrains)
	}
}

func TestRolesPromotedReplicaBecomesPrimary(t *testing.T) {
	tests := []struct {
		name    string
		dialect string
		normal  []probeResult   // before the promotion
		rounds  [][]probeResult // the promotion, as the probes see it
	}{
		{
			name:    "postgres: standby promoted, old primary follows it",
			dialect: "postgres",
			normal:  []probeResult{pgWritable(100, 1), pgStandby(100, 1), pgStandby(100, 1)},
			rounds: [][]probeResult{
				{pgStandby(200, 2), pgWritable(200, 2), pgStandby(200, 2)},
				// Seen again, and again: one change.
				{pgStandby(300, 2), pgWritable(300, 2), pgStandby(300, 2)},
				{pgStandby(400, 2), pgWritable(400, 2), pgStandby(400, 2)},
			},
		},
		{
			name:    "postgres: promoted while the old primary is unreachable, which returns as a standby",
			dialect: "postgres",
			normal:  []probeResult{pgWritable(100, 1), pgStandby(100, 1), pgStandby(100, 1)},
			rounds: [][]probeResult{
				{unreachable(), pgWritable(200, 2), pgStandby(200, 2)},
				{pgStandby(200, 2), pgWritable(200, 2), pgStandby(200, 2)},
			},
		},
		{
			name:    "postgres: old primary taken out while down, back as a standby after two good rounds",
			dialect: "postgres",
			normal:  []probeResult{pgWritable(100, 1), pgStandby(100, 1), pgStandby(100, 1)},
			rounds: [][]probeResult{
				{unreachable(), pgStandby(100, 1), pgStandby(100, 1)},
				{unreachable(), pgWritable(200, 2), pgStandby(200, 2)},
				{unreachable(), pgWritable(300, 2), pgStandby(300, 2)},
				{pgStandby(300, 2), pgWritable(300, 2), pgStandby(300, 2)},
				{pgStandby(400, 2), pgWritable(400, 2), pgStandby(400, 2)},
			},
		},
		{
			name:    "mariadb: replica promoted, old primary made read-only",
			dialect: "mariadb",
			normal:  []probeResult{mariaWritable("0-1-100", 1), mariaReplica("0-1-100"), mariaReplica("0-1-100")},
			rounds: [][]probeResult{
				{mariaReplica("0-1-100"), mariaWritable("0-1-100", 2), mariaReplica("0-1-100")},
				{mariaReplica("0-2-101"), mariaWritable("0-2-101", 2), mariaReplica("0-2-101")},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newRoleCluster(t, tt.dialect, 2)
			playRounds(t, c.db, 2, tt.normal)
			if got := primaryName(c.db); got != "p" {
				t.Fatalf("Primary() is %s before the promotion", got)
			}
			wantWriteOn(t, c, "p")
			wantEligible(t, c, "r1", "r2")
			wantFailoverStats(t, c.db, 0, 0, 0)

			for _, round := range tt.rounds {
				playRound(t, c.db, round)
			}
			if got := primaryName(c.db); got != "r1" {
				t.Errorf("Primary() is %s, want r1", got)
			}
			wantNode(t, c.db, "r1", RolePrimary, false)
			wantNode(t, c.db, "p", RoleReplica, false)
			if p := nodeStats(c.db, "p"); !p.Up {
				t.Errorf("old primary not up: %s", roleSummary(p))
			}
			if got := c.db.Replicas(); len(got) != 2 || got[0] != c.db.nodeList()[0].db || got[1] != c.db.nodeList()[2].db {
				t.Errorf("Replicas() is not p and r2")
			}
			wantFailoverStats(t, c.db, 1, 0, 0)
			if s := c.db.Stats(); s.WritesRefused != "" {
				t.Errorf("WritesRefused %q", s.WritesRefused)
			}
			wantWriteOn(t, c, "r1")
			wantEligible(t, c, "p", "r2")
		})
	}
}

func TestRolesFencingOldTimeline(t *testing.T) {
	tests := []struct {
		name    string
		first   []probeResult // two writable nodes on different timelines
		fenced  int           // the node on the lower timeline
		top     int           // the node on the higher one
		changes uint64
	}{
		{
			name:    "old primary still writable beside the promoted standby",
			first:   []probeResult{pgWritable(100, 1), pgWritable(200, 2), pgStandby(200, 2)},
			fenced:  0,
			top:     1,
			changes: 1,
		},
		{
			name:    "stale node back writable on an old timeline",
			first:   []probeResult{pgWritable(300, 2), pgWritable(100, 1), pgStandby(300, 2)},
			fenced:  1,
			top:     0,
			changes: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newRoleCluster(t, "postgres", 2)
			fenced, top := c.db.nodeList()[tt.fenced].name, c.db.nodeList()[tt.top].name
			replica := c.db.nodeList()[2].name

			// Fenced once, however many rounds see it.
			playRounds(t, c.db, 3, tt.first)
			if got := primaryName(c.db); got != top {
				t.Errorf("Primary() is %s, want %s", got, top)
			}
			wantNode(t, c.db, fenced, RoleReplica, true)
			wantNode(t, c.db, top, RolePrimary, false)
			wantFailoverStats(t, c.db, tt.changes, 1, 0)
			wantWriteOn(t, c, top)
			wantEligible(t, c, replica)

			// A round in which the fenced node answers but its role
			// cannot be read: still fenced, still not read from.
			unknown := slices.Clone(tt.first)
			unknown[tt.fenced] = probeResult{err: errors.New("permission denied for function pg_current_wal_lsn")}
			playRound(t, c.db, unknown)
			wantNode(t, c.db, fenced, RoleReplica, true)
			wantEligible(t, c, replica)
			playRound(t, c.db, tt.first)

			// The higher timeline is remembered: with its node down, the
			// one left writable is still on the old timeline and fenced;
			// there is no primary to write to.
			down := slices.Clone(tt.first)
			down[tt.top] = unreachable()
			roleServers(c)[top].SetDown(true)
			playRounds(t, c.db, c.db.cfg.ejectAfter, down)
			if got := primaryName(c.db); got != top {
				t.Errorf("Primary() is %s with %s down, want still %s (never the fenced %s)", got, top, top, fenced)
			}
			wantNode(t, c.db, fenced, RoleReplica, true)
			wantFailoverStats(t, c.db, tt.changes, 1, 0)
			wantWriteRefused(t, c, ErrNoPrimary)
			wantEligible(t, c, replica)

			// The fenced node follows now: unfenced, and read from.
			following := slices.Clone(down)
			following[tt.fenced] = pgStandby(300, 2)
			playRound(t, c.db, following)
			wantNode(t, c.db, fenced, RoleReplica, false)
			wantEligible(t, c, fenced, replica)
			wantWriteRefused(t, c, ErrNoPrimary)

			// The primary back: written to again after two good rounds.
			roleServers(c)[top].SetDown(false)
			back := slices.Clone(following)
			back[tt.top] = pgWritable(400, 2)
			playRounds(t, c.db, c.db.cfg.reinstateAfter, back)
			wantWriteOn(t, c, top)
			wantEligible(t, c, fenced, replica)
			wantFailoverStats(t, c.db, tt.changes, 1, 0)
			if n := roleServers(c)[fenced].Count(fakedriver.Exec); n != 0 {
				t.Errorf("the fenced node %s received %d writes", fenced, n)
			}
		})
	}
}

// The primary fenced while two newer nodes split the writes, which then
// go down: no split brain any more, but the one writable node left is
// fenced, so there is still no primary.
func TestRolesFencedPrimaryIsNeverWritten(t *testing.T) {
	c := newRoleCluster(t, "postgres", 2)
	playRound(t, c.db, []probeResult{pgWritable(100, 1), pgWritable(200, 2), pgWritable(200, 2)})
	wantNode(t, c.db, "p", RolePrimary, true)
	wantWriteRefused(t, c, ErrSplitBrain)

	c.replicas[0].SetDown(true)
	c.replicas[1].SetDown(true)
	playRounds(t, c.db, c.db.cfg.ejectAfter, []probeResult{pgWritable(100, 1), unreachable(), unreachable()})
	if s := c.db.Stats(); s.WritesRefused != "" {
		t.Errorf("WritesRefused %q with one writable node left", s.WritesRefused)
	}
	wantNode(t, c.db, "p", RolePrimary, true)
	wantWriteRefused(t, c, ErrNoPrimary)
	wantFailoverStats(t, c.db, 0, 1, 1)
	if n := c.primary.Count(fakedriver.Exec); n != 0 {
		t.Errorf("the fenced primary received %d writes", n)
	}
	// Nor does it serve reads: a read with no replica left, a strong read,
	// a bounded one, a session's, a serializable read-only transaction.
	ctx := context.Background()
	queries := c.primary.Count(fakedriver.Query)
	sess := NewSession()
	for name, rctx := range map[string]context.Context{
		"fallback": ctx,
		"strong":   WithPrimary(ctx),
		"bounded":  WithConsistency(ctx, BoundedStaleness(time.Second)),
		"session":  WithSession(ctx, sess),
	} {
		var v string
		if err := c.db.QueryRowContext(rctx, "SELECT 1").Scan(&v); !errors.Is(err, ErrNoPrimary) {
			t.Errorf("%s read with the primary fenced: %v (served by %q), want ErrNoPrimary", name, err, v)
		}
	}
	if tx, err := c.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelSerializable}); !errors.Is(err, ErrNoPrimary) {
		if tx != nil {
			tx.Rollback()
		}
		t.Errorf("serializable read-only transaction with the primary fenced: %v, want ErrNoPrimary", err)
	}
	if n := c.primary.Count(fakedriver.Query) - queries; n != 0 {
		t.Errorf("the fenced primary served %d reads", n)
	}
}

// Trouble that passed (a missed probe round) is not counted in the outage
// of a later failover: the outage starts at the trouble that led to it.
func TestRolesOutageStartsAtItsOwnTrouble(t *testing.T) {
	c := newRoleCluster(t, "postgres", 2)
	playRound(t, c.db, []probeResult{unreachable(), pgStandby(100, 1), pgStandby(100, 1)})
	playRound(t, c.db, []probeResult{pgWritable(100, 1), pgStandby(100, 1), pgStandby(100, 1)})
	wantWriteOn(t, c, "p")
	time.Sleep(300 * time.Millisecond)
	// A planned switchover: p steps down, r1 takes writes.
	playRound(t, c.db, []probeResult{pgStandby(200, 1), pgWritable(200, 1), pgStandby(200, 1)})
	wantWriteOn(t, c, "r1")
	if got := c.db.Stats().LastWriteOutage; got > 100*time.Millisecond {
		t.Errorf("LastWriteOutage %v counts trouble that had passed before the switchover", got)
	}
}

// A primary that answers without saying its role (a user without the
// privilege, a proxy) is not in trouble: the probes keep their cadence.
func TestRolesUnreadableRoleIsNoTrouble(t *testing.T) {
	c := newRoleCluster(t, "postgres", 2)
	before := c.db.health.fastUntil.Load()
	playRounds(t, c.db, 3, []probeResult{{}, pgStandby(100, 1), pgStandby(100, 1)})
	if after := c.db.health.fastUntil.Load(); after != before {
		t.Errorf("a primary of unknown role started the fast probe cadence")
	}
	wantWriteOn(t, c, "p")
}

func TestRolesSplitBrain(t *testing.T) {
	tests := []struct {
		name     string
		dialect  string
		split    []probeResult // several writable nodes none can be told apart from
		writers  []string      // their names, as the error gives them
		stepDown []probeResult // all but one step down
		primary  string        // the one left
		changes  uint64
		fenced   string // a node fenced alongside, if any
	}{
		{
			name:     "postgres: same timeline, the other node steps down",
			dialect:  "postgres",
			split:    []probeResult{pgWritable(200, 2), pgWritable(200, 2), pgStandby(200, 2)},
			writers:  []string{"p", "r1"},
			stepDown: []probeResult{pgWritable(300, 2), pgStandby(200, 2), pgStandby(300, 2)},
			primary:  "p",
		},
		{
			name:     "postgres: same timeline, the configured primary steps down",
			dialect:  "postgres",
			split:    []probeResult{pgWritable(200, 2), pgWritable(200, 2), pgStandby(200, 2)},
			writers:  []string{"p", "r1"},
			stepDown: []probeResult{pgStandby(200, 2), pgWritable(300, 2), pgStandby(300, 2)},
			primary:  "r1",
			changes:  1,
		},
		{
			name:     "postgres: old primary fenced beside two writable nodes on a newer timeline",
			dialect:  "postgres",
			split:    []probeResult{pgWritable(100, 1), pgWritable(200, 2), pgWritable(200, 2)},
			writers:  []string{"r1", "r2"},
			stepDown: []probeResult{pgWritable(100, 1), pgWritable(300, 2), pgStandby(300, 2)},
			primary:  "r1",
			changes:  1,
			fenced:   "p",
		},
		{
			name:     "mariadb: two writable nodes, whatever their server ids",
			dialect:  "mariadb",
			split:    []probeResult{mariaWritable("0-1-100", 1), mariaWritable("0-2-5", 2), mariaReplica("0-1-100")},
			writers:  []string{"p", "r1"},
			stepDown: []probeResult{mariaReplica("0-2-6"), mariaWritable("0-2-6", 2), mariaReplica("0-2-6")},
			primary:  "r1",
			changes:  1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newRoleCluster(t, tt.dialect, 2)
			var fencings uint64
			if tt.fenced != "" {
				fencings = 1
			}

			// Counted once, however many rounds see it.
			playRounds(t, c.db, 3, tt.split)
			err := wantWriteRefused(t, c, ErrSplitBrain)
			if err != nil && !strings.Contains(err.Error(), strings.Join(tt.writers, ", ")) {
				t.Errorf("split-brain error %q does not name %v", err, tt.writers)
			}
			if got := primaryName(c.db); got != "p" {
				t.Errorf("Primary() is %s during the split brain, want p still", got)
			}
			wantFailoverStats(t, c.db, 0, fencings, 1)
			if s := c.db.Stats(); !strings.Contains(s.WritesRefused, strings.Join(tt.writers, ", ")) {
				t.Errorf("WritesRefused %q, want it to name %v", s.WritesRefused, tt.writers)
			}
			for _, w := range tt.writers {
				if nodeStats(c.db, w).Eligible {
					t.Errorf("writable %s eligible for reads", w)
				}
			}

			// One steps down: writes accepted again, on the one left.
			playRound(t, c.db, tt.stepDown)
			if got := primaryName(c.db); got != tt.primary {
				t.Errorf("Primary() is %s, want %s", got, tt.primary)
			}
			if tt.fenced != "" {
				wantNode(t, c.db, tt.fenced, RoleReplica, true)
			}
			wantWriteOn(t, c, tt.primary)
			wantFailoverStats(t, c.db, tt.changes, fencings, 1)
			if s := c.db.Stats(); s.WritesRefused != "" {
				t.Errorf("WritesRefused %q after the step-down", s.WritesRefused)
			}

			// A new split brain is a new episode.
			playRounds(t, c.db, 2, tt.split)
			wantWriteRefused(t, c, ErrSplitBrain)
			wantFailoverStats(t, c.db, tt.changes, fencings, 2)
		})
	}
}

func TestRolesPrimaryUnreachableNoOtherWriter(t *testing.T) {
	tests := []struct {
		name    string
		dialect string
		healthy []probeResult
		lost    []probeResult // the primary down, no other node writable
	}{
		{
			name:    "postgres",
			dialect: "postgres",
			healthy: []probeResult{pgWritable(100, 1), pgStandby(100, 1), pgStandby(100, 1)},
			lost:    []probeResult{unreachable(), pgStandby(100, 1), pgStandby(100, 1)},
		},
		{
			name:    "postgres, one replica's role unknown",
			dialect: "postgres",
			healthy: []probeResult{pgWritable(100, 1), pgStandby(100, 1), pgStandby(100, 1)},
			// r1 answers, but not the role query (say, no privilege).
			lost: []probeResult{unreachable(), {err: errors.New("permission denied")}, pgStandby(100, 1)},
		},
		{
			name:    "mariadb",
			dialect: "mariadb",
			healthy: []probeResult{mariaWritable("0-1-100", 1), mariaReplica("0-1-100"), mariaReplica("0-1-100")},
			lost:    []probeResult{unreachable(), mariaReplica("0-1-100"), mariaReplica("0-1-100")},
		},
		{
			name:    "generic",
			dialect: "generic",
			healthy: []probeResult{genericAlive(), genericAlive(), genericAlive()},
			lost:    []probeResult{unreachable(), genericAlive(), genericAlive()},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newRoleCluster(t, tt.dialect, 2)
			playRound(t, c.db, tt.healthy)
			wantWriteOn(t, c, "p")

			c.primary.SetDown(true)
			playRounds(t, c.db, c.db.cfg.ejectAfter, tt.lost)
			if p := nodeStats(c.db, "p"); p.Up {
				t.Fatalf("primary still up after %d failed rounds", c.db.cfg.ejectAfter)
			}
			wantWriteRefused(t, c, ErrNoPrimary)
			if got := primaryName(c.db); got != "p" {
				t.Errorf("Primary() is %s, want p still", got)
			}
			wantNode(t, c.db, "p", RolePrimary, false)
			wantFailoverStats(t, c.db, 0, 0, 0)
			wantEligible(t, c, "r1", "r2") // reads carry on

			c.primary.SetDown(false)
			playRounds(t, c.db, c.db.cfg.reinstateAfter, tt.healthy)
			wantWriteOn(t, c, "p")
			wantFailoverStats(t, c.db, 0, 0, 0)
		})
	}
}

func TestRolesGenericDialectNeverSwitches(t *testing.T) {
	// Results no generic probe (a ping) can give: were they given, the
	// configured roles still stand.
	tests := []struct {
		name  string
		round []probeResult
	}{
		{"a replica says it is the primary", []probeResult{pgStandby(200, 2), pgWritable(200, 2), pgStandby(200, 2)}},
		{"writable nodes on two timelines", []probeResult{pgWritable(100, 1), pgWritable(200, 2), pgStandby(200, 2)}},
		{"two writable nodes", []probeResult{pgWritable(200, 2), pgWritable(200, 2), pgStandby(200, 2)}},
		{"the primary unreachable, a replica writable", []probeResult{unreachable(), pgWritable(200, 2), pgStandby(200, 2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newRoleCluster(t, "generic", 2)
			for range 3 {
				c.db.discoverRoles(slices.Clone(tt.round))
			}
			if got := primaryName(c.db); got != "p" {
				t.Errorf("Primary() is %s, want p", got)
			}
			for _, n := range c.db.Stats().Nodes {
				if n.Fenced || (n.Name == "p") != (n.Role == RolePrimary) {
					t.Errorf("%s", roleSummary(n))
				}
			}
			wantFailoverStats(t, c.db, 0, 0, 0)
			wantWriteOn(t, c, "p")
			wantEligible(t, c, "r1", "r2")
		})
	}
}

// A node fenced for taking writes on an old timeline, which is later
// promoted onto a timeline higher than any seen, without a probe seeing it
// as a standby in between (rewound and promoted between two rounds).
func TestRolesFencedNodePromotedOnNewerTimeline(t *testing.T) {
	c := newRoleCluster(t, "postgres", 2)
	playRound(t, c.db, []probeResult{pgWritable(300, 2), pgWritable(100, 1), pgStandby(300, 2)})
	wantNode(t, c.db, "r1", RoleReplica, true)

	playRounds(t, c.db, 2, []probeResult{pgStandby(400, 3), pgWritable(400, 3), pgStandby(400, 3)})
	if got := primaryName(c.db); got != "r1" {
		t.Errorf("Primary() is %s, want r1", got)
	}
	wantNode(t, c.db, "r1", RolePrimary, false)
	wantWriteOn(t, c, "r1")
}

// Every kind of failed write is a sign of primary trouble, not only Exec:
// a writing Query refused as read-only, and a BeginTx or Conn that cannot
// reach the primary, start the fast probe cadence.
func TestFailedWritesOfEveryKindHurryDiscovery(t *testing.T) {
	c := newRoleCluster(t, "postgres", 1)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		setup func()
		write func() error
	}{
		{"writing Query refused as read-only", func() { c.primary.SetReadOnly(true) }, func() error {
			rows, err := c.db.QueryContext(ctx, "INSERT INTO t VALUES (1) RETURNING id")
			if err == nil {
				rows.Close()
			}
			return err
		}},
		{"BeginTx on an unreachable primary", func() { c.primary.SetDown(true) }, func() error {
			tx, err := c.db.BeginTx(ctx, nil)
			if err == nil {
				tx.Rollback()
			}
			return err
		}},
		{"Conn on an unreachable primary", func() { c.primary.SetDown(true) }, func() error {
			conn, err := c.db.Conn(ctx)
			if err == nil {
				err = conn.PingContext(ctx)
				conn.Close()
			}
			return err
		}},
	} {
		c.primary.SetReadOnly(false)
		c.primary.SetDown(false)
		c.db.roles.troubleAt.Store(0)
		c.db.health.fastUntil.Store(0)
		tc.setup()
		if err := tc.write(); err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if c.db.roles.troubleAt.Load() == 0 || c.db.health.fastUntil.Load() <= monotime() {
			t.Errorf("%s: no fast probing after the failed write", tc.name)
		}
	}
}

// Whatever the order in which primary changes and ejections rebuild the
// snapshot, the nodes whose calls count in the shared in-flight counter
// are those of the snapshot the load-aware policy (LeastInFlight) picks
// from: the tracking is set with the snapshot, under the same lock.
func TestTrackingFollowsTheSnapshot(t *testing.T) {
	c := newRoleCluster(t, "postgres", 3, WithPolicy(LeastInFlight()))
	db := c.db
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			old, next := db.nodeList()[0], db.nodeList()[3]
			if i%2 == 1 {
				old, next = next, old
			}
			next.probedPrimary.Store(true)
			old.probedPrimary.Store(false)
			db.switchPrimary(old, next)
		}
	})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			db.setHealthy(db.nodeList()[1+i%2], i%4 >= 2, errRefused)
		}
	})
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	snap := db.snap.Load()
	for _, r := range db.nodeList() {
		want := len(snap.replicas) >= 2 && snap.has(r)
		if got := r.trackGlobal.Load(); got != want {
			t.Errorf("%s: counted in the shared in-flight counter %v, want %v (eligible: %d)", r.name, got, want, len(snap.replicas))
		}
	}
}
