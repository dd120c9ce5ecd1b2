package rwsplit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	tokMariaText = "0-1-42,1-2-7"
	tokMySQLUUID = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	tokMySQLText = tokMySQLUUID + ":1-5:11"
)

// tokMustPosition parses text in dialect d or fails the test.
func tokMustPosition(t testing.TB, d *dialect, text string) position {
	t.Helper()
	p, ok := newPosition(d, text)
	if !ok {
		t.Fatalf("newPosition(%s, %q) failed", d.name, text)
	}
	return p
}

// tokCase is a session built by hand and whether its token must say the
// session was unsure.
type tokCase struct {
	name   string
	s      *Session
	unsure bool
}

// tokCases returns one session of every kind a token can carry; key, when
// not nil, is set on each so that its token is signed.
func tokCases(t testing.TB, key []byte) []tokCase {
	t.Helper()
	window := time.Date(2024, 5, 6, 7, 8, 9, 123_456_789, time.UTC)
	cases := []tokCase{
		{"postgres", &Session{kind: dialectPostgres, need: position{lsn: 0x1_0000_2000}, hasNeed: true, ep: epoch{n: 3}, epKnown: true}, false},
		{"postgres-pending", &Session{kind: dialectPostgres, need: position{lsn: 0x16_B374_D848}, hasNeed: true, pending: 2}, true},
		{"postgres-max", &Session{kind: dialectPostgres, need: position{lsn: ^uint64(0)}, hasNeed: true, ep: epoch{n: ^uint64(0)}, epKnown: true}, false},
		{"postgres-zero-lsn", &Session{kind: dialectPostgres, need: position{}, hasNeed: true}, false},
		{"mariadb", &Session{kind: dialectMariaDB, need: tokMustPosition(t, dialectMariaDB, tokMariaText), hasNeed: true, ep: epoch{n: 7}, epKnown: true, resolve: true}, true},
		{"mariadb-no-epoch", &Session{kind: dialectMariaDB, need: tokMustPosition(t, dialectMariaDB, tokMariaText), hasNeed: true}, false},
		{"mariadb-empty", &Session{kind: dialectMariaDB, need: tokMustPosition(t, dialectMariaDB, ""), hasNeed: true}, false},
		{"mysql", &Session{kind: dialectMySQL, need: tokMustPosition(t, dialectMySQL, tokMySQLText), hasNeed: true, ep: epoch{id: tokMySQLUUID}, epKnown: true}, false},
		{"mysql-rebase", &Session{kind: dialectMySQL, need: tokMustPosition(t, dialectMySQL, tokMySQLText), hasNeed: true, ep: epoch{id: tokMySQLUUID}, epKnown: true, rebase: true, resolve: true}, true},
		{"window", &Session{lastWrite: window}, false},
		{"window-pending", &Session{lastWrite: window, pending: 1}, true},
		{"window-generic", &Session{kind: dialectGeneric, hasNeed: true, lastWrite: window}, false},
		{"window-before-1970", &Session{lastWrite: time.Date(1901, 1, 1, 0, 0, 0, 999_999_999, time.UTC)}, false},
		{"empty", &Session{}, false},
		{"empty-resolve", &Session{resolve: true}, true},
	}
	for _, c := range cases {
		c.s.key = key
	}
	return cases
}

// tokDecode decodes a token's bytes or fails the test.
func tokDecode(t testing.TB, tok string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatalf("token %q is not URL-safe base64: %v", tok, err)
	}
	return b
}

// tokWithoutKey returns a copy of s without its signing key.
func tokWithoutKey(s *Session) *Session {
	return &Session{
		kind: s.kind, need: s.need, hasNeed: s.hasNeed, ep: s.ep, epKnown: s.epKnown,
		lastWrite: s.lastWrite, pending: s.pending, resolve: s.resolve, rebase: s.rebase,
	}
}

