package rwsplit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Session tokens. A token is the URL-safe base64 (no padding) of:
//
//	version (1) | kind | flags | [epoch] | position | [MAC]
//
// kind: 0 no position, 1 PostgreSQL LSN, 2 MariaDB GTID position, 3 MySQL
// GTID set, 4 time of the last write (dialects without positions).
// flags: 1 the session was pending or unresolved (the receiver resolves
// the primary's position at its first read), 2 an epoch follows, 4 signed.
// epoch: uvarint number (timeline, server_id), uvarint length and text
// (server_uuid). position: uvarint LSN; uvarint length and GTID text; or
// varint Unix milliseconds. MAC: the first 16 bytes of
// HMAC-SHA256(key, "rwsplit session v1" | everything before it).

const (
	tokenVersion = 1

	kindNone    = 0
	kindPG      = 1
	kindMariaDB = 2
	kindMySQL   = 3
	kindWindow  = 4

	flagUnsure = 1
	flagEpoch  = 2
	flagSigned = 4

	macSize      = 16
	maxClockSkew = 2 * time.Second // how far ahead of this process's clock a token's last write may be
	maxTokenText = 8192            // characters of a token accepted by ResumeSession
	maxGTIDText  = 4096
	maxEpochID   = 64
)

var macContext = []byte("rwsplit session v1")

// ErrBadToken is returned, wrapped with the reason, by [ResumeSession] for
// a token it cannot read.
var ErrBadToken = errors.New("rwsplit: bad session token")

func badToken(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadToken, fmt.Sprintf(format, args...))
}

// resumedToken is a token's signed part and signature, kept until a DB
// checks them.
type resumedToken struct {
	payload []byte
	mac     []byte // nil: unsigned
}

func tokenMAC(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(macContext)
	m.Write(payload)
	return m.Sum(nil)[:macSize]
}

