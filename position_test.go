package rwsplit

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// progressOf parses p and q in dialect d and reports whether p's progress
// covers q's; ok is false when either does not parse.
func progressOf(d *dialect, p, q string) (covers, ok bool) {
	pp, ok1 := newPosition(d, p)
	qq, ok2 := newPosition(d, q)
	if !ok1 || !ok2 {
		return false, false
	}
	return d.progressCovers(pp, qq), true
}

func TestMariaGTIDCovers(t *testing.T) {
	tests := []struct {
		p, q          string
		covers, valid bool
	}{
		{"0-1-10", "0-1-10", true, true},
		{"0-1-11", "0-1-10", true, true},
		{"0-1-9", "0-1-10", false, true},
		{"0-2-12", "0-1-10", true, true}, // another server continued the domain
		{"0-1-10,1-1-5", "1-1-5", true, true},
		{"0-1-10", "0-1-10,1-1-1", false, true},
		{"", "", true, true},
		{"0-1-10", "", true, true},
		{"", "0-1-1", false, true},
		{"0-1", "0-1-1", false, false},
		{"0-1-x", "0-1-1", false, false},
	}
	for _, tt := range tests {
		covers, ok := progressOf(dialectMariaDB, tt.p, tt.q)
		if covers != tt.covers || ok != tt.valid {
			t.Errorf("MariaDB progressCovers(%q, %q) = %v, %v; want %v, %v", tt.p, tt.q, covers, ok, tt.covers, tt.valid)
		}
	}
}

func TestMySQLGTIDCovers(t *testing.T) {
	const a = "3E11FA47-71CA-11E1-9E33-C80AA9429562"
	const b = "4d22fa47-71ca-11e1-9e33-c80aa9429562"
	tests := []struct {
		p, q          string
		covers, valid bool
	}{
		{a + ":1-5", a + ":1-5", true, true},
		{a + ":1-5", a + ":3", true, true},
		{a + ":1-5", a + ":1-6", false, true},
		{a + ":1-3:4-5", a + ":2-5", true, true}, // adjacent intervals merge
		{a + ":1-3:5-9", a + ":2-6", false, true},
		{a + ":1-5,\n" + b + ":1-2", b + ":2", true, true},
		{a + ":1-5", b + ":1", false, true},
		{a + ":1-5", "", true, true},
		{"", a + ":1", false, true},
		{a + ":tag:1-3", a + ":tag:2", true, true},
		{a + ":1-3", a + ":tag:2", false, true},
		{"3E11FA47:1-5", a + ":1", false, false},
		{a + ":5-1", a + ":1", false, false},
		{a + ":0", a + ":1", false, false},
		{a, a + ":1", false, false},
	}
	for _, tt := range tests {
		covers, ok := progressOf(dialectMySQL, tt.p, tt.q)
		if covers != tt.covers || ok != tt.valid {
			t.Errorf("MySQL progressCovers(%q, %q) = %v, %v; want %v, %v", tt.p, tt.q, covers, ok, tt.covers, tt.valid)
		}
	}
}

func FuzzGTID(f *testing.F) {
	for _, s := range []string{"0-1-10", "0-1-10,1-2-3", "", "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7", "x-y-z", "a:b:c"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, p, q string) {
		// Never panics; a parsed position covers itself.
		if c, ok := progressOf(dialectMariaDB, p, p); ok && !c {
			t.Errorf("MariaDB position %q does not cover itself", p)
		}
		if c, ok := progressOf(dialectMySQL, p, p); ok && !c {
			t.Errorf("MySQL GTID set %q does not cover itself", p)
		}
		progressOf(dialectMariaDB, p, q)
		progressOf(dialectMySQL, p, q)
	})
}

