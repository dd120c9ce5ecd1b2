package rwsplit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// AutoFailover configures automatic promotion; see [WithAutoFailover].
type AutoFailover struct {
	// Admin holds one handle per node, in the order given to New or Open
	// (primary first), opened with credentials that may promote a node
	// and repoint replication: PostgreSQL a superuser (pg_promote, ALTER
	// SYSTEM, reading primary_conninfo); MariaDB a user with SUPER, or
	// READ_ONLY ADMIN, REPLICATION SLAVE ADMIN and SLAVE MONITOR. The
	// application's own user should have none of these. The DB closes the
	// handles in Close.
	Admin []*sql.DB

	// Addrs holds, in the same order, the host:port at which the other
	// nodes reach each node for replication. With Open it defaults to the
	// address in each node's DSN; with New it is required.
	Addrs []string

	// After is how long the primary must have failed every probe, with no
	// other node taking writes, before a replica is promoted. Default 10s:
	// long enough that a restart of the primary is not taken for its loss.
	After time.Duration

	// Timeout bounds one promotion, from choosing the replica to the last
	// replica repointed. Default 30s.
	Timeout time.Duration
}

// ioRestartTimeout bounds restarting a replica's I/O thread after a
// promotion that did not happen; so does what is left of the promotion's
// own Timeout, if less, but at least a second.
const ioRestartTimeout = 5 * time.Second

const (
	defaultFailoverAfter   = 10 * time.Second
	defaultFailoverTimeout = 30 * time.Second
)

// WithAutoFailover makes the DB promote a replica itself when the primary
// has been unreachable for a.After and no other node takes writes. It is
// off by default: most deployments should let Patroni (PostgreSQL) or
// orchestrator (MariaDB, MySQL) promote, and rwsplit follows whatever
// they decide. Use it only where this DB is the only writer process: two
// processes promoting on their own would each choose, and nothing but
// the replicas' state makes them choose alike.
//
// The promotion, on PostgreSQL and MariaDB only:
//   - A replica that still streams from the old primary vetoes it: the
//     primary is alive and only this process cannot reach it.
//   - The replica that has received the most is chosen
//     (pg_last_wal_receive_lsn, MariaDB Gtid_IO_Pos), ties broken by node
//     name, so that every attempt chooses alike.
//   - PostgreSQL: pg_promote() (the node replays what it received first);
//     then every other standby gets a primary_conninfo pointing at it
//     (ALTER SYSTEM, pg_reload_conf) and follows its new timeline without
//     a restart.
//   - MariaDB: the replica's I/O thread is stopped, MASTER_GTID_WAIT waits
//     until it has applied what it received, then STOP SLAVE, RESET SLAVE
//     ALL, SET GLOBAL read_only=0; the others run CHANGE MASTER TO the new
//     primary with MASTER_USE_GTID=slave_pos (they keep their replication
//     user and password). The replicas need log_bin and log_slave_updates.
//
// The probes then find the promoted node taking writes and move writes to
// it, as they would after any promotion. Writes acknowledged by the old
// primary but not yet received by any replica are lost: replication is
// asynchronous ([Stats] and BENCHMARKS.md show how many). The old primary
// is not rejoined: on PostgreSQL it is fenced by its older timeline, on
// MariaDB writes are refused with [ErrSplitBrain] while it takes writes;
// rejoin it as a replica (pg_rewind or a new base backup; CHANGE MASTER).
func WithAutoFailover(a AutoFailover) Option {
	a.Admin = append([]*sql.DB(nil), a.Admin...)
	a.Addrs = append([]string(nil), a.Addrs...)
	return optionFunc(func(c *config) {
		cp := a // each DB fills in its own defaults and addresses
		c.auto = &cp
	})
}

