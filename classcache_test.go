package rwsplit

import (
	"fmt"
	"testing"

	"github.com/rwsplit/rwsplit/internal/sqlclass"
)

func TestClassCacheAgreesWithClassifier(t *testing.T) {
	var c classCache
	c.init()
	queries := []string{
		"SELECT 1", "INSERT INTO t VALUES (1) RETURNING id", "SELECT * FROM t FOR UPDATE",
		"SELECT nextval('s')", "WITH x AS (SELECT 1) SELECT * FROM x", "",
	}
	// More statements than slots, so that entries are replaced.
	for i := range 3 * classCacheSize {
		queries = append(queries, fmt.Sprintf("SELECT %d", i), fmt.Sprintf("UPDATE t SET v = %d", i))
	}
	for round := range 3 {
		for _, q := range queries {
			if got, want := c.isRead(sqlclass.Postgres, q), sqlclass.IsRead(sqlclass.Postgres, q); got != want {
				t.Fatalf("round %d: cached isRead(%q) = %v, classifier says %v", round, q, got, want)
			}
		}
	}
}

func TestClassCacheAllocatesNothing(t *testing.T) {
	var c classCache
	c.init()
	i := 0
	queries := []string{"SELECT id FROM users WHERE id = $1", fmt.Sprintf("SELECT %d", 42)}
	if n := testing.AllocsPerRun(1000, func() { c.isRead(sqlclass.Postgres, queries[i%2]); i++ }); n != 0 {
		t.Errorf("isRead allocates %v times per call", n)
	}
}

func BenchmarkClassCache(b *testing.B) {
	var c classCache
	c.init()
	const q = "SELECT id, name FROM users WHERE id = $1"
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.isRead(sqlclass.Postgres, q)
		}
	})
	b.Run("classifier", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sqlclass.IsRead(sqlclass.Postgres, q)
		}
	})
}