func TestParseMariaGTIDList(t *testing.T) {
	tests := []struct {
		in   string
		want []mariaGTID
	}{
		{"", []mariaGTID{}},
		{"   ", []mariaGTID{}},
		{"0-1-42", []mariaGTID{{0, 1, 42}}},
		{"0-1-42,1-2-7", []mariaGTID{{0, 1, 42}, {1, 2, 7}}},
		{"1-2-7,0-1-42", []mariaGTID{{0, 1, 42}, {1, 2, 7}}},
		{"9-1-1, 2-1-2 ,5-1-3,0-4-4", []mariaGTID{{0, 4, 4}, {2, 1, 2}, {5, 1, 3}, {9, 1, 1}}},
		{" 0-1-42,\n1-2-7\n", []mariaGTID{{0, 1, 42}, {1, 2, 7}}},
		// A repeated domain keeps its highest sequence number, whichever
		// server wrote it.
		{"0-1-5,0-2-9,0-3-7", []mariaGTID{{0, 2, 9}}},
		{"0-1-5,1-1-1,0-1-3", []mariaGTID{{0, 1, 5}, {1, 1, 1}}},
		{"3-1-1,0-1-5,3-2-8,0-3-6", []mariaGTID{{0, 3, 6}, {3, 2, 8}}},
		{"0-1-0", []mariaGTID{{0, 1, 0}}},
		{"4294967295-4294967295-18446744073709551615", []mariaGTID{{4294967295, 4294967295, 18446744073709551615}}},
		{"007-01-0042", []mariaGTID{{7, 1, 42}}},
	}
	for _, tt := range tests {
		got, ok := parseMariaGTIDList(tt.in)
		if !ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseMariaGTIDList(%q) = %v, %v; want %v, true", tt.in, got, ok, tt.want)
		}
	}
	bad := []string{
		"0-1", "0-1-2-3", "0", "-", "--", "a-1-2", "0-b-2", "0-1-c", "0-1-", "-1-2", "0--2",
		"0-1--1", "+0-1-2", "0-+1-2", "0-1-+2", "0x1-1-2", "1_0-1-2", "0-1-2 3", "0 -1-2",
		"4294967296-1-1", "0-4294967296-1", "0-1-18446744073709551616",
		"0-1-1,", ",0-1-1", "0-1-1,,1-1-1", ",", "0-1-1;1-1-1", "0-1-1\x00",
	}
	for _, s := range bad {
		if got, ok := parseMariaGTIDList(s); ok {
			t.Errorf("parseMariaGTIDList(%q) = %v, ok; want rejected", s, got)
		}
	}
}

func TestMariaHistoryCovers(t *testing.T) {
	tests := []struct {
		have, need string
		covers     bool
	}{
		{"0-1-10", "0-1-10", true},  // same server, equal
		{"0-1-11", "0-1-10", true},  // same server, higher
		{"0-1-9", "0-1-10", false},  // same server, lower
		{"0-2-10", "0-1-10", false}, // another server, same seq
		{"0-2-12", "0-1-10", false}, // another server, higher seq: maybe another history
		{"0-2-9", "0-1-10", false},
		{"1-1-10", "0-1-10", false}, // missing domain
		{"0-1-10", "0-1-10,1-1-1", false},
		{"", "0-1-1", false},
		{"0-1-10,1-1-5", "1-1-5", true},
		{"0-1-10,1-1-5,2-3-9", "0-1-7,2-3-9", true},
		{"0-1-10,2-3-9", "0-1-7,1-3-1,2-3-9", false},
		{"0-1-10,1-2-5", "0-1-10,1-1-5", false},
		{"", "", true}, // need empty
		{"0-1-10", "", true},
		{"0-1-10,5-5-5", "", true},
	}
	for _, tt := range tests {
		have, ok1 := parseMariaGTIDList(tt.have)
		need, ok2 := parseMariaGTIDList(tt.need)
		if !ok1 || !ok2 {
			t.Fatalf("bad test input %q %q", tt.have, tt.need)
		}
		if got := mariaHistoryCovers(have, need); got != tt.covers {
			t.Errorf("mariaHistoryCovers(%q, %q) = %v, want %v", tt.have, tt.need, got, tt.covers)
		}
		if got := dialectMariaDB.historyCovers(position{maria: have}, position{maria: need}); got != tt.covers {
			t.Errorf("historyCovers(%q, %q) = %v, want %v", tt.have, tt.need, got, tt.covers)
		}
	}
	if !mariaHistoryCovers(nil, nil) || !mariaHistoryCovers([]mariaGTID{{0, 1, 1}}, nil) {
		t.Error("a nil need is not covered")
	}
}