// validate checks the settings against the number of nodes; addrs are the
// nodes' addresses from their DSNs (nil with New).
func (a *AutoFailover) validate(nodes int, addrs []string) error {
	switch {
	case a.After < 0:
		return fmt.Errorf("WithAutoFailover: negative After %s", a.After)
	case a.Timeout < 0:
		return fmt.Errorf("WithAutoFailover: negative Timeout %s", a.Timeout)
	case len(a.Admin) != nodes:
		return fmt.Errorf("WithAutoFailover: %d admin handles for %d nodes", len(a.Admin), nodes)
	case len(a.Addrs) != 0 && len(a.Addrs) != nodes:
		return fmt.Errorf("WithAutoFailover: %d addresses for %d nodes", len(a.Addrs), nodes)
	}
	for i, h := range a.Admin {
		if h == nil {
			return fmt.Errorf("WithAutoFailover: admin handle of %s is nil", nodeOrdinal(i))
		}
		for j := 0; j < i; j++ {
			if a.Admin[j] == h {
				return fmt.Errorf("WithAutoFailover: admin handle of %s is the same as of %s", nodeOrdinal(i), nodeOrdinal(j))
			}
		}
	}
	if len(a.Addrs) == 0 {
		if addrs == nil {
			return errors.New("WithAutoFailover: Addrs is required with New (Open takes them from the DSNs)")
		}
		a.Addrs = addrs
	}
	for i, addr := range a.Addrs {
		host, port, err := net.SplitHostPort(addr)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil || host == "" || strings.ContainsAny(host, "'\\ \t\n") {
			return fmt.Errorf("WithAutoFailover: address of %s is not host:port", nodeOrdinal(i))
		}
	}
	if a.After == 0 {
		a.After = defaultFailoverAfter
	}
	if a.Timeout == 0 {
		a.Timeout = defaultFailoverTimeout
	}
	return nil
}

// autoFailover is the state of automatic promotion.
type autoFailover struct {
	cfg       AutoFailover
	downSince int64 // monotime the primary's probes began to fail; 0 none (loop only)
	lastTry   int64 // monotime of the last attempt (loop only)
	running   atomic.Bool
	wg        sync.WaitGroup

	promotions atomic.Uint64 // replicas promoted
	failures   atomic.Uint64 // attempts that promoted nothing
	lastErr    atomic.Value  // string: why the last attempt failed
}

// checkAutoFailover is the health loop's turn of automatic promotion,
// after the round's roles were applied.
func (db *DB) checkAutoFailover(results []probeResult) {
	a := db.auto
	now := monotime()
	cur := db.primary.Load()
	var curRes probeResult
	for i, r := range db.nodeList() {
		if r == cur {
			curRes = results[i]
		}
	}
	if curRes.err == nil {
		a.downSince = 0
		return
	}
	if a.downSince == 0 {
		a.downSince = now
		db.cfg.logger.Warn("rwsplit: primary unreachable; a replica will be promoted if it stays so",
			"node", cur.name, "after", a.cfg.After)
	}
	if now-a.downSince < int64(a.cfg.After) || now-a.lastTry < int64(a.cfg.After) ||
		a.running.Load() || db.writeBlock.Load() != nil {
		return
	}
	var candidates []*Replica
	for i, r := range db.nodeList() {
		if r != cur && r.admin != nil && results[i].err == nil && results[i].roleKnown && !results[i].primary && !r.fenced.Load() {
			candidates = append(candidates, r)
		}
	}
	a.lastTry = now
	if len(candidates) == 0 {
		db.autoFailed(cur, errors.New("no replica answers"), 0)
		return
	}
	a.running.Store(true)
	a.wg.Go(func() {
		defer a.running.Store(false)
		ctx, cancel := context.WithTimeout(db.health.ctx, a.cfg.Timeout)
		defer cancel()
		start := time.Now()
		if err := db.promote(ctx, cur, candidates, start); err != nil {
			if db.health.ctx.Err() == nil {
				db.autoFailed(cur, err, time.Since(start))
			}
			return
		}
		db.kick() // have the probes find the new primary now
	})
}

// autoFailed records a promotion attempt in place of old that promoted
// none, after d.
func (db *DB) autoFailed(old *Replica, err error, d time.Duration) {
	db.auto.failures.Add(1)
	db.auto.lastErr.Store(errorText(err))
	db.cfg.logger.Error("rwsplit: automatic promotion failed; retrying later", "err", errorText(err), "after", db.auto.cfg.After)
	db.emit(PromotionEvent{Old: old.name, Duration: d, Err: err})
}

