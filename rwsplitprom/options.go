package rwsplitprom

import (
	"errors"
	"fmt"
	"regexp"
)

// An Option configures a [Collector]; give it to [New].
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config is what the options set; New checks it.
type config struct {
	namespace     string
	callBuckets   []float64
	nativeFactor  float64
	nativeFactorG bool // WithNativeHistograms was given
}

// defaultCallBuckets are the buckets of rwsplit_call_duration_seconds by
// default: 0.5 ms to 10 s, for calls that mostly take a millisecond or a
// few.
var defaultCallBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Buckets of the event histograms (not configurable): a write outage is
// a failover, from a fraction of a second to minutes; a session wait is
// bounded by rwsplit.WithSessionWait, milliseconds; a promotion takes
// seconds.
var (
	outageBuckets    = []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	sessionBuckets   = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
	promotionBuckets = []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60}
)

// WithNamespace sets the prefix of every metric name, "rwsplit" by
// default ("rwsplit_calls_total"); the empty string keeps the default.
// It must be a valid metric name: letters, digits and underscores, not
// starting with a digit. Use a different namespace to register two
// Collectors in one registry; labels common to every series are better
// added with prometheus.WrapRegistererWith.
func WithNamespace(ns string) Option {
	return optionFunc(func(c *config) {
		if ns != "" {
			c.namespace = ns
		}
	})
}

// WithCallBuckets sets the upper bounds of the buckets of
// rwsplit_call_duration_seconds, in seconds, in increasing order. The
// default is .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
// 2.5, 5 and 10 (0.5 ms to 10 s); none keeps it.
func WithCallBuckets(bounds ...float64) Option {
	return optionFunc(func(c *config) {
		if len(bounds) > 0 {
			c.callBuckets = append([]float64(nil), bounds...)
		}
	})
}

// WithNativeHistograms makes every histogram a native (sparse) histogram
// as well as a classic one, with the given bucket growth factor (1.1 is a
// common choice; it must be more than 1): a Prometheus server that
// scrapes native histograms gets their finer resolution, others the
// classic buckets. The default is classic buckets only.
func WithNativeHistograms(factor float64) Option {
	return optionFunc(func(c *config) { c.nativeFactor, c.nativeFactorG = factor, true })
}

var metricNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// check reports what is wrong with c, if anything.
func (c *config) check() error {
	var errs []error
	if !metricNameRE.MatchString(c.namespace) {
		errs = append(errs, fmt.Errorf("rwsplitprom: namespace %q is not a valid metric name prefix", c.namespace))
	}
	for i := 1; i < len(c.callBuckets); i++ {
		if !(c.callBuckets[i] > c.callBuckets[i-1]) {
			errs = append(errs, fmt.Errorf("rwsplitprom: call buckets are not in increasing order (%v after %v)", c.callBuckets[i], c.callBuckets[i-1]))
			break
		}
	}
	if c.nativeFactorG && !(c.nativeFactor > 1) {
		errs = append(errs, fmt.Errorf("rwsplitprom: native histogram factor %v is not more than 1", c.nativeFactor))
	}
	return errors.Join(errs...)
}