func TestMySQLSetCovers(t *testing.T) {
	const a = "3E11FA47-71CA-11E1-9E33-C80AA9429562"
	const b = "4d22fa47-71ca-11e1-9e33-c80aa9429562"
	tests := []struct {
		have, need string
		covers     bool
	}{
		{a + ":1-5", a + ":1-5", true},
		{a + ":1-5", a + ":2-4", true},
		{a + ":1-5", a + ":1-6", false},
		{a + ":1-5:11", a + ":11", true},
		{a + ":1-5:11", a + ":5-11", false},
		{a + ":1-5:6-9", a + ":3-8", true}, // adjacent intervals merge
		{a + ":1-5:7-9", a + ":3-8", false},
		{a + ":7-9,\n" + a + ":1-6", a + ":1-9", true}, // repeated source, out of order
		{strings.ToLower(a) + ":1-5", a + ":3", true},  // case
		{a + ":1-5", strings.ToLower(a) + ":3", true},
		{a + ":1-5," + b + ":1-2", b + ":2," + a + ":5", true},
		{a + ":1-5", b + ":1", false},
		{a + ":1-5", "", true},
		{"", "", true},
		{"", a + ":1", false},
		{a + ":tag:1-3", a + ":tag:2", true},
		{a + ":1-3", a + ":tag:2", false},
		{a + ":tag:1-3", a + ":2", false},
		{a + ":1-3:tag:5-6", a + ":2," + a + ":tag:5", true},
		{a + ":1-18446744073709551615", a + ":18446744073709551615", true},
	}
	for _, tt := range tests {
		have, ok1 := parseMySQLGTIDSet(tt.have)
		need, ok2 := parseMySQLGTIDSet(tt.need)
		if !ok1 || !ok2 {
			t.Fatalf("bad test input %q %q", tt.have, tt.need)
		}
		if got := mysqlSetCovers(have, need); got != tt.covers {
			t.Errorf("mysqlSetCovers(%q, %q) = %v, want %v", tt.have, tt.need, got, tt.covers)
		}
		if got := dialectMySQL.historyCovers(position{mysql: have}, position{mysql: need}); got != tt.covers {
			t.Errorf("historyCovers(%q, %q) = %v, want %v", tt.have, tt.need, got, tt.covers)
		}
	}
	if !mysqlSetCovers(nil, nil) {
		t.Error("mysqlSetCovers(nil, nil) = false")
	}
}

func TestMergePositionPostgres(t *testing.T) {
	d := dialectPostgres
	for _, tt := range []struct{ a, b, want uint64 }{
		{5, 9, 9}, {9, 5, 9}, {7, 7, 7}, {0, 0, 0}, {0, ^uint64(0), ^uint64(0)},
	} {
		a, b := position{lsn: tt.a}, position{lsn: tt.b}
		m := d.merge(a, b)
		if m.lsn != tt.want {
			t.Errorf("mergePosition(%#x, %#x) = %#x, want %#x", tt.a, tt.b, m.lsn, tt.want)
		}
		if !d.historyCovers(m, a) || !d.historyCovers(m, b) {
			t.Errorf("mergePosition(%#x, %#x) = %#x does not cover both", tt.a, tt.b, m.lsn)
		}
	}
}