// candidate is a replica considered for promotion.
type candidate struct {
	r         *Replica
	admin     *sql.DB
	addr      string
	received  uint64 // how much it received: an LSN, or the sum of GTID sequence numbers
	streaming bool   // still connected to the old primary
}

// promote chooses one of the candidates, promotes it
// and points the other replicas at it; the attempt began at start.
func (db *DB) promote(ctx context.Context, old *Replica, candidates []*Replica, start time.Time) error {
	d := db.positions.Load()
	pr := d.promoter
	if pr == nil {
		return fmt.Errorf("automatic promotion supports PostgreSQL and MariaDB, not %s", d.name)
	}
	var cands []candidate
	var lastErr error
	for _, r := range candidates {
		c := candidate{r: r, admin: r.admin, addr: r.addr}
		if err := pr.received(ctx, &c); err != nil {
			lastErr = fmt.Errorf("%s: %w", r.name, err)
			db.cfg.logger.Warn("rwsplit: replica not considered for promotion", "node", r.name, "err", errorText(err))
			continue
		}
		if c.streaming {
			return fmt.Errorf("%s still receives from %s: the primary is alive, only this process cannot reach it", r.name, old.name)
		}
		cands = append(cands, c)
	}
	if len(cands) == 0 {
		return fmt.Errorf("no replica could be examined: %w", lastErr)
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].received != cands[j].received {
			return cands[i].received > cands[j].received
		}
		return cands[i].r.name < cands[j].r.name
	})
	chosen := cands[0]
	db.cfg.logger.Warn("rwsplit: promoting a replica", "node", chosen.r.name, "old", old.name)
	if err := pr.promote(ctx, chosen.admin); err != nil {
		return fmt.Errorf("promoting %s: %w", chosen.r.name, err)
	}
	db.auto.promotions.Add(1)
	db.cfg.logger.Warn("rwsplit: replica promoted", "node", chosen.r.name)
	db.emit(PromotionEvent{Node: chosen.r.name, Old: old.name, Duration: time.Since(start)})
	for _, r := range db.nodeList() {
		if r == chosen.r || r == old || r.admin == nil {
			continue
		}
		if err := pr.follow(ctx, r.admin, chosen.addr); err != nil {
			db.cfg.logger.Error("rwsplit: replica not repointed at the new primary; repoint it by hand", "node", r.name, "primary", chosen.r.name, "err", errorText(err))
		} else {
			db.cfg.logger.Info("rwsplit: replica follows the new primary", "node", r.name, "primary", chosen.r.name)
		}
	}
	return nil
}

// pgReceived reads how much WAL a standby has received (or replayed,
// when its receiver has not run since it started) and whether it still
// streams from a primary.
func pgReceived(ctx context.Context, c *candidate) error {
	var lsn sql.NullString
	var streaming bool
	err := c.admin.QueryRowContext(ctx, `SELECT GREATEST(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text,
	COALESCE((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false)`).Scan(&lsn, &streaming)
	if err != nil {
		return err
	}
	v, ok := parseLSN(lsn.String)
	if !lsn.Valid || !ok {
		return errors.New("not a standby")
	}
	c.received, c.streaming = v, streaming
	return nil
}

// pgPromote promotes a standby and waits until it takes writes.
func pgPromote(ctx context.Context, admin *sql.DB) error {
	wait := 60
	if dl, ok := ctx.Deadline(); ok {
		wait = max(1, int(time.Until(dl)/time.Second))
	}
	var done bool
	if err := admin.QueryRowContext(ctx, "SELECT pg_promote(true, "+strconv.Itoa(wait)+")").Scan(&done); err != nil {
		return err
	}
	if !done {
		return fmt.Errorf("not out of recovery after %ds", wait)
	}
	return nil
}

// pgFollow points a standby at the primary at addr: its primary_conninfo
// keeps every setting (user, password, application_name, TLS) but the
// host and port.
func pgFollow(ctx context.Context, admin *sql.DB, addr string) error {
	var conninfo string
	if err := admin.QueryRowContext(ctx, "SHOW primary_conninfo").Scan(&conninfo); err != nil {
		return err
	}
	next, err := repointConninfo(conninfo, addr)
	if err != nil {
		return err
	}
	if _, err := admin.ExecContext(ctx, "ALTER SYSTEM SET primary_conninfo = "+pgLiteral(next)); err != nil {
		return err
	}
	_, err = admin.ExecContext(ctx, "SELECT pg_reload_conf()")
	return err
}

