package rwsplit

import (
	"context"
	"crypto/hmac"
	"testing"
	"time"
)

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

// A read that a replica refuses as a write, and that rwsplit re-runs on
// the primary, did write there: the session must see it.
func TestSessionSeesReadRejectedAsWrite(t *testing.T) {
	c := newCluster(t, 1)
	c.replicas[0].SetReadOnly(true)
	s := NewSession()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if got := served(t, WithSession(ctx, s), c.db, "SELECT write_audit_row()"); got != "p" {
		t.Fatalf("rejected read ended on %s, want the primary", got)
	}
	if unsure, pending, _, _ := rywUnsure(s); !unsure || pending != 1 {
		t.Errorf("after a read that wrote on the primary: session unsure %v, pending %d; want its write pending", unsure, pending)
	}
}

// Writes whose commit rwsplit cannot see, made one after another with one
// long-lived context, hold one callback on it, not one each; WritesDone
// releases it, so that the context's end later costs no resolution.
func TestPendingWritesShareOneCallbackPerContext(t *testing.T) {
	c := newCluster(t, 1)
	s := NewSession()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sctx := WithSession(ctx, s)
	for range 100 {
		rows, err := c.db.QueryContext(sctx, "INSERT INTO t VALUES (1) RETURNING id")
		if err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	s.mu.Lock()
	pending, callbacks := s.pending, len(s.pendingCtxs)
	s.mu.Unlock()
	if pending != 1 || callbacks != 1 {
		t.Errorf("100 writes on one context: pending %d, callbacks %d; want 1 and 1", pending, callbacks)
	}
	s.WritesDone()
	_, _, _, gen := rywUnsure(s)
	cancel()
	time.Sleep(10 * time.Millisecond) // a callback left registered would run now
	if _, _, _, after := rywUnsure(s); after != gen {
		t.Errorf("the context's end after WritesDone changed the session (generation %d to %d)", gen, after)
	}
}