func TestMergePositionMariaDB(t *testing.T) {
	d := dialectMariaDB
	tests := []struct{ a, b, want string }{
		{"0-1-42,1-2-7", "0-1-40,2-3-1", "0-1-42,1-2-7,2-3-1"},
		{"0-1-40,2-3-1", "0-1-42,1-2-7", "0-1-42,1-2-7,2-3-1"},
		{"1-1-5", "0-1-3,2-1-4", "0-1-3,1-1-5,2-1-4"},
		{"0-1-3,2-1-4", "1-1-5", "0-1-3,1-1-5,2-1-4"},
		{"", "0-1-1", "0-1-1"},
		{"0-1-1", "", "0-1-1"},
		{"", "", ""},
		{"0-1-7", "0-1-7", "0-1-7"},
		{"5-2-1,9-2-3", "5-2-4,9-2-2", "5-2-4,9-2-3"},
		{" 1-2-7 , 0-1-42 ", "0-1-43", "0-1-43,1-2-7"},
	}
	for _, tt := range tests {
		a, b := tokMustPosition(t, d, tt.a), tokMustPosition(t, d, tt.b)
		m := d.merge(a, b)
		if m.gtid != tt.want {
			t.Errorf("mergePosition(%q, %q).gtid = %q, want %q", tt.a, tt.b, m.gtid, tt.want)
		}
		if !d.historyCovers(m, a) || !d.historyCovers(m, b) {
			t.Errorf("mergePosition(%q, %q) = %q does not cover both", tt.a, tt.b, m.gtid)
		}
		re, ok := parseMariaGTIDList(m.gtid)
		if !ok || !reflect.DeepEqual(re, m.maria) {
			t.Errorf("mergePosition(%q, %q): text %q re-parses to %v, %v; entries %v", tt.a, tt.b, m.gtid, re, ok, m.maria)
		}
		if m.String() != m.gtid {
			t.Errorf("String() = %q, gtid %q", m.String(), m.gtid)
		}
	}

	// Where both inputs name the same server in a domain (one history),
	// the merge covers both; checked on random lists.
	rng := rand.New(rand.NewPCG(1, 2))
	random := func() position {
		var parts []string
		for domain := range 5 {
			if rng.IntN(2) == 0 {
				parts = append(parts, fmt.Sprintf("%d-%d-%d", domain, 100+domain, rng.IntN(50)))
			}
		}
		rng.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
		return tokMustPosition(t, d, strings.Join(parts, ","))
	}
	for range 2000 {
		a, b := random(), random()
		m := d.merge(a, b)
		if !d.historyCovers(m, a) || !d.historyCovers(m, b) {
			t.Fatalf("mergePosition(%q, %q) = %q does not cover both", a.gtid, b.gtid, m.gtid)
		}
		if re, ok := parseMariaGTIDList(m.gtid); !ok || !reflect.DeepEqual(re, m.maria) {
			t.Fatalf("mergePosition(%q, %q): text %q does not re-parse to %v", a.gtid, b.gtid, m.gtid, m.maria)
		}
		// The merge is the smallest such position: every domain's entry
		// comes from one of the inputs.
		for _, g := range m.maria {
			if !mariaHistoryCovers(a.maria, []mariaGTID{g}) && !mariaHistoryCovers(b.maria, []mariaGTID{g}) {
				t.Fatalf("mergePosition(%q, %q) = %q: %v is in neither", a.gtid, b.gtid, m.gtid, g)
			}
		}
	}

	// Across servers in one domain the merge keeps the higher sequence
	// number: it covers the input that has it.
	a, b := tokMustPosition(t, d, "0-1-10,1-1-3"), tokMustPosition(t, d, "0-2-12")
	m := d.merge(a, b)
	if m.gtid != "0-2-12,1-1-3" || !d.historyCovers(m, b) {
		t.Errorf("mergePosition(%q, %q) = %q", a.gtid, b.gtid, m.gtid)
	}
}