// repointConninfo returns conninfo (key=value or URI form) with its host
// and port replaced by addr's.
func repointConninfo(conninfo, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(conninfo)
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", errors.New("primary_conninfo is not a valid URI")
		}
		u.Host = addr
		q := u.Query()
		q.Del("host")
		q.Del("hostaddr")
		q.Del("port")
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	kv := keyValues(s)
	if kv == nil && s != "" {
		return "", errors.New("primary_conninfo is neither key=value nor a URI")
	}
	if kv == nil {
		kv = map[string]string{}
	}
	delete(kv, "hostaddr")
	kv["host"], kv["port"] = host, port
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteString("='")
		v := strings.ReplaceAll(kv[k], `\`, `\\`)
		b.WriteString(strings.ReplaceAll(v, "'", `\'`))
		b.WriteByte('\'')
	}
	return b.String(), nil
}

// pgLiteral quotes s as a PostgreSQL string literal (with
// standard_conforming_strings, the default since 9.1).
func pgLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// mariaReceived reads how much a MariaDB replica has received from its
// primary (Gtid_IO_Pos, or gtid_slave_pos when it has received nothing
// since it started) and whether its I/O thread is still connected.
func mariaReceived(ctx context.Context, c *candidate) error {
	st, err := showReplicaStatus(ctx, c.admin)
	if err != nil {
		return err
	}
	if st == nil {
		return errors.New("not a replica")
	}
	pos := st["Gtid_IO_Pos"]
	if pos == "" {
		if err := c.admin.QueryRowContext(ctx, "SELECT @@gtid_slave_pos").Scan(&pos); err != nil {
			return err
		}
	}
	gtids, ok := parseMariaGTIDList(pos)
	if !ok {
		return errors.New("unreadable received position")
	}
	c.received = 0
	for _, g := range gtids {
		c.received += g.seq
	}
	c.streaming = st["Slave_IO_Running"] == "Yes"
	return nil
}

// mariaPromote has a MariaDB replica apply what it received, stop
// replicating and take writes.
func mariaPromote(ctx context.Context, admin *sql.DB) error {
	if _, err := admin.ExecContext(ctx, "STOP SLAVE IO_THREAD"); err != nil {
		return err
	}
	st, err := showReplicaStatus(ctx, admin)
	if err != nil {
		return err
	}
	if pos := st["Gtid_IO_Pos"]; pos != "" {
		wait := 60.0
		if dl, ok := ctx.Deadline(); ok {
			wait = max(0.1, time.Until(dl).Seconds()-1)
		}
		var res int
		q := fmt.Sprintf("SELECT MASTER_GTID_WAIT(%s, %.1f)", mariaLiteral(pos), wait)
		if err := admin.QueryRowContext(ctx, q).Scan(&res); err != nil {
			return err
		}
		if res != 0 {
			// Not applied in time: take nothing away from it, replicating
			// goes on.
			// Restarting replication must not wait on a node that hangs,
			// nor on Close: detached from ctx's cancellation, it keeps a
			// bound of its own.
			bound := ioRestartTimeout
			if dl, ok := ctx.Deadline(); ok {
				bound = min(bound, max(time.Until(dl), time.Second))
			}
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bound)
			admin.ExecContext(rctx, "START SLAVE IO_THREAD")
			cancel()
			return fmt.Errorf("the received transactions %s were not applied within %.1fs", pos, wait)
		}
	}
	for _, q := range []string{"STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only=0"} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// mariaFollow points a MariaDB replica at the primary at addr, by GTID;
// its replication user and password stay as they were.
func mariaFollow(ctx context.Context, admin *sql.DB, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	for _, q := range []string{
		"STOP SLAVE",
		fmt.Sprintf("CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USE_GTID=slave_pos", mariaLiteral(host), port),
		"START SLAVE",
	} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// mariaLiteral quotes s as a MariaDB string literal.
func mariaLiteral(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", `\'`) + "'"
}
