package rwsplitotel_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplitotel"
)

// BenchmarkObserveCall measures what the Observer adds to a call of a kind
// seen before: with the SDK and a recording span, with the SDK and no
// span, and on a no-op meter provider.
func BenchmarkObserveCall(b *testing.B) {
	nodes := []string{"10.0.0.2:5432", "10.0.0.3:5432", "10.0.0.4:5432"}
	run := func(b *testing.B, obs *rwsplitotel.Observer, ctx context.Context) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				obs.ObserveCall(rwsplit.CallEvent{Context: ctx, Op: rwsplit.OpQuery, Node: nodes[i%len(nodes)],
					Role: rwsplit.RoleReplica, Reason: rwsplit.ReasonPolicy, Attempt: 1, Latency: time.Millisecond})
				i++
			}
		})
	}
	sdk := func(b *testing.B) *rwsplitotel.Observer {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() { mp.Shutdown(context.Background()) })
		obs, err := rwsplitotel.New(rwsplitotel.WithMeterProvider(mp), rwsplitotel.WithSystem("postgresql"))
		if err != nil {
			b.Fatal(err)
		}
		return obs
	}
	b.Run("sdk/span", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider()
		b.Cleanup(func() { tp.Shutdown(context.Background()) })
		ctx, span := tp.Tracer("bench").Start(context.Background(), "request")
		defer span.End()
		run(b, sdk(b), ctx)
	})
	b.Run("sdk/nospan", func(b *testing.B) {
		run(b, sdk(b), context.Background())
	})
	b.Run("noop", func(b *testing.B) {
		obs, err := rwsplitotel.New(rwsplitotel.WithMeterProvider(noop.NewMeterProvider()))
		if err != nil {
			b.Fatal(err)
		}
		run(b, obs, context.Background())
	})
}