func tokEncode(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// tokCheckResumed compares a resumed session with the one its token came
// from.
func tokCheckResumed(t *testing.T, orig, got *Session, unsure bool) {
	t.Helper()
	wantKind, wantNeed, wantHasNeed := (*dialect)(nil), position{}, false
	wantEp, wantEpKnown := epoch{}, false
	var wantLast time.Time
	switch {
	case orig.hasNeed && orig.kind.hasPositions():
		wantKind, wantNeed, wantHasNeed = orig.kind, orig.need, true
		wantEp, wantEpKnown = orig.ep, orig.epKnown
	case !orig.lastWrite.IsZero():
		wantLast = time.UnixMilli(orig.lastWrite.UnixMilli())
	}
	if got.kind != wantKind {
		t.Errorf("kind = %v, want %v", got.kind, wantKind)
	}
	if got.hasNeed != wantHasNeed {
		t.Errorf("hasNeed = %v, want %v", got.hasNeed, wantHasNeed)
	}
	if got.need.lsn != wantNeed.lsn {
		t.Errorf("lsn = %#x, want %#x", got.need.lsn, wantNeed.lsn)
	}
	if got.need.gtid != wantNeed.gtid {
		t.Errorf("gtid = %q, want %q", got.need.gtid, wantNeed.gtid)
	}
	if wantKind == dialectMariaDB && !reflect.DeepEqual(got.need.maria, wantNeed.maria) {
		t.Errorf("maria = %v, want %v", got.need.maria, wantNeed.maria)
	}
	if wantKind == dialectMySQL && !reflect.DeepEqual(got.need.mysql, wantNeed.mysql) {
		t.Errorf("mysql = %v, want %v", got.need.mysql, wantNeed.mysql)
	}
	if got.ep != wantEp || got.epKnown != wantEpKnown {
		t.Errorf("epoch = %v (known %v), want %v (known %v)", got.ep, got.epKnown, wantEp, wantEpKnown)
	}
	if !got.lastWrite.Equal(wantLast) {
		t.Errorf("lastWrite = %v, want %v", got.lastWrite, wantLast)
	}
	if got.resolve != unsure {
		t.Errorf("resolve = %v, want %v", got.resolve, unsure)
	}
	if got.pending != 0 || got.rebase || got.key != nil || got.node != nil || got.writes != 0 {
		t.Errorf("resumed session has pending=%d rebase=%v key=%q node=%v writes=%d; want none",
			got.pending, got.rebase, got.key, got.node, got.writes)
	}
	if got.resumed == nil {
		t.Fatal("resumed = nil, want the token's payload")
	}
}

func TestTokenRoundTrip(t *testing.T) {
	for _, signed := range []bool{false, true} {
		var key []byte
		if signed {
			key = []byte("round-trip key")
		}
		for _, c := range tokCases(t, key) {
			name := c.name
			if signed {
				name += "/signed"
			}
			t.Run(name, func(t *testing.T) {
				tok := c.s.Token()
				if tok2 := c.s.Token(); tok2 != tok {
					t.Errorf("Token() not deterministic: %q then %q", tok, tok2)
				}
				got, err := ResumeSession(tok)
				if err != nil {
					t.Fatalf("ResumeSession(%q): %v", tok, err)
				}
				tokCheckResumed(t, c.s, got, c.unsure)
				if signed != (got.resumed.mac != nil) {
					t.Errorf("resumed.mac = %x, want signed=%v", got.resumed.mac, signed)
				}
				// The resumed session (which has no key) writes the same
				// token as the original without its signature.
				unsigned := tokWithoutKey(c.s)
				if again := got.Token(); again != unsigned.Token() {
					t.Errorf("resumed session's token = %q, want %q", again, unsigned.Token())
				}
			})
		}
	}
}

func TestTokenWindowMillisecondPrecision(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 678_901_234, time.FixedZone("X", 3600))
	s := &Session{lastWrite: at}
	got, err := ResumeSession(s.Token())
	if err != nil {
		t.Fatal(err)
	}
	want := at.Truncate(time.Millisecond)
	if !got.lastWrite.Equal(want) {
		t.Errorf("lastWrite = %v, want %v", got.lastWrite, want)
	}
	if got.hasNeed || got.kind != nil {
		t.Errorf("window token resumed with a position: kind %v hasNeed %v", got.kind, got.hasNeed)
	}
	// A lastWrite read from time.Now carries a monotonic reading: the
	// token keeps the wall clock to the millisecond.
	now := time.Now()
	got, err = ResumeSession((&Session{lastWrite: now}).Token())
	if err != nil {
		t.Fatal(err)
	}
	if d := now.Sub(got.lastWrite); d < 0 || d >= time.Millisecond {
		t.Errorf("lastWrite off by %v", d)
	}
}

