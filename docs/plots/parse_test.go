package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `2026/12/05 03:45:58 rwsplittest: [+0.001s] pg0: initdb
goos: linux
goarch: amd64
pkg: github.com/rwsplit/rwsplit/integration
cpu: AMD EPYC 9R14
BenchmarkFailover/postgres/auto-lagging/interval=200ms-2  	       1	8394453039 ns/op	         6.955 detected-at-ms	         0.2514 last-write-at-ms	         0 lost	 9846208 B/op	  121558 allocs/op
[mysql] 2026/12/05 03:46:23 packets.go:58 read tcp 127.0.0.1:56374->127.0.0.1:39503: read: connection reset by peer
BenchmarkFailover/mariadb/external/interval=1s-2          	       1	3060897462 ns/op	        -0.01463 last-write-at-ms	         1.000 lost
--- BENCH: BenchmarkFailover/mariadb/external/interval=1s-2
    failover_bench_test.go:95: a log line
BenchmarkOverhead/Query/serial  	 3000000	       352.5 ns/op	  1.03 x-raw
BenchmarkOverhead/Query/serial  	 3100000	       360.5 ns/op	  1.05 x-raw
BenchmarkTailLatency
failover:
SERVER    PROMOTION         INTERVAL   DETECTION
postgres  external          1s              13ms
PASS
ok  	github.com/rwsplit/rwsplit/integration	52.943s
`

func TestParse(t *testing.T) {
	f, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Config["cpu"]; got != "AMD EPYC 9R14" {
		t.Errorf("cpu %q", got)
	}
	if got := f.Config["pkg"]; got != "github.com/rwsplit/rwsplit/integration" {
		t.Errorf("pkg %q", got)
	}
	if len(f.Results) != 4 {
		t.Fatalf("%d results, want 4: %+v", len(f.Results), f.Results)
	}
	r := f.Results[0]
	if r.Name != "BenchmarkFailover/postgres/auto-lagging/interval=200ms" || r.Procs != 2 || r.Iters != 1 {
		t.Errorf("first result %q procs %d iters %d", r.Name, r.Procs, r.Iters)
	}
	want := map[string]float64{"ns/op": 8394453039, "detected-at-ms": 6.955, "last-write-at-ms": 0.2514, "lost": 0, "B/op": 9846208, "allocs/op": 121558}
	for unit, v := range want {
		if got, ok := r.Metrics[unit]; !ok || got != v {
			t.Errorf("%s = %v (%v), want %v", unit, got, ok, v)
		}
	}
	if got := f.values("BenchmarkFailover/mariadb/external/interval=1s", "last-write-at-ms"); len(got) != 1 || got[0] != -0.01463 {
		t.Errorf("negative metric: %v", got)
	}
	serial := "BenchmarkOverhead/Query/serial"
	if f.Results[2].Procs != 1 || f.runs(serial) != 2 {
		t.Errorf("without a -N suffix: procs %d, runs %d", f.Results[2].Procs, f.runs(serial))
	}
	if got := median(f.values(serial, "x-raw")); math.Abs(got-1.04) > 1e-9 {
		t.Errorf("median x-raw %v, want 1.04", got)
	}
	if got := f.ratios(serial, "ns/op", "x-raw"); len(got) != 2 || math.Abs(got[0]-352.5/1.03) > 1e-9 {
		t.Errorf("ratios %v", got)
	}
	if got := f.names(); len(got) != 3 || got[2] != serial {
		t.Errorf("names %q", got)
	}
	if got := f.other(sessionWorkload); got != "" {
		t.Errorf("other found %q", got)
	}
	if !contains(f.Other, "SERVER    PROMOTION         INTERVAL   DETECTION") {
		t.Errorf("the printed table is not kept: %q", f.Other)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestParseRejectsDamagedLines(t *testing.T) {
	for _, line := range []string{
		"BenchmarkX-2 \t 2026/12/05 03:46:23 a log line in the middle",
		"BenchmarkX-2 \t 1 \t 12 ns/op \t 3",
		"BenchmarkX-2 \t 1 \t twelve ns/op",
	} {
		if _, err := parse(strings.NewReader(line + "\n")); err == nil {
			t.Errorf("%q: no error", line)
		}
	}
}

func TestSplitProcs(t *testing.T) {
	for _, c := range []struct {
		in    string
		name  string
		procs int
	}{
		{"BenchmarkX-16", "BenchmarkX", 16},
		{"BenchmarkX", "BenchmarkX", 1},
		{"BenchmarkX/auto-lagging", "BenchmarkX/auto-lagging", 1},
		{"BenchmarkX/auto-lagging-2", "BenchmarkX/auto-lagging", 2},
		{"BenchmarkX/a-0", "BenchmarkX/a-0", 1},
	} {
		if name, procs := splitProcs(c.in); name != c.name || procs != c.procs {
			t.Errorf("splitProcs(%q) = %q, %d; want %q, %d", c.in, name, procs, c.name, c.procs)
		}
	}
}

func TestQuantile(t *testing.T) {
	vs := []float64{4, 1, 3, 2}
	for q, want := range map[float64]float64{0: 1, .25: 1.75, .5: 2.5, .75: 3.25, 1: 4} {
		if got := quantile(vs, q); math.Abs(got-want) > 1e-12 {
			t.Errorf("quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if vs[0] != 4 {
		t.Error("quantile sorted its argument")
	}
	if !math.IsNaN(median(nil)) || median([]float64{7}) != 7 {
		t.Error("median of none or one")
	}
}

// TestChartsUpToDate draws the charts from the committed benchmark output
// and compares them with the committed SVGs: they must be byte-identical
// (the drawing is deterministic, and make plots was run after the last
// change of data or code).
func TestChartsUpToDate(t *testing.T) {
	out := t.TempDir()
	if err := run(filepath.Join("..", "bench"), out); err != nil {
		t.Fatal(err)
	}
	for _, c := range charts {
		got, err := os.ReadFile(filepath.Join(out, c.out))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join("..", c.out))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, committed) {
			t.Errorf("docs/%s differs from what docs/bench/%s draws: run make plots", c.out, c.in)
		}
	}
}
