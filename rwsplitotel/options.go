package rwsplitotel

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// An Option configures an [Observer]; see [New].
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	provider  metric.MeterProvider
	system    string
	namespace string
	attrs     []attribute.KeyValue
}

// WithMeterProvider sets where the instruments are created. The default,
// and what nil means, is the global provider (otel.GetMeterProvider) as it
// is when [New] runs; the global provider forwards to one set later.
func WithMeterProvider(p metric.MeterProvider) Option {
	return optionFunc(func(c *config) { c.provider = p })
}

// WithSystem sets db.system.name on every measurement: "postgresql",
// "mariadb", "mysql", or any value of the semantic conventions. The
// default, and what "" means, is the dialect of the first DB given to
// [Observer.Track] ("other_sql" for a generic one), and no db.system.name
// on calls made before it. With the MySQL driver the dialect says "mysql"
// until the first health probe has told MySQL from MariaDB; set
// WithSystem("mariadb") to label those first calls right too.
func WithSystem(name string) Option {
	return optionFunc(func(c *config) { c.system = name })
}

// WithNamespace sets db.namespace, the database's name, on every
// measurement. The default, and what "" means, is none.
func WithNamespace(name string) Option {
	return optionFunc(func(c *config) { c.namespace = name })
}

// WithAttributes adds attrs to every measurement, e.g. the name of the
// DB in a process that has several (attribute.String("db.handle",
// "orders")). The default is none; given more than once, they add up.
// Keep their values few: every series is repeated for each.
func WithAttributes(attrs ...attribute.KeyValue) Option {
	return optionFunc(func(c *config) { c.attrs = append(c.attrs, attrs...) })
}
