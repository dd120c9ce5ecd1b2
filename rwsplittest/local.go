package rwsplittest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// StartPostgres starts a PostgreSQL primary and its streaming replicas
// from the server binaries installed on the machine (initdb, postgres,
// pg_basebackup: Debian's postgresql package, say), as processes on free
// 127.0.0.1 ports in a temporary directory. When the test runs as root,
// the servers run as the postgres user.
func StartPostgres(ctx context.Context, opts ...Option) (*Cluster, error) {
	return startLocal(ctx, Postgres, opts)
}

// StartMariaDB starts a MariaDB primary and its GTID replicas from the
// server binaries installed on the machine (mariadbd, mariadb-install-db),
// as processes on free 127.0.0.1 ports in a temporary directory.
func StartMariaDB(ctx context.Context, opts ...Option) (*Cluster, error) {
	return startLocal(ctx, MariaDB, opts)
}

func startLocal(ctx context.Context, kind Kind, opts []Option) (*Cluster, error) {
	cfg := newConfig(opts)
	if cfg.replicas < 1 {
		return nil, errors.New("rwsplittest: the local backend needs at least one replica")
	}
	o := LocalOptions{Replicas: cfg.replicas, Logf: cfg.logf, Settings: cfg.settings}
	if cfg.delay > 0 {
		for range cfg.replicas {
			o.ApplyDelay = append(o.ApplyDelay, cfg.delay)
		}
	}
	tc, err := StartLocal(ctx, kind, o)
	if err != nil {
		return nil, err
	}
	return &Cluster{be: &local{c: tc, former: map[int]bool{}}, n: cfg.replicas}, nil
}

// local is the backend of local binaries, over LocalCluster.
type local struct {
	c       *LocalCluster
	mu      sync.Mutex
	primary int          // the node that is primary now (guarded by mu)
	former  map[int]bool // nodes that were primary once and are not now (guarded by mu)
}

func (l *local) nodeOf(i int) *LocalNode { return l.c.Nodes()[i] }

func (l *local) driverName() string                    { return l.c.DriverName() }
func (l *local) dsn(i int) string                      { return l.nodeOf(i).DSN() }
func (l *local) addr(i int) string                     { return l.nodeOf(i).Addr() }
func (l *local) crash(_ context.Context, i int) error  { return l.nodeOf(i).Crash() }
func (l *local) freeze(_ context.Context, i int) error { return l.nodeOf(i).Freeze() }
func (l *local) thaw(_ context.Context, i int) error   { return l.nodeOf(i).Thaw() }
func (l *local) close() error                          { return l.c.Close() }
func (l *local) logs(_ context.Context, i int) (string, error) {
	b, err := os.ReadFile(l.nodeOf(i).LogPath())
	return string(b), err
}

// restart starts node i again; a node that was the primary before a
// promotion comes back as a fresh replica of the current one (PostgreSQL;
// on MariaDB it follows the current primary).
func (l *local) restart(ctx context.Context, i int) error {
	l.mu.Lock()
	primary, lost := l.primary, l.former[i]
	l.mu.Unlock()
	n := l.nodeOf(i)
	if !lost {
		return n.Start(ctx)
	}
	if err := l.rejoin(ctx, n, l.nodeOf(primary)); err != nil {
		return fmt.Errorf("rwsplittest: node %d: %w", i, err)
	}
	l.mu.Lock()
	delete(l.former, i)
	l.mu.Unlock()
	return nil
}

// rejoin brings an old primary back as a replica of primary: a fresh
// clone on PostgreSQL, read-only and following it on MariaDB.
func (l *local) rejoin(ctx context.Context, n, primary *LocalNode) error {
	if l.c.Kind() == Postgres {
		return l.c.Reclone(ctx, n, primary)
	}
	if err := n.Start(ctx); err != nil {
		return err
	}
	if _, err := n.Exec(ctx, "SET GLOBAL read_only = 1"); err != nil {
		return err
	}
	return l.c.Follow(ctx, n, primary)
}

// promote fences a running old primary (stops it), promotes node i and
// repoints the other running replicas to it.
func (l *local) promote(ctx context.Context, i int) error {
	l.mu.Lock()
	old := l.primary
	l.mu.Unlock()
	if i == old {
		return nil
	}
	if o := l.nodeOf(old); o.Running() {
		if o.Frozen() {
			if err := o.Thaw(); err != nil {
				return err
			}
		}
		if err := o.Stop(); err != nil {
			return fmt.Errorf("rwsplittest: fencing node %d: %w", old, err)
		}
	}
	n := l.nodeOf(i)
	if err := n.Promote(ctx); err != nil {
		return err
	}
	l.mu.Lock()
	l.primary = i
	l.former[old] = true
	delete(l.former, i)
	l.mu.Unlock()
	var errs []string
	for j, r := range l.c.Nodes() {
		if j == i || j == old || !r.Running() {
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, followWait)
		err := l.c.Follow(fctx, r, n)
		if err == nil && l.c.Kind() == Postgres {
			err = onTimeline(fctx, r, n)
		}
		cancel()
		if err != nil && l.c.Kind() == Postgres {
			// A standby that received more than the new primary has cannot
			// follow its timeline: it is cloned again.
			l.c.log("node %d cannot follow node %d (%v); cloning it again", j, i, err)
			err = l.c.Reclone(ctx, r, n)
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("node %d: %v", j, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("rwsplittest: repointing replicas: %s", strings.Join(errs, "; "))
	}
	return nil
}

// onTimeline waits until standby r streams on primary p's timeline: one
// that cannot follow it may still stream the old timeline's history.
func onTimeline(ctx context.Context, r, p *LocalNode) error {
	tli, err := p.Exec(ctx, "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")
	if err != nil {
		return err
	}
	for {
		got, err := r.Exec(ctx, "SELECT received_tli FROM pg_stat_wal_receiver WHERE status = 'streaming'")
		if err == nil && strings.TrimSpace(got) == strings.TrimSpace(tli) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not streaming on timeline %s (receiving %q): %w", strings.TrimSpace(tli), got, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
