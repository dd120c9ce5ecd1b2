package rwsplit

import (
	"hash/maphash"
	"sync/atomic"

	"github.com/rwsplit/rwsplit/internal/sqlclass"
)

// classCache remembers the classifier's verdict on recent statements, so
// that the statements an application sends again and again (with
// placeholders, nearly all of them) are lexed once: a lookup hashes the
// text and reads one word.
//
// Each slot is one atomic word: a 63-bit hash of the statement, under a
// seed drawn at random per DB, and the verdict in the low bit. It holds
// no string, so it allocates nothing and keeps no memory alive, and a
// statement not in it is classified as if there were no cache. Two
// different statements are mistaken for each other only if their 63-bit
// hashes are equal and they meet in the same slot; even then a write sent
// to a replica is refused there (SQLSTATE 25006, MySQL 1290) and re-run on
// the primary.
type classCache struct {
	seed  maphash.Seed
	slots *[classCacheSize]atomic.Uint64 // apart, so that the DB's fields that every call reads share a cache line
}

const (
	classCacheBits = 10
	classCacheSize = 1 << classCacheBits
)

func (c *classCache) init() {
	c.seed = maphash.MakeSeed()
	c.slots = new([classCacheSize]atomic.Uint64)
}

// isRead returns sqlclass.IsRead(d, query), from the cache when it can.
func (c *classCache) isRead(d sqlclass.Dialect, query string) bool {
	return c.get(d, query, sqlclass.IsRead)
}

// changesSession returns sqlclass.ChangesSession(d, query), from the
// cache when it can. A cache answers one question: the routing
// connections keep one of their own for this one.
func (c *classCache) changesSession(d sqlclass.Dialect, query string) bool {
	return c.get(d, query, sqlclass.ChangesSession)
}

// get returns classify(d, query), from the cache when it can.
func (c *classCache) get(d sqlclass.Dialect, query string, classify func(sqlclass.Dialect, string) bool) bool {
	h := maphash.String(c.seed, query) | 2 // never 0 or 1: an empty slot matches nothing
	slot := &c.slots[h>>(64-classCacheBits)]
	if e := slot.Load(); e|1 == h|1 {
		return e&1 == 1
	}
	yes := classify(d, query)
	e := h &^ 1
	if yes {
		e |= 1
	}
	slot.Store(e)
	return yes
}
