package rwsplitotel_test

import (
	"context"
	"log"

	"go.opentelemetry.io/otel"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplitotel"
)

// An Observer on the global meter provider (set up elsewhere, with an
// OTLP or Prometheus exporter), given to the DB and tracking its nodes.
// A call made under a span adds the serving node to that span.
func Example() {
	obs, err := rwsplitotel.New(rwsplitotel.WithMeterProvider(otel.GetMeterProvider()))
	if err != nil {
		log.Fatal(err)
	}
	db, err := rwsplit.Open("pgx",
		"postgres://app:secret@db1:5432/app",
		[]string{"postgres://app:secret@db2:5432/app", "postgres://app:secret@db3:5432/app"},
		rwsplit.WithObserver(obs))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	reg, err := obs.Track(db)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister()

	ctx, span := otel.Tracer("example").Start(context.Background(), "list orders")
	defer span.End()
	var n int
	// On a replica: the span gets rwsplit.node.name "db2:5432" (or
	// db3), rwsplit.route.reason "policy", server.address and
	// server.port; db.client.operation.duration gets the attempt.
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
		log.Print(err)
	}
}
