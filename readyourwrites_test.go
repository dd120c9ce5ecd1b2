package rwsplit

import (
	"context"
	"crypto/hmac"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

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

func TestReadLevel(t *testing.T) {
	bg := context.Background()
	s := NewSession()
	level := func(ctx context.Context) consistencyLevel {
		o := optionsOf(ctx)
		if o == nil {
			o = &callOptions{}
		}
		return o.readLevel()
	}
	tests := []struct {
		name string
		ctx  context.Context
		want consistencyLevel
	}{
		{"nothing", bg, levelEventual},
		{"session", WithSession(bg, s), levelSession},
		{"primary", WithPrimary(bg), levelStrong},
		{"session then primary", WithPrimary(WithSession(bg, s)), levelStrong},
		{"primary then session", WithSession(WithPrimary(bg), s), levelStrong},
		{"primary over eventual", WithPrimary(WithConsistency(bg, Eventual)), levelStrong},
		{"primary then eventual", WithConsistency(WithPrimary(bg), Eventual), levelStrong},
		{"eventual with session", WithConsistency(WithSession(bg, s), Eventual), levelEventual},
		{"session then eventual", WithSession(WithConsistency(bg, Eventual), s), levelEventual},
		{"read-your-writes without session", WithConsistency(bg, ReadYourWrites), levelEventual},
		{"read-your-writes with session", WithConsistency(WithSession(bg, s), ReadYourWrites), levelSession},
		{"strong", WithConsistency(bg, Strong), levelStrong},
		{"bounded", WithConsistency(WithSession(bg, s), BoundedStaleness(time.Second)), levelBounded},
		{"bounded 0", WithConsistency(bg, BoundedStaleness(0)), levelStrong},
		{"nil session", WithSession(bg, nil), levelEventual},
	}
	for _, tt := range tests {
		if got := level(tt.ctx); got != tt.want {
			t.Errorf("%s: readLevel = %d, want %d", tt.name, got, tt.want)
		}
		if got := forcedPrimary(tt.ctx); got != (tt.want == levelStrong) {
			t.Errorf("%s: forcedPrimary = %v", tt.name, got)
		}
	}
	if (&callOptions{}).readLevel() != levelEventual || (&callOptions{session: s}).readLevel() != levelSession {
		t.Error("default levels")
	}
}

func TestConsistencyValues(t *testing.T) {
	if BoundedStaleness(0) != Strong || BoundedStaleness(-time.Second) != Strong {
		t.Error("BoundedStaleness(<= 0) is not Strong")
	}
	if c := BoundedStaleness(250 * time.Millisecond); c.level != levelBounded || c.maxLag != 250*time.Millisecond {
		t.Errorf("BoundedStaleness(250ms) = %+v", c)
	}
	for c, want := range map[Consistency]string{
		{}:                            "default",
		Eventual:                      "eventual",
		ReadYourWrites:                "read-your-writes",
		Strong:                        "strong",
		BoundedStaleness(time.Second): "bounded staleness 1s",
	} {
		if got := c.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", c, got, want)
		}
	}
}

func TestWithOptionsNesting(t *testing.T) {
	bg := context.Background()
	if got := WithSession(bg, nil); got != bg {
		t.Error("WithSession(ctx, nil) did not return ctx")
	}
	if SessionFrom(bg) != nil {
		t.Error("SessionFrom(background) != nil")
	}
	s, s2 := NewSession(), NewSession()
	ctx := WithSession(bg, s)
	if SessionFrom(ctx) != s {
		t.Error("SessionFrom does not return the session")
	}
	if got := WithSession(ctx, nil); got != ctx {
		t.Error("WithSession(ctx, nil) did not return ctx")
	}
	wc := WriteConcern{Replicas: 2, Timeout: time.Second}
	deep := WithWriteConcern(WithConsistency(WithPrimary(ctx), Eventual), wc)
	if SessionFrom(deep) != s {
		t.Error("the session was lost under later options")
	}
	o := optionsOf(deep)
	if !o.primary || o.consistency != Eventual || o.concern == nil || *o.concern != wc || o.session != s {
		t.Errorf("options = %+v", o)
	}
	// Later calls do not change the options of the contexts they wrap.
	if o := optionsOf(ctx); o.primary || o.consistency != (Consistency{}) || o.concern != nil {
		t.Errorf("the parent's options changed: %+v", o)
	}
	// A later session replaces an earlier one, for the inner context only.
	inner := WithSession(deep, s2)
	if SessionFrom(inner) != s2 || SessionFrom(deep) != s {
		t.Error("a nested WithSession did not replace the session for its context only")
	}
	if !optionsOf(inner).primary {
		t.Error("a nested WithSession dropped WithPrimary")
	}
	// Values of other packages survive.
	type key struct{}
	vctx := WithPrimary(WithSession(context.WithValue(bg, key{}, "v"), s))
	if vctx.Value(key{}) != "v" {
		t.Error("a context value was lost")
	}
}

