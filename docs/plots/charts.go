package main

import (
	"fmt"
	"image/color"
	"math"
	"regexp"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// machine describes where f was measured: "GOMAXPROCS 2, AMD EPYC".
func machine(f *benchFile) string {
	s := fmt.Sprintf("GOMAXPROCS %d", f.procs())
	if cpu := f.Config["cpu"]; cpu != "" {
		s += ", " + cpu
	}
	return s
}

// runsText is "1 run" or "median of 15 runs" for the benchmark name.
func runsText(f *benchFile, name string) string {
	if n := f.runs(name); n != 1 {
		return fmt.Sprintf("median of %d runs", n)
	}
	return "1 run"
}

// quartileBars are the 1st to 3rd quartile of each of a series of
// samples, at xs.
type quartileBars struct {
	xs      []float64
	samples [][]float64
}

func (q quartileBars) Len() int { return len(q.xs) }
func (q quartileBars) XY(i int) (float64, float64) {
	return q.xs[i], median(q.samples[i])
}
func (q quartileBars) YError(i int) (float64, float64) {
	m := median(q.samples[i])
	return m - quantile(q.samples[i], .25), quantile(q.samples[i], .75) - m
}

// overheadChart: BenchmarkOverhead's parallel reads over 1, 2 and 4
// replicas, rwsplit's and a plain round robin's time per read against
// raw *sql.DB's.
func overheadChart(f *benchFile) (*figure, error) {
	const base = "BenchmarkOverhead/Query/parallel"
	groups := []struct {
		label, name string
	}{{"1 replica", base}, {"2 replicas", base + "/replicas=2"}, {"4 replicas", base + "/replicas=4"}}
	var rw, rr [][]float64
	var rwX, rrX []float64
	const shift = 0.19
	for i, g := range groups {
		s := f.ratios(g.name, "rwsplit-ns/op", "raw-ns/op")
		if len(s) == 0 {
			return nil, fmt.Errorf("no %s with rwsplit-ns/op and raw-ns/op", g.name)
		}
		rw, rwX = append(rw, s), append(rwX, float64(i)-shift)
		if s := f.ratios(g.name, "roundrobin-ns/op", "raw-ns/op"); len(s) > 0 {
			rr, rrX = append(rr, s), append(rrX, float64(i)+shift)
		}
	}

	fig := &figure{
		title: "rwsplit's routing overhead against raw *sql.DB, by replica count\n" +
			"BenchmarkOverhead: parallel reads on the in-memory driver; bars: " + runsText(f, base) + ", whiskers: 1st to 3rd quartile",
		note: "raw: the first replica's *sql.DB alone. Round robin: an atomic counter over the replicas' handles (bench_test.go); over one replica it would be raw. " +
			"The sides take turns every millisecond in one loop, so they share the machine's load. " + machine(f) + ". Made by make benchdata, then make plots.",
		w: 7.5 * vg.Inch, h: 4.6 * vg.Inch,
	}
	p := newPlot("", "", "time per read ÷ raw *sql.DB's")
	p.Add(grid(false))
	width := vg.Points(40)
	top := 1.0
	add := func(xs []float64, samples [][]float64, colour color.Color, name string) error {
		var medians plotter.Values
		for _, s := range samples {
			medians = append(medians, median(s))
		}
		bars, err := plotter.NewBarChart(medians, width)
		if err != nil {
			return err
		}
		bars.XMin = xs[0]
		bars.Color = colour
		bars.LineStyle.Width = 0
		q := quartileBars{xs, samples}
		errs, err := plotter.NewYErrorBars(q)
		if err != nil {
			return err
		}
		errs.LineStyle = lineStyle(plotBlack, 1, false)
		errs.CapWidth = vg.Points(8)
		var ss []string
		for i := range xs {
			_, hi := q.YError(i)
			ss = append(ss, fmt.Sprintf("%.2f×", medians[i]))
			top = math.Max(top, medians[i]+hi)
		}
		// The figures inside the bars, at their foot, clear of the whiskers.
		l, err := labels(xs, make([]float64, len(xs)), ss, 10, 6)
		if err != nil {
			return err
		}
		for i := range l.TextStyle {
			l.TextStyle[i].Color = plotWhite
		}
		p.Add(bars, errs, l)
		fig.add(name, bars)
		return nil
	}
	if err := add(rwX, rw, plotBlue, "rwsplit (default options)"); err != nil {
		return nil, err
	}
	if len(rr) > 0 {
		// The round robin's bars start at its first group with figures.
		if err := add(rrX, rr, plotOrange, "a plain round robin over the replicas' handles"); err != nil {
			return nil, err
		}
	}
	raw := plotter.NewFunction(func(float64) float64 { return 1 })
	raw.LineStyle = lineStyle(plotBlack, 1.2, true)
	p.Add(raw)
	fig.add("raw *sql.DB = 1.00×", raw)

	var names []string
	for _, g := range groups {
		names = append(names, g.label)
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(groups))-0.4
	p.Y.Min, p.Y.Max = 0, top*1.08
	p.Y.Tick.Marker = suffixTicks("×")
	fig.plots = []*plot.Plot{p}
	return fig, nil
}

var tailWorkload = regexp.MustCompile(`^(\d+ reads by \d+ goroutines) per row`)

// tailChart: BenchmarkTailLatency's percentiles by policy, without and
// with the slow replica.
func tailChart(f *benchFile) (*figure, error) {
	const prefix = "BenchmarkTailLatency/"
	type row struct{ policy, cond, name string }
	var rows []row
	var policies []string
	for _, n := range f.names() {
		parts := strings.Split(strings.TrimPrefix(n, prefix), "/")
		if !strings.HasPrefix(n, prefix) || len(parts) != 2 {
			continue
		}
		rows = append(rows, row{parts[0], parts[1], n})
		if !slices.Contains(policies, parts[0]) {
			policies = append(policies, parts[0])
		}
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("no %s results", prefix)
	}
	pcts := []struct{ unit, label string }{{"p50-ms", "p50"}, {"p90-ms", "p90"}, {"p99-ms", "p99"}, {"p999-ms", "p99.9"}}
	conds := []struct{ cond, title string }{{"nofault", "every replica healthy"}, {"slow50ms", "replica 1 answers 50 ms late"}}
	workload := f.other(tailWorkload)
	if workload == "" {
		workload = "the reads"
	}
	fig := &figure{
		title: "Read latency by policy, with and without one slow replica\n" +
			fmt.Sprintf("BenchmarkTailLatency: PostgreSQL, 3 replicas behind Toxiproxy, %s per run; each point: %s", workload, runsText(f, rows[0].name)),
		note: "A fresh handle per run, every replica's pool primed and warmed up, health interval 200 ms. " +
			machine(f) + ". Made by make benchdata, then make plots.",
		w: 9 * vg.Inch, h: 4.8 * vg.Inch,
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, cd := range conds {
		p := newPlot(cd.title, "percentile of read latency", "read latency (log scale)")
		p.Add(grid(true))
		for i, pol := range policies {
			var xys plotter.XYs
			name := prefix + pol + "/" + cd.cond
			for j, pc := range pcts {
				v := median(f.values(name, pc.unit))
				if math.IsNaN(v) {
					return nil, fmt.Errorf("no %s for %s", pc.unit, name)
				}
				// log10 on a linear axis: gonum's LogScale misplaces the
				// room it keeps for a centred axis label.
				xys = append(xys, plotter.XY{X: float64(j), Y: math.Log10(v)})
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
			line, points, err := plotter.NewLinePoints(xys)
			if err != nil {
				return nil, err
			}
			c := series[i%len(series)]
			line.LineStyle = lineStyle(c, 1.6, false)
			points.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(3), Shape: glyphs[i%len(glyphs)]}
			p.Add(line, points)
			if cd.cond != "slow50ms" {
				continue
			}
			label := pol
			if pol == "LeastLatency" {
				label += " (default)"
			}
			switch s := f.values(name, "slow-replica-%"); {
			case len(s) == 1:
				label += fmt.Sprintf(": %.1f%% of its reads on the slow replica", s[0])
			case len(s) > 1:
				label += fmt.Sprintf(": %.1f%% of its reads on the slow replica (runs: %.1f to %.1f%%)", median(s), slices.Min(s), slices.Max(s))
			}
			fig.add(label, line, points)
		}
		var names []string
		for _, pc := range pcts {
			names = append(names, pc.label)
		}
		p.NominalX(names...)
		p.X.Min, p.X.Max = -0.3, float64(len(pcts))-0.7
		fig.plots = append(fig.plots, p)
	}
	for _, p := range fig.plots {
		p.Y.Min, p.Y.Max = math.Log10(lo/1.3), math.Log10(hi*1.3)
		p.Y.Tick.Marker = log10Ticks(" ms")
	}
	return fig, nil
}

var glyphs = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.BoxGlyph{}, draw.TriangleGlyph{}, draw.PyramidGlyph{}, draw.CrossGlyph{}, draw.PlusGlyph{}}

// failoverChart: BenchmarkFailover's timeline per case, in ms from the
// crash.
func failoverChart(f *benchFile) (*figure, error) {
	const prefix = "BenchmarkFailover/"
	var names []string
	for _, n := range f.names() {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no %s results", prefix)
	}
	events := []struct {
		unit, label string
		colour      draw.GlyphStyle
	}{
		{"last-write-at-ms", "last write acknowledged before", draw.GlyphStyle{Color: plotBlack, Radius: vg.Points(3), Shape: draw.CircleGlyph{}}},
		{"detected-at-ms", "first write refused (ErrNoPrimary): detection", draw.GlyphStyle{Color: plotVermilion, Radius: vg.Points(4), Shape: draw.PyramidGlyph{}}},
		{"promoted-at-ms", "promotion seen done", draw.GlyphStyle{Color: plotBlue, Radius: vg.Points(3.2), Shape: draw.BoxGlyph{}}},
		{"switched-at-ms", "rwsplit on the new primary, if later", draw.GlyphStyle{Color: plotPurple, Radius: vg.Points(4), Shape: draw.PlusGlyph{}}},
		{"first-write-at-ms", "first write acknowledged after", draw.GlyphStyle{Color: plotGreen, Radius: vg.Points(4), Shape: draw.RingGlyph{}}},
	}
	fig := &figure{
		title: "Failover timeline: a writer every 2 ms, the primary killed\n" +
			"BenchmarkFailover, one cluster (a primary and 2 replicas) per row; grey: writes not acknowledged (the outage)",
		note: "external: the benchmark promotes a replica at once, as an operator would; auto: rwsplit promotes (WithAutoFailover, After 1 s);\n" +
			"lagging: both replicas apply 3 s late. Each row: " + runsText(f, names[0]) + ". " + machine(f) + ". Made by make benchdata, then make plots.",
		w: 9 * vg.Inch, h: 5.4 * vg.Inch,
	}
	n := len(names)
	y := func(i int) float64 { return float64(n - 1 - i) } // the first case on top
	p := newPlot("", "ms since the primary was killed (SIGKILL)", "")
	p.Add(grid(true))
	crash := &plotter.Line{XYs: plotter.XYs{{X: 0, Y: -0.6}, {X: 0, Y: float64(n) - 0.4}}, LineStyle: lineStyle(plotGrey, 1.2, true)}
	p.Add(crash)

	points := make([]plotter.XYs, len(events))
	var rowLabels []string
	var outX, outY []float64
	var outS []string
	right := 0.0
	for i, name := range names {
		get := func(unit string) (float64, error) {
			v := median(f.values(name, unit))
			if math.IsNaN(v) {
				return 0, fmt.Errorf("no %s for %s (run make benchdata)", unit, name)
			}
			return v, nil
		}
		at := map[string]float64{}
		for _, e := range events {
			v, err := get(e.unit)
			if err != nil {
				return nil, err
			}
			at[e.unit] = v
		}
		outage, err := get("outage-ms")
		if err != nil {
			return nil, err
		}
		span, err := plotter.NewLine(plotter.XYs{{X: at["last-write-at-ms"], Y: y(i)}, {X: at["first-write-at-ms"], Y: y(i)}})
		if err != nil {
			return nil, err
		}
		span.LineStyle = lineStyle(plotLightGrey, 9, false)
		p.Add(span)
		for j, e := range events {
			if e.unit == "switched-at-ms" && at[e.unit]-at["promoted-at-ms"] < 1 {
				continue // it had switched by the time the promotion returned
			}
			points[j] = append(points[j], plotter.XY{X: at[e.unit], Y: y(i)})
		}
		label := fmt.Sprintf("detection %s, outage %s", ms(at["detected-at-ms"]), ms(outage))
		if lost := median(f.values(name, "lost")); lost > 0 {
			label += fmt.Sprintf(", %.0f write lost", lost)
			if lost > 1 {
				label += "s"
			}
		}
		last := 0.0
		for _, v := range at {
			last = math.Max(last, v)
		}
		outX, outY, outS = append(outX, last), append(outY, y(i)), append(outS, label)
		right = math.Max(right, last)
		rowLabels = append(rowLabels, failoverLabel(strings.TrimPrefix(name, prefix)))
	}
	fig.add("primary killed", crash)
	for j, e := range events {
		if len(points[j]) == 0 {
			continue
		}
		s, err := plotter.NewScatter(points[j])
		if err != nil {
			return nil, err
		}
		s.GlyphStyle = e.colour
		p.Add(s)
		fig.add(e.label, s)
	}
	l, err := labels(outX, outY, outS, 8.5, 0)
	if err != nil {
		return nil, err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].XAlign = text.XLeft // after the row's last point
		l.TextStyle[i].YAlign = text.YCenter
	}
	l.Offset = vg.Point{X: vg.Points(8)}
	p.Add(l)
	// The row labels, in reverse: NominalY puts the first name at y = 0.
	for a, b := 0, len(rowLabels)-1; a < b; a, b = a+1, b-1 {
		rowLabels[a], rowLabels[b] = rowLabels[b], rowLabels[a]
	}
	p.NominalY(rowLabels...)
	p.Y.Min, p.Y.Max = -0.6, float64(n)-0.4
	p.X.Max = right*1.3 + 50
	fig.plots = []*plot.Plot{p}
	return fig, nil
}