func TestTokenIsURLAndCookieSafe(t *testing.T) {
	safe := regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	for _, key := range [][]byte{nil, []byte("k")} {
		for _, c := range tokCases(t, key) {
			tok := c.s.Token()
			if !safe.MatchString(tok) {
				t.Errorf("%s: token %q has characters outside [A-Za-z0-9_-]", c.name, tok)
			}
			if url.QueryEscape(tok) != tok || url.PathEscape(tok) != tok {
				t.Errorf("%s: token %q changes when escaped", c.name, tok)
			}
		}
	}
	// PostgreSQL tokens stay small even at the largest LSN and timeline.
	s := &Session{kind: dialectPostgres, need: position{lsn: ^uint64(0)}, hasNeed: true, ep: epoch{n: ^uint64(0)}, epKnown: true, pending: 1}
	if tok := s.Token(); len(tok) >= 40 {
		t.Errorf("unsigned PostgreSQL token %q is %d characters, want < 40", tok, len(tok))
	}
	s.key = []byte("a signing key of some length")
	if tok := s.Token(); len(tok) >= 64 {
		t.Errorf("signed PostgreSQL token %q is %d characters, want < 64", tok, len(tok))
	}
	typical := &Session{kind: dialectPostgres, need: position{lsn: 0x1_0000_2000}, hasNeed: true, ep: epoch{n: 3}, epKnown: true}
	if tok := typical.Token(); len(tok) > 16 {
		t.Errorf("typical PostgreSQL token %q is %d characters", tok, len(tok))
	}
}

// tokBadCase is a token ResumeSession must reject.
type tokBadCase struct {
	name string
	tok  string
}