// rywUnsure reads the session's view under its lock.
func rywUnsure(s *Session) (unsure bool, pending int, resolve bool, gen uint64) {
	v := s.view()
	s.mu.Lock()
	defer s.mu.Unlock()
	return v.unsure, s.pending, s.resolve, v.gen
}

func TestSessionPendingUntilResolved(t *testing.T) {
	s := NewSession()
	if unsure, _, _, _ := rywUnsure(s); unsure {
		t.Fatal("a new session is unsure")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.beginPending(&DB{}, ctx)
	unsure, pending, _, gen0 := rywUnsure(s)
	if !unsure || pending != 1 {
		t.Fatalf("after beginPending: unsure %v pending %d", unsure, pending)
	}
	if s.wrote() != 1 || s.view().lastWrite.IsZero() {
		t.Error("beginPending did not count a write")
	}
	// Resolving while the write is open does not end it.
	s.resolved(dialectPostgres, position{lsn: 10}, epoch{n: 1}, true, gen0)
	if unsure, pending, _, _ := rywUnsure(s); !unsure || pending != 1 {
		t.Fatalf("resolved during the write: unsure %v pending %d", unsure, pending)
	}

	cancel()
	waitFor(t, 5*time.Second, "the write ends with its context", func() bool {
		_, pending, _, gen := rywUnsure(s)
		return pending == 0 && gen != gen0
	})
	unsure, _, resolve, gen1 := rywUnsure(s)
	if !unsure || !resolve {
		t.Fatalf("after cancel: unsure %v resolve %v, want both", unsure, resolve)
	}
	// A resolution that began before the write ended (stale gen) does not
	// settle it.
	s.resolved(dialectPostgres, position{lsn: 20}, epoch{n: 1}, true, gen0)
	if unsure, _, resolve, _ := rywUnsure(s); !unsure || !resolve {
		t.Fatalf("resolved with a stale gen: unsure %v resolve %v, want both", unsure, resolve)
	}
	// One that began after does.
	s.resolved(dialectPostgres, position{lsn: 30}, epoch{n: 1}, true, gen1)
	if unsure, _, resolve, _ := rywUnsure(s); unsure || resolve {
		t.Fatalf("resolved with the current gen: unsure %v resolve %v, want neither", unsure, resolve)
	}
	v := s.view()
	if !v.hasNeed || v.need.lsn != 30 || !v.epKnown || v.ep != (epoch{n: 1}) {
		t.Errorf("session need %+v", v)
	}
	// A later resolution at an older position does not move it back.
	s.resolved(dialectPostgres, position{lsn: 25}, epoch{n: 1}, true, gen1)
	if v := s.view(); v.need.lsn != 30 {
		t.Errorf("need moved back to %#x", v.need.lsn)
	}
	// The cancelled context runs endPending once: a second cancel is a
	// no-op.
	cancel()
	if _, pending, _, gen := rywUnsure(s); pending != 0 || gen != gen1 {
		t.Errorf("pending %d gen %d after a second cancel, want 0 %d", pending, gen, gen1)
	}
}

func TestSessionPendingSeveralWrites(t *testing.T) {
	s := NewSession()
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	s.beginPending(&DB{}, ctx1)
	s.beginPending(&DB{}, ctx2)
	cancel1()
	waitFor(t, 5*time.Second, "one write ends", func() bool {
		_, pending, _, _ := rywUnsure(s)
		return pending == 1
	})
	_, _, _, gen := rywUnsure(s)
	s.resolved(dialectPostgres, position{lsn: 1}, epoch{}, false, gen)
	if unsure, pending, _, _ := rywUnsure(s); !unsure || pending != 1 {
		t.Fatalf("with a write still open: unsure %v pending %d", unsure, pending)
	}
	cancel2()
	waitFor(t, 5*time.Second, "the other write ends", func() bool {
		_, pending, _, _ := rywUnsure(s)
		return pending == 0
	})
	_, _, _, gen = rywUnsure(s)
	s.resolved(dialectPostgres, position{lsn: 2}, epoch{}, false, gen)
	if unsure, _, _, _ := rywUnsure(s); unsure {
		t.Fatal("still unsure after every write ended and resolved")
	}
}

func TestSessionWritesDone(t *testing.T) {
	s := NewSession()
	// WritesDone on a session with nothing pending changes nothing.
	s.WritesDone()
	if unsure, _, resolve, gen := rywUnsure(s); unsure || resolve || gen != 0 {
		t.Fatalf("WritesDone on a clean session: unsure %v resolve %v gen %d", unsure, resolve, gen)
	}
	// A context that is never done: the write stays pending until
	// WritesDone.
	s.beginPending(&DB{}, context.Background())
	s.beginPending(&DB{}, context.Background())
	_, _, _, gen0 := rywUnsure(s)
	s.WritesDone()
	unsure, pending, resolve, gen1 := rywUnsure(s)
	if !unsure || pending != 0 || !resolve || gen1 == gen0 {
		t.Fatalf("after WritesDone: unsure %v pending %d resolve %v gen %d (was %d)", unsure, pending, resolve, gen1, gen0)
	}
	s.resolved(dialectMariaDB, tokMustPosition(t, dialectMariaDB, "0-1-5"), epoch{n: 1}, true, gen0)
	if unsure, _, _, _ := rywUnsure(s); !unsure {
		t.Fatal("a stale resolution settled the session")
	}
	s.resolved(dialectMariaDB, tokMustPosition(t, dialectMariaDB, "0-1-6"), epoch{n: 1}, true, gen1)
	if unsure, _, _, _ := rywUnsure(s); unsure {
		t.Fatal("still unsure after resolving")
	}
	if v := s.view(); v.need.gtid != "0-1-6" {
		t.Errorf("need = %q, want 0-1-6", v.need.gtid)
	}
	// WritesDone while unresolved (a write whose position was not read)
	// keeps the session resolving.
	s.markUnsure(&DB{})
	s.WritesDone()
	if unsure, pending, resolve, _ := rywUnsure(s); !unsure || pending != 0 || !resolve {
		t.Fatalf("WritesDone after markUnsure: unsure %v pending %d resolve %v", unsure, pending, resolve)
	}
}

func TestSessionAdvanceEpochs(t *testing.T) {
	s := NewSession()
	s.resolved(dialectPostgres, position{lsn: 100}, epoch{n: 1}, true, 0)
	s.resolved(dialectPostgres, position{lsn: 50}, epoch{n: 1}, true, 0)
	if v := s.view(); v.need.lsn != 100 {
		t.Errorf("same epoch: need %#x, want the merge 0x64", v.need.lsn)
	}
	// Another epoch replaces the position.
	s.resolved(dialectPostgres, position{lsn: 60}, epoch{n: 2}, true, 0)
	if v := s.view(); v.need.lsn != 60 || v.ep != (epoch{n: 2}) {
		t.Errorf("new epoch: need %#x epoch %v, want 0x3c 2", v.need.lsn, v.ep)
	}
	// An unknown epoch merges and keeps the known one.
	s.resolved(dialectPostgres, position{lsn: 40}, epoch{}, false, 0)
	if v := s.view(); v.need.lsn != 60 || v.ep != (epoch{n: 2}) || !v.epKnown {
		t.Errorf("unknown epoch: need %#x epoch %v known %v", v.need.lsn, v.ep, v.epKnown)
	}
}

func TestSessionLearnsKeyFromPendingWrite(t *testing.T) {
	key := []byte("0123456789abcdef")
	s := NewSession()
	s.beginPending(&DB{}, context.Background())
	if tok := s.Token(); tokDecode(t, tok)[2]&flagSigned != 0 {
		t.Errorf("token %q signed without a key", tok)
	}
	s.beginPending(&DB{cfg: config{sessionKey: key}}, context.Background())
	b := tokDecode(t, s.Token())
	if b[2]&flagSigned == 0 || b[2]&flagUnsure == 0 {
		t.Fatalf("token %x of a pending session that wrote through a keyed DB: want signed and unsure", b)
	}
	r, err := ResumeSession(s.Token())
	if err != nil {
		t.Fatal(err)
	}
	if !r.resolve || r.hasNeed || !hmac.Equal(r.resumed.mac, tokenMAC(key, r.resumed.payload)) {
		t.Errorf("resumed resolve %v hasNeed %v, MAC verifies %v", r.resolve, r.hasNeed, hmac.Equal(r.resumed.mac, tokenMAC(key, r.resumed.payload)))
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
