package rwsplitprom

import (
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rwsplit/rwsplit"
)

// A Collector is a prometheus.Collector over one or more [rwsplit.DB]s,
// each named by the value of its "db" label. It learns about calls and
// events through the [rwsplit.Observer] that [Collector.Observer] returns,
// and about nodes through [rwsplit.DB.Stats] at every scrape of the DBs
// given to [Collector.Track]. Register it once: reg.MustRegister(c).
//
// A Collector is safe for concurrent use.
type Collector struct {
	m metrics

	mu        sync.Mutex
	observers map[string]*dbObserver // by db name; guarded by mu
	tracked   map[string]*rwsplit.DB // by db name; guarded by mu
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a Collector with no DB yet. With no options it names its
// metrics rwsplit_* and its call histogram has classic buckets from
// 0.5 ms to 10 s (see [WithCallBuckets]). It returns an error for an
// invalid option (a namespace that is not a metric name, buckets out of
// order, a native histogram factor not over 1), and never panics.
func New(opts ...Option) (*Collector, error) {
	cfg := config{namespace: "rwsplit", callBuckets: defaultCallBuckets}
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &Collector{
		m:         newMetrics(&cfg),
		observers: make(map[string]*dbObserver),
		tracked:   make(map[string]*rwsplit.DB),
	}, nil
}

// Observer returns the observer that counts the calls and events of the
// DB named db: give it to [rwsplit.WithObserver] when opening that DB.
// Asked again for the same name, it returns the same observer, so the
// series of a DB reopened under its old name go on counting. Its series
// are kept for the Collector's life; [Collector.Untrack] does not remove
// them. Any string is a valid name, the empty one included.
func (c *Collector) Observer(db string) rwsplit.Observer {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o := c.observers[db]; o != nil {
		return o
	}
	o := newDBObserver(&c.m, db)
	c.observers[db] = o
	return o
}

// Track makes every scrape read d.Stats() and report its nodes' state,
// role, lag, in-flight calls, ejections, retries, hedges and connection
// pool, and the DB's fallbacks, failovers and sessions, under the label
// db="<db>". Tracking a name again replaces the DB it tracks; a nil d is
// [Collector.Untrack]. The Collector never closes d.
func (c *Collector) Track(db string, d *rwsplit.DB) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d == nil {
		delete(c.tracked, db)
		return
	}
	c.tracked[db] = d
}

// Untrack stops reporting the Stats-based series of the DB named db (call
// it when closing the DB); the series counted by its observer stay.
func (c *Collector) Untrack(db string) {
	c.Track(db, nil)
}

// Describe sends the descriptors of every metric the Collector may
// report.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.m.describe(ch)
}

// Collect sends the series counted by the observers, and those of a fresh
// Stats snapshot of every tracked DB.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.m.collectObserved(ch)
	type named struct {
		name string
		db   *rwsplit.DB
	}
	c.mu.Lock()
	dbs := make([]named, 0, len(c.tracked))
	for name, d := range c.tracked {
		dbs = append(dbs, named{name, d})
	}
	c.mu.Unlock()
	sort.Slice(dbs, func(i, j int) bool { return dbs[i].name < dbs[j].name })
	for _, d := range dbs {
		c.m.collectStats(ch, d.name, d.db.Stats())
	}
}
