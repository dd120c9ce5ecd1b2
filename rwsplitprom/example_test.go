package rwsplitprom_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplitprom"
)

// A service's setup: one Collector, an observer and a Track per DB, and
// the registry served on /metrics. (It needs servers, so it is only
// compiled.)
func Example() {
	c, err := rwsplitprom.New()
	if err != nil {
		log.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)

	db, err := rwsplit.Open("pgx", "postgres://app:secret@db0:5432/app",
		[]string{"postgres://app:secret@db1:5432/app", "postgres://app:secret@db2:5432/app"},
		rwsplit.WithObserver(c.Observer("orders")))
	if err != nil {
		log.Fatal(err)
	}
	c.Track("orders", db) // series labelled db="orders", node="db0:5432", ...
	defer func() {
		c.Untrack("orders")
		db.Close()
	}()

	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	log.Fatal(http.ListenAndServe(":9090", nil))
}

// The calls of a DB over in-memory nodes (this package's test driver),
// as a scrape sees them.
func ExampleCollector_Observer() {
	c, err := rwsplitprom.New()
	if err != nil {
		log.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	primary, replica := newMemServer("primary"), newMemServer("replica1")
	db, err := rwsplit.New(primary.DB(), []*sql.DB{replica.DB()}, rwsplit.WithObserver(c.Observer("orders")))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	c.Track("orders", db)

	ctx := context.Background()
	var name string
	db.QueryRowContext(ctx, "SELECT name FROM users WHERE id = 1").Scan(&name)
	db.QueryRowContext(ctx, "SELECT name FROM users WHERE id = 2").Scan(&name)
	db.ExecContext(ctx, "UPDATE users SET name = 'ada' WHERE id = 1")
	db.QueryRowContext(rwsplit.WithPrimary(ctx), "SELECT name FROM users WHERE id = 1").Scan(&name)

	fams, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "rwsplit_calls_total" && f.GetName() != "rwsplit_node_up" {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			fmt.Printf("%s{%s} %v\n", f.GetName(), strings.Join(labels, ","), v)
		}
	}
	// Output:
	// rwsplit_calls_total{db=orders,node=primary,op=exec,outcome=ok,reason=rule,role=primary} 1
	// rwsplit_calls_total{db=orders,node=primary,op=query,outcome=ok,reason=forced,role=primary} 1
	// rwsplit_calls_total{db=orders,node=replica1,op=query,outcome=ok,reason=policy,role=replica} 2
	// rwsplit_node_up{db=orders,node=primary} 1
	// rwsplit_node_up{db=orders,node=replica1} 1
}
