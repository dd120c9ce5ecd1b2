package rwsplit

import "testing"

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
