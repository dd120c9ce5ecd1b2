package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// A result is one line of `go test -bench` output:
//
//	BenchmarkOverhead/Query/parallel-2   3410966   352.5 ns/op   1.03 x-raw   200 B/op
//
// Name is the benchmark's name without the -GOMAXPROCS suffix, Procs that
// suffix (1 when there is none), and Metrics every value by its unit,
// ns/op and b.ReportMetric's units alike.
type result struct {
	Name    string
	Procs   int
	Iters   int64
	Metrics map[string]float64
}

// A benchFile is what one output file holds: its results in the order
// they ran, and the configuration lines before them (goos, goarch, pkg,
// cpu), the last value of each key, and every other line (what the
// benchmarks printed).
type benchFile struct {
	Config  map[string]string
	Results []result
	Other   []string
}

// parse reads `go test -bench` output. Lines that are not results
// (configuration, logs, PASS, ok, tables a benchmark prints) are skipped,
// as benchstat does; a line that starts like a result but does not read
// as one is an error, so a damaged file is not drawn as if it were whole.
func parse(r io.Reader) (*benchFile, error) {
	f := &benchFile{Config: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if k, v, ok := configLine(text); ok {
			f.Config[k] = v
			continue
		}
		fields := strings.Fields(text)
		if !strings.HasPrefix(text, "Benchmark") || len(fields) < 2 {
			f.Other = append(f.Other, text) // a parent benchmark's name alone, with -v
			continue
		}
		res, err := parseResult(fields)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		f.Results = append(f.Results, res)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

// configLine reports whether text is a "key: value" line of the output's
// header, with a lower-case key of letters only.
func configLine(text string) (key, value string, ok bool) {
	k, v, found := strings.Cut(text, ":")
	if !found || k == "" {
		return "", "", false
	}
	for _, c := range k {
		if c < 'a' || c > 'z' {
			return "", "", false
		}
	}
	return k, strings.TrimSpace(v), true
}

func parseResult(fields []string) (result, error) {
	name, procs := splitProcs(fields[0])
	iters, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return result{}, fmt.Errorf("%s: iterations %q: %w", fields[0], fields[1], err)
	}
	rest := fields[2:]
	if len(rest)%2 != 0 {
		return result{}, fmt.Errorf("%s: a value without a unit", fields[0])
	}
	res := result{Name: name, Procs: procs, Iters: iters, Metrics: map[string]float64{}}
	for i := 0; i < len(rest); i += 2 {
		v, err := strconv.ParseFloat(rest[i], 64)
		if err != nil {
			return result{}, fmt.Errorf("%s: value %q: %w", fields[0], rest[i], err)
		}
		res.Metrics[rest[i+1]] = v
	}
	return res, nil
}

// splitProcs splits the -N that go test appends to a benchmark's name
// when GOMAXPROCS is not 1.
func splitProcs(name string) (string, int) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name, 1
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil || n <= 0 {
		return name, 1
	}
	return name[:i], n
}

// names returns the distinct benchmark names of f in the order they first
// ran.
func (f *benchFile) names() []string {
	var names []string
	for _, r := range f.Results {
		if !slices.Contains(names, r.Name) {
			names = append(names, r.Name)
		}
	}
	return names
}

// values returns metric unit of every result named name, in run order.
func (f *benchFile) values(name, unit string) []float64 {
	var vs []float64
	for _, r := range f.Results {
		if v, ok := r.Metrics[unit]; ok && r.Name == name {
			vs = append(vs, v)
		}
	}
	return vs
}

// ratios returns num/den of every result named name that has both.
func (f *benchFile) ratios(name, num, den string) []float64 {
	var vs []float64
	for _, r := range f.Results {
		n, ok1 := r.Metrics[num]
		d, ok2 := r.Metrics[den]
		if r.Name == name && ok1 && ok2 && d != 0 {
			vs = append(vs, n/d)
		}
	}
	return vs
}

// procs returns the GOMAXPROCS of the first result, 0 without results.
func (f *benchFile) procs() int {
	if len(f.Results) == 0 {
		return 0
	}
	return f.Results[0].Procs
}

// runs returns how many times the benchmark named name ran.
func (f *benchFile) runs(name string) int {
	n := 0
	for _, r := range f.Results {
		if r.Name == name {
			n++
		}
	}
	return n
}

// other returns the first submatch of re in the lines a benchmark
// printed, or "" without one.
func (f *benchFile) other(re *regexp.Regexp) string {
	for _, l := range f.Other {
		if m := re.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	return ""
}

// quantile returns the q-quantile of vs (linear between the two nearest
// ranks), NaN for none.
func quantile(vs []float64, q float64) float64 {
	if len(vs) == 0 {
		return nan
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := int(pos)
	if lo+1 >= len(s) {
		return s[len(s)-1]
	}
	frac := pos - float64(lo)
	return s[lo] + frac*(s[lo+1]-s[lo])
}

func median(vs []float64) float64 { return quantile(vs, .5) }
