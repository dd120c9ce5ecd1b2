package sqlclass

import "testing"

const benchShort = "SELECT id, name FROM users WHERE id = $1"

// benchLong is a reporting query of about 2 KB with CTEs, joins, window
// functions and comments.
const benchLong = `-- monthly revenue report, see REPORTS.md
/* The CTEs below are kept in this order on purpose: the planner inlines
   them, and "paid" must be computed before the refunds are netted out. */
WITH paid AS (
    SELECT o.id, o.user_id, o.item_id, o.qty, o.total, o.created_at,
           date_trunc('month', o.created_at) AS month
      FROM orders o
     WHERE o.status = 'paid'
       AND o.created_at >= $1
       AND o.created_at <  $2
),
refunds AS (
    SELECT r.order_id, sum(r.amount) AS refunded -- partial refunds add up
      FROM refunds r
     WHERE r.created_at >= $1
     GROUP BY r.order_id
),
net AS (
    SELECT p.*, p.total - coalesce(f.refunded, 0) AS net_total
      FROM paid p
      LEFT JOIN refunds f ON f.order_id = p.id
),
per_user AS (
    SELECT n.user_id, n.month,
           count(*) AS orders,
           sum(n.net_total) AS revenue,
           avg(n.net_total) AS avg_order,
           rank() OVER (PARTITION BY n.month ORDER BY sum(n.net_total) DESC) AS rnk
      FROM net n
     GROUP BY n.user_id, n.month
)
SELECT pu.month,
       u.id AS user_id,
       u.name,
       u.email,
       u.country,
       pu.orders,
       round(pu.revenue, 2) AS revenue,
       round(pu.avg_order, 2) AS avg_order,
       pu.rnk,
       (SELECT string_agg(DISTINCT i.title, ', ' ORDER BY i.title)
          FROM net n2
          JOIN items i ON i.id = n2.item_id
         WHERE n2.user_id = pu.user_id AND n2.month = pu.month) AS titles,
       CASE WHEN pu.revenue > 1000 THEN 'gold'
            WHEN pu.revenue > 100  THEN 'silver'
            ELSE 'bronze' END AS tier,
       u.profile->>'lang' AS lang
  FROM per_user pu
  JOIN users u ON u.id = pu.user_id
 WHERE pu.rnk <= $3
   AND u.status <> 'deleted'
   AND NOT EXISTS (SELECT 1 FROM blocked_users b WHERE b.user_id = u.id)
 ORDER BY pu.month DESC, pu.rnk ASC, u.name
 LIMIT 500;`

func BenchmarkClassify(b *testing.B) {
	for _, d := range []Dialect{Postgres, MySQL, Generic} {
		for _, q := range []struct{ name, sql string }{{"short", benchShort}, {"long", benchLong}} {
			b.Run(d.String()+"/"+q.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(q.sql)))
				for b.Loop() {
					if !IsRead(d, q.sql) {
						b.Fatal("not a read")
					}
				}
			})
		}
	}
}

func TestBenchQueriesAreReads(t *testing.T) {
	if len(benchLong) < 1800 || len(benchLong) > 2500 {
		t.Errorf("benchLong is %d bytes, want about 2 KB", len(benchLong))
	}
	for _, d := range []Dialect{Postgres, MySQL, Generic} {
		for _, q := range []string{benchShort, benchLong} {
			if !IsRead(d, q) {
				t.Errorf("%s: %s: %.40q", d, Why(d, q), q)
			}
		}
	}
}

func TestIsReadAllocatesNothing(t *testing.T) {
	queries := []string{benchShort, benchLong}
	for _, c := range corpus {
		queries = append(queries, c.SQL)
	}
	for _, d := range []Dialect{Generic, Postgres, MySQL} {
		allocs := testing.AllocsPerRun(20, func() {
			for _, q := range queries {
				IsRead(d, q)
				_ = Why(d, q)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per run over %d statements, want 0", d, allocs, len(queries))
		}
	}
}