// Token returns the session's state as a compact string that is safe in
// URLs, cookies and headers, for [ResumeSession] in another request or
// process. It carries the position the session must see, the primary's
// epoch, and whether a write was still unresolved; it is signed when the
// DB the session wrote through has a key ([WithSessionKey]). A token never
// contains credentials or data, only replication positions.
func (s *Session) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := make([]byte, 3, 64)
	b[0] = tokenVersion
	if s.pending > 0 || s.resolve || s.rebase {
		b[2] |= flagUnsure
	}
	tooBig := s.hasNeed && (len(s.need.gtid) > maxGTIDText || len(s.ep.id) > maxEpochID)
	if tooBig {
		// A GTID set too long for a cookie: the receiver reads the
		// primary's position at its first read instead.
		b[2] |= flagUnsure
	}
	switch {
	case s.hasNeed && s.kind.hasPositions() && !tooBig:
		b[1] = s.kind.tokenKind
		if s.epKnown {
			b[2] |= flagEpoch
			b = binary.AppendUvarint(b, s.ep.n)
			b = binary.AppendUvarint(b, uint64(len(s.ep.id)))
			b = append(b, s.ep.id...)
		}
		if s.kind.tokenKind == kindPG { // an LSN, else GTID text
			b = binary.AppendUvarint(b, s.need.lsn)
		} else {
			b = binary.AppendUvarint(b, uint64(len(s.need.gtid)))
			b = append(b, s.need.gtid...)
		}
	case !s.lastWrite.IsZero():
		b[1] = kindWindow
		b = binary.AppendVarint(b, s.lastWrite.UnixMilli())
	}
	if s.key != nil {
		b[2] |= flagSigned
		b = append(b, tokenMAC(s.key, b)...)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// ResumeSession returns the session a token from [Session.Token] describes.
// It returns an error wrapping [ErrBadToken], and never panics, for an
// empty, malformed, truncated, oversized or unknown-version token.
//
// Tokens come back from clients and are not trusted: the first DB the
// session is used with checks its signature when the DB has a key
// ([WithSessionKey]), or else that its position is not beyond the
// primary's; a token that fails the check is dropped (the session starts
// empty) and counted in [Stats].TokensRejected, so that a forged token
// cannot pin reads to the primary. A token from before a failover (another
// epoch) makes the session re-read the new primary's position once.
func ResumeSession(token string) (*Session, error) {
	if token == "" {
		return nil, badToken("empty")
	}
	if len(token) > maxTokenText {
		return nil, badToken("%d characters, more than %d", len(token), maxTokenText)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil {
		return nil, badToken("not URL-safe base64")
	}
	if len(b) < 3 {
		return nil, badToken("truncated")
	}
	if b[0] != tokenVersion {
		return nil, badToken("version %d, want %d", b[0], tokenVersion)
	}
	kind, flags := b[1], b[2]
	if flags&^(flagUnsure|flagEpoch|flagSigned) != 0 {
		return nil, badToken("unknown flags %#x", flags)
	}
	body := b
	var mac []byte
	if flags&flagSigned != 0 {
		if len(b) < 3+macSize {
			return nil, badToken("truncated")
		}
		body, mac = b[:len(b)-macSize], b[len(b)-macSize:]
	}
	r := tokenReader{b: body[3:]}
	s := &Session{}
	if flags&flagEpoch != 0 {
		if kind == kindNone || kind == kindWindow {
			return nil, badToken("an epoch without a position")
		}
		s.ep.n = r.uvarint()
		s.ep.id = string(r.bytes(maxEpochID))
		s.epKnown = true
	}
	switch kind {
	case kindNone:
	case kindPG:
		s.kind, s.need, s.hasNeed = dialectOfKind(kindPG), position{lsn: r.uvarint()}, true
	case kindMariaDB, kindMySQL:
		text := string(r.bytes(maxGTIDText))
		if r.err == nil {
			d := dialectOfKind(kind)
			p, ok := newPosition(d, text)
			if !ok {
				return nil, badToken("unreadable GTID position")
			}
			s.kind, s.need, s.hasNeed = d, p, true
		}
	case kindWindow:
		ms := r.varint()
		if r.err == nil {
			s.lastWrite = time.UnixMilli(ms)
		}
	default:
		return nil, badToken("unknown kind %d", kind)
	}
	if r.err != nil {
		return nil, badToken("%v", r.err)
	}
	if len(r.b) != 0 {
		return nil, badToken("%d bytes of trailing data", len(r.b))
	}
	if flags&flagUnsure != 0 {
		s.resolve = true
	}
	s.resumed = &resumedToken{payload: body, mac: mac}
	return s, nil
}

type tokenReader struct {
	b   []byte
	err error
}

func (r *tokenReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *tokenReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *tokenReader) bytes(limit int) []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(limit) {
		r.err = fmt.Errorf("a field of %d bytes, more than %d", n, limit)
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errors.New("truncated")
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// adopt checks, once, a session resumed from a token before its first use
// with db: the signature when db has a key; the dialect; and, for an
// unsigned token, that its position is not beyond the primary's. A token
// of another epoch makes the session take the primary's position at its
// next read.
func (db *DB) adopt(ctx context.Context, s *Session) {
	s.mu.Lock()
	rt := s.resumed
	s.resumed = nil
	if rt == nil {
		s.mu.Unlock()
		return
	}
	key := db.cfg.sessionKey
	if key != nil {
		if rt.mac == nil || !hmac.Equal(rt.mac, tokenMAC(key, rt.payload)) {
			db.rejectToken(s, "signature does not match this DB's key")
			s.mu.Unlock()
			return
		}
		s.key = key
	}
	if !s.hasNeed && s.lastWrite.After(time.Now().Add(maxClockSkew)) {
		// A last write later than now, beyond what clocks apart explain:
		// it would send the session's reads to the primary until then.
		db.rejectToken(s, "last write in the future")
		s.mu.Unlock()
		return
	}
	d := db.positions.Load()
	if s.hasNeed && db.positions.known.Load() && s.kind != d {
		db.rejectToken(s, fmt.Sprintf("a %s position, but the DB is %s", s.kind.name, d.name))
		s.mu.Unlock()
		return
	}
	if !s.hasNeed {
		s.mu.Unlock()
		return
	}
	need, ep, epKnown := s.need, s.ep, s.epKnown
	s.mu.Unlock()

	p := db.primary.Load()
	np := p.pos.Load()
	if epKnown && np != nil && np.epochKnown && np.epoch != ep {
		s.mu.Lock()
		s.rebase, s.resolve = true, true
		s.mu.Unlock()
		return
	}
	if key != nil {
		return
	}
	if np != nil && d.historyCovers(np.pos, need) {
		return
	}
	// Beyond the primary's cached position: a write newer than the last
	// probe, or a forgery. Ask the primary.
	pos, pep, pepKnown, err := db.primaryPosition(ctx, p)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil:
		s.resolve = true // cannot tell: the next read resolves
	case epKnown && pepKnown && pep != ep:
		s.rebase, s.resolve = true, true
	case !d.historyCovers(pos, need):
		db.rejectToken(s, "position beyond the primary's")
	}
}

// rejectToken empties a session whose token was not accepted; s.mu held.
func (db *DB) rejectToken(s *Session, why string) {
	s.kind, s.need, s.hasNeed = nil, position{}, false
	s.ep, s.epKnown = epoch{}, false
	s.resolve, s.rebase = false, false
	s.dropPendingLocked()
	s.lastWrite = time.Time{}
	s.node = nil
	db.counts.tokensRejected.Add(1)
	db.cfg.logger.Warn("rwsplit: session token rejected; the session starts empty", "reason", why)
	db.emit(TokenRejected{Reason: why})
}