func tokBadTokens(t *testing.T) []tokBadCase {
	t.Helper()
	pg := tokDecode(t, (&Session{kind: dialectPostgres, need: position{lsn: 0x1_0000_2000}, hasNeed: true, ep: epoch{n: 3}, epKnown: true}).Token())
	with := func(b []byte, i int, v byte) string {
		c := bytes.Clone(b)
		c[i] = v
		return tokEncode(c)
	}
	raw := func(parts ...[]byte) string { return tokEncode(bytes.Join(parts, nil)) }
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	hdr := func(kind, flags byte) []byte { return []byte{tokenVersion, kind, flags} }

	cases := []tokBadCase{
		{"empty", ""},
		{"not base64", "!!!"},
		{"padded base64", tokEncode(pg) + "=="},
		{"standard base64 alphabet", "AQEA+/8"},
		{"whitespace", " " + tokEncode(pg)},
		{"one byte", tokEncode([]byte{tokenVersion})},
		{"two bytes", tokEncode([]byte{tokenVersion, kindPG})},
		{"version 0", with(pg, 0, 0)},
		{"version 2", with(pg, 0, 2)},
		{"version flipped", with(pg, 0, ^pg[0])},
		{"kind 5", with(pg, 1, 5)},
		{"kind 255", with(pg, 1, 255)},
		{"unknown kind without position", raw(hdr(9, 0))},
		{"unknown flag 8", with(pg, 2, pg[2]|8)},
		{"unknown flag 0x80", with(pg, 2, pg[2]|0x80)},
		{"trailing byte", tokEncode(append(bytes.Clone(pg), 0))},
		{"trailing bytes after none", raw(hdr(kindNone, 0), []byte{1, 2})},
		{"oversized", strings.Repeat("A", maxTokenText+1)},
		{"oversized valid prefix", tokEncode(pg) + strings.Repeat("A", maxTokenText)},
		{"epoch with kind none", raw(hdr(kindNone, flagEpoch), uv(3), uv(0))},
		{"epoch with kind none, nothing after", raw(hdr(kindNone, flagEpoch))},
		{"epoch with kind window", raw(hdr(kindWindow, flagEpoch), uv(3), uv(0), binary.AppendVarint(nil, 1))},
		{"epoch id over 64 bytes", raw(hdr(kindPG, flagEpoch), uv(1), uv(65), bytes.Repeat([]byte("a"), 65), uv(1))},
		{"epoch truncated", raw(hdr(kindPG, flagEpoch), uv(1), uv(10), []byte("abc"))},
		{"pg without lsn", raw(hdr(kindPG, 0))},
		{"pg lsn overflows", raw(hdr(kindPG, 0), bytes.Repeat([]byte{0xff}, 10), []byte{0x7f})},
		{"window without time", raw(hdr(kindWindow, 0))},
		{"window varint overflows", raw(hdr(kindWindow, 0), bytes.Repeat([]byte{0xff}, 11))},
		{"gtid over 4096 bytes", raw(hdr(kindMariaDB, 0), uv(maxGTIDText+1), []byte("0-1-1"), bytes.Repeat([]byte(" "), maxGTIDText+1-5))},
		{"gtid length huge", raw(hdr(kindMySQL, 0), uv(1<<62), []byte("x"))},
		{"gtid length beyond data", raw(hdr(kindMariaDB, 0), uv(20), []byte("0-1-1"))},
		{"gtid unreadable mariadb", raw(hdr(kindMariaDB, 0), uv(5), []byte("x-y-z"))},
		{"gtid unreadable mysql", raw(hdr(kindMySQL, 0), uv(uint64(len(tokMariaText))), []byte(tokMariaText))},
		{"mariadb position as mysql", with(tokDecode(t, (&Session{kind: dialectMariaDB, need: tokMustPosition(t, dialectMariaDB, tokMariaText), hasNeed: true}).Token()), 1, kindMySQL)},
		{"signed but too short for a MAC", raw(hdr(kindNone, flagSigned), make([]byte, macSize-1))},
	}
	// A signed MariaDB token truncated at every length, in bytes and in
	// characters, and with bytes appended.
	signed := &Session{kind: dialectMariaDB, need: tokMustPosition(t, dialectMariaDB, tokMariaText), hasNeed: true, ep: epoch{n: 7}, epKnown: true, key: []byte("key")}
	tok := signed.Token()
	b := tokDecode(t, tok)
	for n := range len(b) {
		cases = append(cases, tokBadCase{"signed mariadb truncated to bytes " + strconv.Itoa(n), tokEncode(b[:n])})
	}
	for n := range len(tok) {
		cases = append(cases, tokBadCase{"signed mariadb truncated to characters " + strconv.Itoa(n), tok[:n]})
	}
	for _, extra := range [][]byte{{0}, {0xff}, []byte("trailing"), make([]byte, macSize)} {
		cases = append(cases, tokBadCase{"signed mariadb with trailing " + strconv.Itoa(len(extra)), tokEncode(append(bytes.Clone(b), extra...))})
	}
	unsignedB := tokDecode(t, (&Session{kind: dialectMariaDB, need: tokMustPosition(t, dialectMariaDB, tokMariaText), hasNeed: true}).Token())
	for n := range len(unsignedB) {
		cases = append(cases, tokBadCase{"unsigned mariadb truncated to bytes " + strconv.Itoa(n), tokEncode(unsignedB[:n])})
	}
	return cases
}

func TestResumeSessionRejectsMalformed(t *testing.T) {
	for _, c := range tokBadTokens(t) {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s: ResumeSession(%q) panicked: %v", c.name, c.tok, p)
				}
			}()
			s, err := ResumeSession(c.tok)
			if err == nil {
				t.Errorf("%s: ResumeSession(%q) accepted it: %+v", c.name, c.tok, s)
				return
			}
			if !errors.Is(err, ErrBadToken) {
				t.Errorf("%s: ResumeSession(%q) = %v, not wrapping ErrBadToken", c.name, c.tok, err)
			}
			if s != nil {
				t.Errorf("%s: ResumeSession returned a session with its error", c.name)
			}
		}()
	}
}

