package rwsplitprom_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/rwsplit/rwsplit/rwsplitprom"
)

// scrape is one gathering of a registry.
type scrape map[string]*dto.MetricFamily

// newRegistry returns a pedantic registry (it checks every metric
// against its description) with a new Collector registered.
func newRegistry(t testing.TB, opts ...rwsplitprom.Option) (*rwsplitprom.Collector, *prometheus.Registry) {
	t.Helper()
	c, err := rwsplitprom.New(opts...)
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	return c, reg
}

// gather scrapes g, failing t on an error (an inconsistent metric, a
// duplicate series, ...).
func gather(t testing.TB, g prometheus.Gatherer) scrape {
	t.Helper()
	fams, err := g.Gather()
	require.NoError(t, err)
	s := scrape{}
	for _, f := range fams {
		s[f.GetName()] = f
	}
	return s
}

// matches reports whether m has every label of want (an empty want value
// matches an absent or empty label).
func matches(m *dto.Metric, want map[string]string) bool {
	for name, v := range want {
		got := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				got = l.GetValue()
			}
		}
		if got != v {
			return false
		}
	}
	return true
}

// value returns the value of a counter or gauge series, or a histogram's
// sample count.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// sum adds up the series of family name that have the labels of want.
func (s scrape) sum(name string, want map[string]string) float64 {
	var total float64
	if f := s[name]; f != nil {
		for _, m := range f.GetMetric() {
			if matches(m, want) {
				total += value(m)
			}
		}
	}
	return total
}

// count returns how many series of family name have the labels of want.
func (s scrape) count(name string, want map[string]string) int {
	n := 0
	if f := s[name]; f != nil {
		for _, m := range f.GetMetric() {
			if matches(m, want) {
				n++
			}
		}
	}
	return n
}

// one returns the value of the one series of family name with the
// labels of want, failing t when there is none or several.
func (s scrape) one(t testing.TB, name string, want map[string]string) float64 {
	t.Helper()
	require.Equal(t, 1, s.count(name, want), "series %s%v", name, want)
	return s.sum(name, want)
}

// labelValues returns every label value of every series, as
// "family{label}=value".
func (s scrape) labelValues() map[string]string {
	out := map[string]string{}
	for name, f := range s {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				out[name+"{"+l.GetName()+"}="+l.GetValue()] = l.GetValue()
			}
		}
	}
	return out
}

// values returns every value of label in any series.
func (s scrape) values(label string) map[string]bool {
	out := map[string]bool{}
	for _, f := range s {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					out[l.GetValue()] = true
				}
			}
		}
	}
	return out
}

// requireLint fails t when promlint finds a problem with the metrics of
// c, as scraped now.
func requireLint(t testing.TB, c prometheus.Collector) {
	t.Helper()
	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	var msgs []string
	for _, p := range problems {
		msgs = append(msgs, p.Metric+": "+p.Text)
	}
	require.Empty(t, problems, "lint:\n%s", strings.Join(msgs, "\n"))
}

// l builds a label set from name, value pairs.
func l(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}