// failoverLabel turns "postgres/auto-lagging/interval=200ms" into
// "PostgreSQL, auto, lagging, 200 ms".
func failoverLabel(sub string) string {
	parts := strings.Split(sub, "/")
	if len(parts) != 3 {
		return sub
	}
	server := map[string]string{"postgres": "PostgreSQL", "mariadb": "MariaDB"}[parts[0]]
	if server == "" {
		server = parts[0]
	}
	mode := strings.ReplaceAll(parts[1], "-", ", ")
	interval := human(strings.TrimPrefix(parts[2], "interval="))
	return fmt.Sprintf("%s, %s, interval %s", server, mode, interval)
}

var sessionWorkload = regexp.MustCompile(`^session reads on replicas \((.*)\):`)

// sessionChart: BenchmarkSessionReplicaShare's share of session reads on
// replicas, by replica lag and WithSessionWait.
func sessionChart(f *benchFile) (*figure, error) {
	const prefix = "BenchmarkSessionReplicaShare/"
	var lags, waits []string
	for _, n := range f.names() {
		lag, wait, ok := strings.Cut(strings.TrimPrefix(n, prefix), "/")
		if !strings.HasPrefix(n, prefix) || !ok {
			continue
		}
		lag, wait = strings.TrimPrefix(lag, "lag="), strings.TrimPrefix(wait, "wait=")
		if !slices.Contains(lags, lag) {
			lags = append(lags, lag)
		}
		if !slices.Contains(waits, wait) {
			waits = append(waits, wait)
		}
	}
	if len(lags) == 0 {
		return nil, fmt.Errorf("no %s results", prefix)
	}
	fig := &figure{w: 7.5 * vg.Inch, h: 4.6 * vg.Inch}
	p := newPlot("", "replica lag (recovery_min_apply_delay on both replicas)", "session reads served by a replica")
	p.Add(grid(false))
	width := vg.Points(30)
	stale := 0.0
	for j, wait := range waits {
		var vs plotter.Values
		var xs, ys []float64
		var ss []string
		shift := (float64(j) - float64(len(waits)-1)/2) * 0.34
		for i, lag := range lags {
			name := prefix + "lag=" + lag + "/wait=" + wait
			v := median(f.values(name, "replica-%"))
			if math.IsNaN(v) {
				return nil, fmt.Errorf("no replica-%% for %s", name)
			}
			for _, s := range f.values(name, "stale") {
				stale += s
			}
			vs = append(vs, v)
			xs, ys, ss = append(xs, float64(i)+shift), append(ys, v), append(ss, fmt.Sprintf("%.0f%%", v))
		}
		bars, err := plotter.NewBarChart(vs, width)
		if err != nil {
			return nil, err
		}
		bars.XMin = shift
		bars.Color = series[j%len(series)]
		bars.LineStyle.Width = 0
		l, err := labels(xs, ys, ss, 9, 3)
		if err != nil {
			return nil, err
		}
		p.Add(bars, l)
		label := "WithSessionWait " + human(wait)
		if human(wait) == "0" {
			label += " (the default: never wait)"
		}
		fig.add(label, bars)
	}
	var names []string
	for _, lag := range lags {
		names = append(names, human(lag))
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(lags))-0.4
	p.Y.Min, p.Y.Max = 0, 108
	p.Y.Tick.Marker = plot.TickerFunc(func(min, max float64) []plot.Tick {
		var t []plot.Tick
		for v := 0.0; v <= 100; v += 25 {
			t = append(t, plot.Tick{Value: v, Label: fmt.Sprintf("%.0f%%", v)})
		}
		return t
	})

	workload := f.other(sessionWorkload)
	if workload != "" {
		workload = ": " + strings.ReplaceAll(workload, " x ", " × ")
	}
	staleText := fmt.Sprintf("%.0f stale reads in all", stale)
	if stale == 0 {
		staleText = "every read found its row (0 stale)"
	}
	fig.title = "Read-your-writes: the share of session reads that replicas serve\n" +
		"BenchmarkSessionReplicaShare, PostgreSQL with 2 replicas" + workload
	fig.note = "Otherwise default options (health interval 1 s); " + staleText + "; each bar: " + runsText(f, prefix+"lag="+lags[0]+"/wait="+waits[0]) + ".\n" +
		machine(f) + ". Made by make benchdata, then make plots."
	fig.plots = []*plot.Plot{p}
	return fig, nil
}