func TestResumeSessionLimits(t *testing.T) {
	// A GTID field of exactly maxGTIDText bytes is accepted.
	text := "0-1-1" + strings.Repeat(" ", maxGTIDText-5)
	b := append([]byte{tokenVersion, kindMariaDB, 0}, binary.AppendUvarint(nil, uint64(len(text)))...)
	b = append(b, text...)
	tok := tokEncode(b)
	if len(tok) > maxTokenText {
		t.Fatalf("test token is %d characters", len(tok))
	}
	s, err := ResumeSession(tok)
	if err != nil {
		t.Fatalf("GTID field of %d bytes: %v", len(text), err)
	}
	if want := []mariaGTID{{0, 1, 1}}; !reflect.DeepEqual(s.need.maria, want) {
		t.Errorf("maria = %v, want %v", s.need.maria, want)
	}
	// An epoch id of 64 bytes is accepted.
	id := strings.Repeat("e", 64)
	b = []byte{tokenVersion, kindMySQL, flagEpoch, 0, 64}
	b = append(b, id...)
	b = append(b, 0) // empty GTID set
	s, err = ResumeSession(tokEncode(b))
	if err != nil {
		t.Fatalf("epoch id of 64 bytes: %v", err)
	}
	if s.ep.id != id || !s.epKnown || s.kind != dialectMySQL || !s.hasNeed {
		t.Errorf("resumed %+v", s)
	}
	// A token of exactly maxTokenText characters is not rejected for its
	// length.
	_, err = ResumeSession(strings.Repeat("A", maxTokenText))
	if err == nil || strings.Contains(err.Error(), "characters") {
		t.Errorf("token of %d characters: %v, want rejected for its content only", maxTokenText, err)
	}
}

func TestTokenSignature(t *testing.T) {
	key, other := []byte("the right key"), []byte("another key")
	for _, c := range tokCases(t, key) {
		t.Run(c.name, func(t *testing.T) {
			tok := c.s.Token()
			b := tokDecode(t, tok)
			if b[2]&flagSigned == 0 {
				t.Fatalf("token %x of a session with a key is not flagged signed", b)
			}
			unsigned := tokWithoutKey(c.s)
			ub := tokDecode(t, unsigned.Token())
			if len(b) != len(ub)+macSize {
				t.Fatalf("signed token is %d bytes, unsigned %d: want a %d-byte MAC", len(b), len(ub), macSize)
			}
			wantPayload := bytes.Clone(ub)
			wantPayload[2] |= flagSigned
			if !bytes.Equal(b[:len(ub)], wantPayload) {
				t.Errorf("signed payload %x, want %x", b[:len(ub)], wantPayload)
			}
			r, err := ResumeSession(tok)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(r.resumed.payload, b[:len(b)-macSize]) || !bytes.Equal(r.resumed.mac, b[len(b)-macSize:]) {
				t.Fatalf("resumed payload %x mac %x, want %x %x", r.resumed.payload, r.resumed.mac, b[:len(b)-macSize], b[len(b)-macSize:])
			}
			if len(r.resumed.mac) != macSize {
				t.Errorf("MAC of %d bytes", len(r.resumed.mac))
			}
			if !hmac.Equal(r.resumed.mac, tokenMAC(key, r.resumed.payload)) {
				t.Error("MAC does not match the signing key")
			}
			if hmac.Equal(r.resumed.mac, tokenMAC(other, r.resumed.payload)) {
				t.Error("MAC matches another key")
			}
			if hmac.Equal(r.resumed.mac, tokenMAC(nil, r.resumed.payload)) {
				t.Error("MAC matches an empty key")
			}
			if r.key != nil {
				t.Error("the resumed session learned a key from the token")
			}
			// The unsigned token resumes with no MAC.
			ur, err := ResumeSession(unsigned.Token())
			if err != nil {
				t.Fatal(err)
			}
			if ur.resumed.mac != nil || !bytes.Equal(ur.resumed.payload, ub) {
				t.Errorf("unsigned resumed payload %x mac %x, want %x and none", ur.resumed.payload, ur.resumed.mac, ub)
			}

			// Every single-bit change to the token's bytes is rejected,
			// either when parsed or by its MAC.
			for i := range len(b) {
				for bit := range 8 {
					f := bytes.Clone(b)
					f[i] ^= 1 << bit
					r, err := ResumeSession(tokEncode(f))
					if err != nil {
						if !errors.Is(err, ErrBadToken) {
							t.Errorf("byte %d bit %d: %v, not wrapping ErrBadToken", i, bit, err)
						}
						continue
					}
					if r.resumed.mac != nil && hmac.Equal(r.resumed.mac, tokenMAC(key, r.resumed.payload)) {
						t.Errorf("byte %d bit %d flipped: token %x still verifies", i, bit, f)
					}
				}
			}
			// The same for the token's characters: a flip that still
			// verifies may only be one that decodes to the same bytes (the
			// unused low bits of the last base64 character).
			for i := range len(tok) {
				for bit := range 8 {
					f := []byte(tok)
					f[i] ^= 1 << bit
					r, err := ResumeSession(string(f))
					if err != nil {
						continue
					}
					if r.resumed.mac != nil && hmac.Equal(r.resumed.mac, tokenMAC(key, r.resumed.payload)) {
						if fb, _ := base64.RawURLEncoding.DecodeString(string(f)); !bytes.Equal(fb, b) {
							t.Errorf("character %d bit %d flipped: %q still verifies", i, bit, f)
						}
					}
				}
			}
		})
	}
}