func TestMergePositionMySQL(t *testing.T) {
	d := dialectMySQL
	const u = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	const v = "4d22fa47-71ca-11e1-9e33-c80aa9429562"
	tests := []struct {
		a, b     string
		sameAs   string // "a" or "b": the merge is that input
		wantSets map[string][]gtidInterval
	}{
		{u + ":1-5", u + ":1-3", "a", nil},
		{u + ":1-3", u + ":1-5", "b", nil},
		{u + ":1-5", u + ":1-5", "a", nil},
		{"", u + ":1-5", "b", nil},
		{u + ":1-5", "", "a", nil},
		{u + ":1-5," + v + ":1-2", v + ":2", "a", nil},
		// Neither covers the other: the union.
		{u + ":1-5", u + ":7-9," + v + ":1", "", map[string][]gtidInterval{u: {{1, 5}, {7, 9}}, v: {{1, 1}}}},
		{u + ":1-5", u + ":6-9", "", map[string][]gtidInterval{u: {{1, 9}}}},
		{u + ":1-5", v + ":1-5", "", map[string][]gtidInterval{u: {{1, 5}}, v: {{1, 5}}}},
		{u + ":tag:1-2", u + ":1-2", "", map[string][]gtidInterval{u: {{1, 2}}, u + ":tag": {{1, 2}}}},
	}
	for _, tt := range tests {
		a, b := tokMustPosition(t, d, tt.a), tokMustPosition(t, d, tt.b)
		m := d.merge(a, b)
		if !d.historyCovers(m, a) || !d.historyCovers(m, b) {
			t.Errorf("mergePosition(%q, %q) = %q does not cover both", tt.a, tt.b, m.gtid)
		}
		switch tt.sameAs {
		case "a":
			if m.gtid != a.gtid {
				t.Errorf("mergePosition(%q, %q) = %q, want the first", tt.a, tt.b, m.gtid)
			}
		case "b":
			if m.gtid != b.gtid {
				t.Errorf("mergePosition(%q, %q) = %q, want the second", tt.a, tt.b, m.gtid)
			}
		default:
			if !reflect.DeepEqual(m.mysql, tt.wantSets) {
				t.Errorf("mergePosition(%q, %q) = %v, want %v", tt.a, tt.b, m.mysql, tt.wantSets)
			}
			// The text form is the same set.
			re, ok := parseMySQLGTIDSet(m.gtid)
			if !ok || !reflect.DeepEqual(re, m.mysql) {
				t.Errorf("mergePosition(%q, %q): text %q re-parses to %v, %v", tt.a, tt.b, m.gtid, re, ok)
			}
		}
	}
}

func FuzzMariaGTIDList(f *testing.F) {
	for _, s := range []string{
		"", "0-1-42", "0-1-42,1-2-7", "1-2-7,0-1-42", "0-1-5,0-2-9", " 0-1-1 , 2-2-2 ",
		"4294967295-4294967295-18446744073709551615", "0-1", "a-b-c", "0-1-1,", "1-1-1,0-1-1,1-2-0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, ok := parseMariaGTIDList(s)
		if !ok {
			if g != nil {
				t.Fatalf("parseMariaGTIDList(%q) failed with %v", s, g)
			}
			return
		}
		for i := 1; i < len(g); i++ {
			if g[i-1].domain >= g[i].domain {
				t.Fatalf("parseMariaGTIDList(%q) = %v: not sorted by domain", s, g)
			}
		}
		if !mariaHistoryCovers(g, g) {
			t.Fatalf("%q does not cover itself", s)
		}
		p := position{gtid: s, maria: g}
		m := dialectMariaDB.merge(p, p)
		if !dialectMariaDB.historyCovers(m, p) {
			t.Fatalf("mergePosition(%q, itself) = %q does not cover it", s, m.gtid)
		}
		if !reflect.DeepEqual(m.maria, g) {
			t.Fatalf("mergePosition(%q, itself) = %v, want %v", s, m.maria, g)
		}
		if re, ok := parseMariaGTIDList(m.gtid); !ok || !reflect.DeepEqual(re, g) {
			t.Fatalf("merged text %q re-parses to %v, %v; want %v", m.gtid, re, ok, g)
		}
	})
}