// tokSeeds returns tokens of every kind, signed and unsigned, and garbage.
func tokSeeds(t testing.TB) []string {
	var seeds []string
	for _, key := range [][]byte{nil, []byte("fuzz key")} {
		for _, c := range tokCases(t, key) {
			seeds = append(seeds, c.s.Token())
		}
	}
	seeds = append(seeds,
		"", "!!!", "AQ", "AQAA", "AQEA", "AQIA", "AQMA", "AQQA", "AQUA", "AQAC", "AQAE", "AQAH",
		strings.Repeat("A", 100), strings.Repeat("_", 64), "AQIAgCA", "AQQA____________AQ",
	)
	return seeds
}

func FuzzResumeSession(f *testing.F) {
	for _, s := range tokSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		s, err := ResumeSession(tok)
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("ResumeSession(%q) = %v, not wrapping ErrBadToken", tok, err)
			}
			if s != nil {
				t.Fatalf("ResumeSession(%q) returned a session with error %v", tok, err)
			}
			return
		}
		if s == nil || s.resumed == nil {
			t.Fatalf("ResumeSession(%q) = %v, nil error", tok, s)
		}
		tok2 := s.Token()
		b, derr := base64.RawURLEncoding.DecodeString(tok)
		if derr != nil {
			t.Fatalf("ResumeSession accepted %q that does not decode: %v", tok, derr)
		}
		if b[2]&flagSigned == 0 {
			s2, err := ResumeSession(tok2)
			if err != nil {
				t.Fatalf("ResumeSession(%q) ok, but its Token %q: %v", tok, tok2, err)
			}
			if tok3 := s2.Token(); tok3 != tok2 {
				t.Fatalf("Token not stable: %q -> %q -> %q", tok, tok2, tok3)
			}
		}
	})
}

// An unsigned token of a dialect without positions carries the time of
// the session's last write; one from the future (a forgery) would send
// every read of the session to the primary. It is rejected.
func TestFutureWindowTokenRejected(t *testing.T) {
	c := newCluster(t, 1, WithDialect("generic"), WithNodeNames("p", "r1"))
	forged := (&Session{lastWrite: time.Now().Add(time.Hour)}).Token()
	s, err := ResumeSession(forged)
	if err != nil {
		t.Fatalf("ResumeSession: %v", err)
	}
	if got := served(t, WithSession(context.Background(), s), c.db, "SELECT 1"); got != "r1" {
		t.Errorf("read of a session with a last write an hour ahead served by %s, want r1", got)
	}
	if n := c.db.Stats().TokensRejected; n != 1 {
		t.Errorf("TokensRejected = %d, want 1", n)
	}
	// A token written a moment ago (clocks a little apart) is kept.
	recent := (&Session{lastWrite: time.Now().Add(500 * time.Millisecond)}).Token()
	s, err = ResumeSession(recent)
	if err != nil {
		t.Fatal(err)
	}
	if got := served(t, WithSession(context.Background(), s), c.db, "SELECT 1"); got != "p" {
		t.Errorf("read right after a session's write served by %s, want the primary", got)
	}
}
