package sqlclass

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/corpus.json from the table in classify_test.go")

const corpusFile = "testdata/corpus.json"

// corpusCase is one statement of the table test. The table is also stored
// in testdata/corpus.json (see TestCorpusFile), where other tests find it.
type corpusCase struct {
	Dialect string `json:"dialect"` // "postgres", "mysql" or "generic"
	Read    bool   `json:"read"`    // IsRead's answer
	// Run is "pg" for a read that runs on a PostgreSQL 15 hot standby with
	// testdata/pg_fixture.sql, "mysql" for one that runs on a MariaDB 10.11
	// read_only replica with testdata/mysql_fixture.sql, "" otherwise.
	Run string `json:"run"`
	SQL string `json:"sql"`
}

const (
	pg      = "postgres"
	my      = "mysql"
	generic = "generic"
)

var corpus = []corpusCase{
	// ---- PostgreSQL reads that run on a hot standby ----
	{pg, true, "pg", "SELECT 1"},
	{pg, true, "pg", "select id, name from users where id = 1"},
	{pg, true, "pg", "SELECT id, name, email FROM users WHERE status = 'active' ORDER BY id LIMIT 10"},
	{pg, true, "pg", "  \n\t SELECT count(*) FROM orders"},
	{pg, true, "pg", "SeLeCt Id, NaMe FrOm UsErS wHeRe Id = 2"},
	{pg, true, "pg", "-- fetch one user\nSELECT * FROM users WHERE email = 'ada@example.com'"},
	{pg, true, "pg", "/* list items */ SELECT sku, title, price FROM items ORDER BY price DESC"},
	{pg, true, "pg", "/* outer /* nested: insert into users */ still a comment; drop table users */ SELECT 1"},
	{pg, true, "pg", "/*/ odd opener */ SELECT 2"},
	{pg, true, "pg", "((SELECT id FROM users))"},
	{pg, true, "pg", "(SELECT id FROM users) UNION (SELECT user_id FROM orders) ORDER BY 1"},
	{pg, true, "pg", "( /* c */ ( -- c\n SELECT 1 ) )"},
	{pg, true, "pg", "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '7 days') SELECT user_id, sum(total) FROM recent GROUP BY user_id"},
	{pg, true, "pg", "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) SELECT sum(i) FROM n"},
	{pg, true, "pg", "WITH a AS MATERIALIZED (SELECT id FROM users), b AS NOT MATERIALIZED (SELECT user_id FROM orders) SELECT * FROM a JOIN b ON a.id = b.user_id"},
	{pg, true, "pg", "VALUES (1, 'one'), (2, 'two')"},
	{pg, true, "pg", "TABLE users"},
	{pg, true, "pg", "table active_users"},
	{pg, true, "pg", "SHOW search_path"},
	{pg, true, "pg", "SHOW server_version"},
	{pg, true, "pg", "show transaction isolation level"},
	{pg, true, "pg", "EXPLAIN SELECT * FROM users WHERE id = 1"},
	{pg, true, "pg", "EXPLAIN (FORMAT JSON, COSTS OFF) SELECT * FROM orders"},
	{pg, true, "pg", "EXPLAIN VERBOSE SELECT 1"},
	{pg, true, "pg", "EXPLAIN (COSTS OFF) WITH x AS (SELECT 1) SELECT * FROM x"},
	{pg, true, "pg", "SELECT $$update users set name = 'x'$$ AS body"},
	{pg, true, "pg", "SELECT $fn$ DELETE FROM orders; DROP TABLE users $fn$ AS body"},
	{pg, true, "pg", "SELECT $a$ it's $$nested$$ and $b$ not closed $a$"},
	{pg, true, "pg", "SELECT 'insert into users values (1)' AS txt"},
	{pg, true, "pg", "SELECT 'it''s; drop table users' AS txt"},
	{pg, true, "pg", "SELECT E'don\\'t delete me' AS s"},
	{pg, true, "pg", "SELECT e'a\\\\b' AS s, E'\\x41' AS t"},
	{pg, true, "pg", "SELECT U&'d\\0061t\\+000061' AS data"},
	{pg, true, "pg", "SELECT B'1010' AS bits, X'1F' AS hex, N'national' AS n"},
	{pg, true, "pg", "SELECT 'C:\\temp\\' AS path"},
	{pg, true, "pg", "SELECT 'continued '\n'literal; delete from users' AS s"},
	{pg, true, "pg", "SELECT E'escape '  -- comment between\n  '\\'update\\'' AS s"},
	{pg, true, "pg", "SELECT \"update\", \"select\", \"comment\" FROM events"},
	{pg, true, "pg", "SELECT id AS \"delete\", name AS \"drop table\" FROM users"},
	{pg, true, "pg", "SELECT replace(name, 'a', 'b') FROM users"},
	{pg, true, "pg", "SELECT REPLACE (email, '@', ' at ') FROM users"},
	{pg, true, "pg", "SELECT pg_typeof(id) FROM users LIMIT 1"},
	{pg, true, "pg", "SELECT pg_size_pretty(1024::bigint), pg_sleep(0.01)"},
	{pg, true, "pg", "SELECT now(), current_date, current_user, version()"},
	{pg, true, "pg", "SELECT current_setting('search_path')"},
	{pg, true, "pg", "SELECT u.name, o.total FROM users u JOIN orders o ON o.user_id = u.id WHERE o.status = 'paid'"},
	{pg, true, "pg", "SELECT u.name, count(o.id) FROM users u LEFT JOIN orders o ON o.user_id = u.id GROUP BY u.name HAVING count(o.id) > 1"},
	{pg, true, "pg", "SELECT * FROM users WHERE id IN (SELECT user_id FROM orders WHERE total > 10)"},
	{pg, true, "pg", "SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id)"},
	{pg, true, "pg", "SELECT DISTINCT ON (user_id) user_id, created_at FROM orders ORDER BY user_id, created_at DESC"},
	{pg, true, "pg", "SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY created_at) AS rn FROM orders"},
	{pg, true, "pg", "SELECT profile->>'lang' AS lang FROM users WHERE profile @> '{\"lang\": \"en\"}'"},
	{pg, true, "pg", "SELECT jsonb_build_object('id', id, 'name', name) FROM users"},
	{pg, true, "pg", "SELECT '{\"a\": 1}'::jsonb ? 'a' AS has_a"},
	{pg, true, "pg", "SELECT * FROM users WHERE 'dev' = ANY (tags)"},
	{pg, true, "pg", "SELECT unnest(tags) AS tag FROM users"},
	{pg, true, "pg", "SELECT i FROM generate_series(1, 5) AS g(i)"},
	{pg, true, "pg", "SELECT * FROM users ORDER BY id FETCH FIRST 2 ROWS ONLY"},
	{pg, true, "pg", "SELECT * FROM users ORDER BY id OFFSET 1 ROWS FETCH NEXT 1 ROW ONLY"},
	{pg, true, "pg", "SELECT * FROM users FOR READ ONLY"},
	{pg, true, "pg", "SELECT status, count(*) FILTER (WHERE total > 5) FROM orders GROUP BY status"},
	{pg, true, "pg", "SELECT country, status, count(*) FROM users GROUP BY GROUPING SETS ((country), (status))"},
	{pg, true, "pg", "SELECT name FROM users WHERE name ILIKE 'a%' OR name ~ '^L' OR name SIMILAR TO 'G%'"},
	{pg, true, "pg", "SELECT CASE WHEN total > 100 THEN 'big' ELSE 'small' END AS size, coalesce(note, 'none') FROM orders"},
	{pg, true, "pg", "SELECT * FROM users TABLESAMPLE SYSTEM (100)"},
	{pg, true, "pg", "SELECT string_agg(name, ', ' ORDER BY name) FROM users"},
	{pg, true, "pg", "SELECT users.name, c.n FROM users, LATERAL (SELECT count(*) AS n FROM orders o WHERE o.user_id = users.id) c"},
	{pg, true, "pg", "SELECT x FROM (VALUES (1), (2)) AS t(x)"},
	{pg, true, "pg", "SELECT 1;"},
	{pg, true, "pg", "SELECT 1 ; ; -- done"},
	{pg, true, "pg", "SELECT id FROM users -- where id = 1; delete from users"},
	{pg, true, "pg", "SELECT last_value, is_called FROM invoice_seq"},
	{pg, true, "pg", "SELECT * FROM order_totals ORDER BY amount DESC"},
	{pg, true, "pg", "SELECT id FROM users WHERE id = ANY ('{1,2,3}'::bigint[])"},
	{pg, true, "pg", "SELECT to_char(created_at, 'YYYY-MM') AS month, sum(total) FROM orders GROUP BY 1 ORDER BY 1"},
	{pg, true, "pg", "SELECT 1 AS \"SELECT\", 2 AS \"INSERT\""},
	{pg, true, "pg", "SELECT 1 # 2 AS xor"},
	{pg, true, "pg", "SELECT 5 -- minus?\n - 2 AS three"},
	{pg, true, "pg", "SELECT md5('x'), gen_random_uuid() IS NOT NULL, random() < 2"},
	{pg, true, "pg", "SELECT count(*) FROM audit_log"},
	{pg, true, "pg", "SELECT (SELECT max(total) FROM orders) AS top, ARRAY[1, 2, 3] @> ARRAY[2] AS contains"},
	{pg, true, "pg", "SELECT id, payload #>> '{k}' FROM events"},
	{pg, true, "pg", "SELECT date_trunc('day', created_at), count(*) FROM orders GROUP BY 1"},
	{pg, true, "pg", "SELECT name FROM users WHERE name LIKE '%update%' AND email NOT LIKE '%delete%'"},
	{pg, true, "pg", "SELECT users.name AS updated_by, created_at AS inserted_at FROM users"},
	{pg, true, "pg", "SELECT 1 AS a$b, 2 AS x$$y"},
	{pg, true, "pg", "SELECT 2+/* comment inside an operator */3"},
	{pg, true, "pg", "SELECT 1 WHERE 'a' <> 'b' /* multi\nline\ncomment */"},

	// ---- PostgreSQL reads that are not run ----
	{pg, true, "", "SELECT id, name FROM users WHERE id = $1"},
	{pg, true, "", "select * from users where email = $1 and status = $2"},
	{pg, true, "", "SELECT $1::text || $2"},
	{pg, true, "", "SELECT my_report(42)"},
	{pg, true, "", "SELECT sys FROM t"},
	{pg, true, "", "SELECT mysql, x.sys FROM x"},
	{pg, true, "", "SELECT @x FROM t"},
	{pg, true, "", "SELECT 1 /*! insert */"},
	{pg, true, "", "SELECT 1 -- unterminated 'quote"},

	// ---- PostgreSQL statements that are not reads ----
	{pg, false, "", "INSERT INTO users (name, email) VALUES ('x', 'x@example.com')"},
	{pg, false, "", "UPDATE users SET name = 'x' WHERE id = 1"},
	{pg, false, "", "delete from orders where id = 1"},
	{pg, false, "", "MERGE INTO users u USING (VALUES (1)) v(id) ON u.id = v.id WHEN MATCHED THEN DO NOTHING"},
	{pg, false, "", "CREATE TABLE t (id int)"},
	{pg, false, "", "CREATE TABLE copy_of_users AS SELECT * FROM users"},
	{pg, false, "", "DROP TABLE users"},
	{pg, false, "", "ALTER TABLE users ADD COLUMN x int"},
	{pg, false, "", "TRUNCATE users"},
	{pg, false, "", "GRANT SELECT ON users TO PUBLIC"},
	{pg, false, "", "COPY users TO STDOUT"},
	{pg, false, "", "CALL refresh_stats()"},
	{pg, false, "", "DO $$ BEGIN PERFORM 1; END $$"},
	{pg, false, "", "SET search_path = public"},
	{pg, false, "", "RESET ALL"},
	{pg, false, "", "BEGIN"},
	{pg, false, "", "START TRANSACTION READ ONLY"},
	{pg, false, "", "COMMIT"},
	{pg, false, "", "VACUUM ANALYZE users"},
	{pg, false, "", "REFRESH MATERIALIZED VIEW CONCURRENTLY mv"},
	{pg, false, "", "LISTEN jobs"},
	{pg, false, "", "NOTIFY jobs, 'x'"},
	{pg, false, "", "PREPARE q AS SELECT 1"},
	{pg, false, "", "EXECUTE q"},
	{pg, false, "", "DISCARD ALL"},
	{pg, false, "", "LOCK TABLE users IN ACCESS EXCLUSIVE MODE"},
	{pg, false, "", "DECLARE c CURSOR FOR SELECT * FROM users"},
	{pg, false, "", "FETCH NEXT FROM c"},
	{pg, false, "", "COMMENT ON TABLE users IS 'people'"},
	{pg, false, "", "REASSIGN OWNED BY app TO postgres"},
	{pg, false, "", "-- a comment\n/* and another */ UPDATE users SET status = 'x'"},
	{pg, false, "", "(UPDATE users SET status = 'x')"},
	// Locking clauses.
	{pg, false, "", "SELECT * FROM users WHERE id = 1 FOR UPDATE"},
	{pg, false, "", "select * from users for no key update"},
	{pg, false, "", "SELECT * FROM users FOR SHARE"},
	{pg, false, "", "SELECT * FROM users FOR KEY SHARE"},
	{pg, false, "", "SELECT * FROM orders FOR UPDATE SKIP LOCKED LIMIT 1"},
	{pg, false, "", "SELECT * FROM orders o JOIN users u ON u.id = o.user_id FOR UPDATE OF o NOWAIT"},
	{pg, false, "", "SELECT * FROM users FOR /* comment */ UPDATE"},
	// SELECT INTO, data-modifying CTEs, EXPLAIN ANALYZE.
	{pg, false, "", "SELECT * INTO new_users FROM users"},
	{pg, false, "", "SELECT id INTO TEMP TABLE t FROM users"},
	{pg, false, "", "WITH d AS (DELETE FROM orders WHERE status = 'x' RETURNING *) SELECT count(*) FROM d"},
	{pg, false, "", "WITH i AS (INSERT INTO audit_log (msg) VALUES ('x') RETURNING id) SELECT id FROM i"},
	{pg, false, "", "WITH u AS (UPDATE users SET status = 'x' RETURNING id) SELECT * FROM u"},
	{pg, false, "", "WITH m AS (MERGE INTO users USING items ON false WHEN NOT MATCHED THEN DO NOTHING) SELECT 1"},
	{pg, false, "", "EXPLAIN ANALYZE SELECT * FROM users"},
	{pg, false, "", "EXPLAIN (ANALYZE, BUFFERS) SELECT 1"},
	{pg, false, "", "EXPLAIN ANALYSE SELECT 1"},
	{pg, false, "", "EXPLAIN DELETE FROM users"},
	// Side-effecting and session functions.
	{pg, false, "", "SELECT nextval('invoice_seq')"},
	{pg, false, "", "SELECT NEXTVAL ('invoice_seq')"},
	{pg, false, "", "SELECT nextval/* comment */('invoice_seq')"},
	{pg, false, "", "SELECT \"nextval\"('invoice_seq')"},
	{pg, false, "", "SELECT public.setval('invoice_seq', 1)"},
	{pg, false, "", "SELECT currval('invoice_seq'), lastval()"},
	{pg, false, "", "SELECT pg_catalog.nextval('invoice_seq')"},
	{pg, false, "", "SELECT pg_advisory_lock(42)"},
	{pg, false, "", "SELECT pg_try_advisory_xact_lock_shared(42)"},
	{pg, false, "", "SELECT pg_advisory_unlock_all()"},
	{pg, false, "", "SELECT pg_notify('jobs', 'x')"},
	{pg, false, "", "SELECT set_config('search_path', 'x', false)"},
	{pg, false, "", "SELECT txid_current()"},
	{pg, false, "", "SELECT pg_current_xact_id()"},
	{pg, false, "", "SELECT pg_current_wal_lsn()"},
	{pg, false, "", "SELECT pg_switch_wal()"},
	{pg, false, "", "SELECT pg_terminate_backend(pid) FROM my_sessions"},
	{pg, false, "", "SELECT pg_cancel_backend(123)"},
	{pg, false, "", "SELECT pg_reload_conf()"},
	{pg, false, "", "SELECT pg_stat_reset()"},
	{pg, false, "", "SELECT pg_stat_reset_single_table_counters(16384)"},
	{pg, false, "", "SELECT lo_create(0)"},
	{pg, false, "", "SELECT lo_unlink(16400)"},
	{pg, false, "", "SELECT dblink_exec('dbname=app', 'DELETE FROM t')"},
	{pg, false, "", "SELECT pg_create_logical_replication_slot('s', 'pgoutput')"},
	{pg, false, "", "SELECT pg_drop_replication_slot('s')"},
	{pg, false, "", "SELECT pg_replication_origin_create('origin')"},
	{pg, false, "", "SELECT pg_logical_emit_message(true, 'p', 'x')"},
	{pg, false, "", "SELECT pg_promote()"},
	// Catalog reads.
	{pg, false, "", "SELECT * FROM information_schema.tables WHERE table_schema = 'public'"},
	{pg, false, "", "SELECT column_name FROM INFORMATION_SCHEMA.COLUMNS"},
	{pg, false, "", "SELECT relname FROM pg_catalog.pg_class"},
	{pg, false, "", "SELECT relname FROM pg_class WHERE relkind = 'r'"},
	{pg, false, "", "SELECT * FROM pg_stat_activity"},
	{pg, false, "", "SELECT tablename FROM PG_TABLES WHERE schemaname = 'public'"},
	{pg, false, "", "SELECT * FROM \"pg_catalog\".\"pg_namespace\""},
	{pg, false, "", "SELECT 'users'::regclass::oid"},
	{pg, false, "", "SELECT to_regclass('public.schema_migrations')"},
	{pg, false, "", "TABLE pg_settings"},
	{pg, false, "", "SELECT * FROM users u JOIN pg_locks l ON l.pid = u.id"},
	// Several statements.
	{pg, false, "", "SELECT 1; SELECT 2"},
	{pg, false, "", "SELECT 1; DROP TABLE users"},
	{pg, false, "", "SELECT 1;/* comment */ DELETE FROM users"},
	{pg, false, "", "SELECT 1;;\nSELECT 2"},
	{pg, false, "", "SELECT 'x\\' , '; DELETE FROM users; -- '"},
	{pg, false, "", "SELECT 'a\\'; DELETE FROM users; --'"},
	// What cannot be lexed, and empty statements.
	{pg, false, "", "SELECT 'unterminated"},
	{pg, false, "", "SELECT \"unterminated"},
	{pg, false, "", "SELECT $$unterminated"},
	{pg, false, "", "SELECT $a$ closed by another tag $b$"},
	{pg, false, "", "SELECT E'escaped quote at the end\\'"},
	{pg, false, "", "SELECT 1 /* unterminated"},
	{pg, false, "", "/* outer /* nested */ only one closed SELECT 1"},
	{pg, false, "", "SELECT U&\"d\\0061t\\0061\" FROM t"},
	{pg, false, "", ""},
	{pg, false, "", "   \n\t  "},
	{pg, false, "", "-- nothing but a comment"},
	{pg, false, "", "/* nothing */ -- at all"},
	{pg, false, "", ";"},
	{pg, false, "", "((("},
	{pg, false, "", "'SELECT 1'"},
	// Keywords as unquoted names, and keywords in PostgreSQL's code that
	// MySQL would take as a comment.
	{pg, false, "", "SELECT update FROM events"},
	{pg, false, "", "SELECT id, owner, start FROM jobs"},
	{pg, false, "", "SELECT 1 # delete"},
	{pg, false, "", "SELECT `update` FROM events"},

	// ---- MariaDB reads that run on a read_only replica ----
	{my, true, "mysql", "SELECT 1"},
	{my, true, "mysql", "SELECT id, name FROM users WHERE id = 1"},
	{my, true, "mysql", "select `id`, `name` from `users` where `status` = 'active'"},
	{my, true, "mysql", "SELECT `update`, `select`, `comment` FROM events"},
	{my, true, "mysql", "SELECT `users`.`name` AS `delete` FROM `users`"},
	{my, true, "mysql", "SELECT 'drop table users' AS s"},
	{my, true, "mysql", "SELECT \"insert into users\" AS s"},
	{my, true, "mysql", "SELECT 'it\\'s' AS s, 'don''t' AS t"},
	{my, true, "mysql", "SELECT 'a''b' AS s, \"c\"\"d\" AS t, \"it's\" AS u"},
	{my, true, "mysql", "SELECT 'a\\\\b' AS backslash"},
	{my, true, "mysql", "SELECT 1 # delete from users"},
	{my, true, "mysql", "# leading hash comment\nSELECT 2"},
	{my, true, "mysql", "SELECT 1 -- drop table users"},
	{my, true, "mysql", "SELECT 1 --\tdrop table users"},
	{my, true, "mysql", "SELECT 1--1 AS two"},
	{my, true, "mysql", "SELECT 1 /* insert into users */ AS one"},
	{my, true, "mysql", "/* a /* b */ SELECT 3"},
	{my, true, "mysql", "SELECT /*+ MAX_EXECUTION_TIME(1000) */ id FROM users"},
	{my, true, "mysql", "SELECT /*!40001 SQL_NO_CACHE */ id FROM users"},
	{my, true, "mysql", "SELECT /*M!100100 1 + */ 1 AS two"},
	{my, true, "mysql", "SELECT 1 /*! + 1 */ AS two"},
	{my, true, "mysql", "SELECT JSON_EXTRACT(profile, '$.lang') AS lang FROM users"},
	{my, true, "mysql", "SELECT JSON_VALUE(attrs, '$.color') FROM items"},
	{my, true, "mysql", "SELECT JSON_OBJECT('id', id, 'name', name) FROM users"},
	{my, true, "mysql", "SELECT REPLACE(name, 'a', 'b') FROM users"},
	{my, true, "mysql", "SELECT replace (email, '@', ' at ') FROM users"},
	{my, true, "mysql", "SELECT @@version, @@session.time_zone"},
	{my, true, "mysql", "VALUES (1, 'one'), (2, 'two')"},
	{my, true, "mysql", "EXPLAIN SELECT * FROM users WHERE id = 1"},
	{my, true, "mysql", "EXPLAIN FORMAT=JSON SELECT * FROM orders"},
	{my, true, "mysql", "EXPLAIN EXTENDED SELECT 1"},
	{my, true, "mysql", "WITH recent AS (SELECT * FROM orders WHERE created_at > NOW() - INTERVAL 7 DAY) SELECT user_id, SUM(total) FROM recent GROUP BY user_id"},
	{my, true, "mysql", "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) SELECT SUM(i) FROM n"},
	{my, true, "mysql", "SELECT id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY created_at) AS rn FROM orders"},
	{my, true, "mysql", "SELECT u.name, o.total FROM users u JOIN orders o ON o.user_id = u.id WHERE o.status = 'paid'"},
	{my, true, "mysql", "SELECT u.name, COUNT(o.id) FROM users u LEFT JOIN orders o ON o.user_id = u.id GROUP BY u.name HAVING COUNT(o.id) > 1"},
	{my, true, "mysql", "SELECT * FROM users WHERE id IN (SELECT user_id FROM orders)"},
	{my, true, "mysql", "SELECT CONCAT(name, ' <', email, '>') FROM users"},
	{my, true, "mysql", "SELECT CAST(price AS CHAR) AS p, CONVERT(title USING utf8mb4) AS t FROM items"},
	{my, true, "mysql", "SELECT * FROM items ORDER BY price DESC LIMIT 5 OFFSET 0"},
	{my, true, "mysql", "SELECT * FROM users ORDER BY id OFFSET 0 ROWS FETCH FIRST 2 ROWS ONLY"},
	{my, true, "mysql", "SELECT 1 FROM DUAL"},
	{my, true, "mysql", "SELECT NOW(), CURDATE(), DATABASE()"},
	{my, true, "mysql", "SELECT UUID(), UUID_SHORT()"},
	{my, true, "mysql", "SELECT SLEEP(0)"},
	{my, true, "mysql", "SELECT * FROM active_users"},
	{my, true, "mysql", "SELECT * FROM order_totals ORDER BY amount DESC"},
	{my, true, "mysql", "(SELECT id FROM users) UNION ALL (SELECT user_id FROM orders)"},
	{my, true, "mysql", "((SELECT 1))"},
	{my, true, "mysql", "SELECT 1;"},
	{my, true, "mysql", "SELECT id FROM users /* trailing comment */ ;"},
	{my, true, "mysql", "SELECT name FROM users WHERE name LIKE 'A%' AND email REGEXP '@example'"},
	{my, true, "mysql", "SeLeCt NaMe FrOm users"},
	{my, true, "mysql", "SELECT COUNT(*) FROM audit_log"},
	{my, true, "mysql", "SELECT GROUP_CONCAT(name ORDER BY name SEPARATOR ', ') FROM users"},
	{my, true, "mysql", "SELECT IF(price > 10, 'big', 'small') AS size FROM items"},
	{my, true, "mysql", "SELECT x'4D' AS hex, b'1' AS bit, 0x4D AS hex2, 1e3 AS f"},
	{my, true, "mysql", "SELECT _utf8mb4'abc' COLLATE utf8mb4_bin AS s"},
	{my, true, "mysql", "SELECT (SELECT MAX(total) FROM orders) AS top"},
	{my, true, "mysql", "SELECT * FROM orders WHERE status IN ('new', 'paid') AND total BETWEEN 1 AND 100"},
	{my, true, "mysql", "SELECT name FROM users WHERE name LIKE '%update%' AND email NOT LIKE '%delete%'"},
	{my, true, "mysql", "SELECT id AS updated_id, name AS inserted_name FROM users"},
	{my, true, "mysql", "SELECT 1 AS a$b"},
	{my, true, "mysql", "SELECT 'C:\\\\temp\\\\' AS path"},

	// ---- MySQL and MariaDB reads that are not run ----
	{my, true, "", "SELECT id, name FROM users WHERE id = ?"},
	{my, true, "", "SELECT * FROM pg_class"},
	{my, true, "", "SELECT mysql, sys FROM t"},
	{my, true, "", "SELECT $$update$$ FROM t"},
	{my, true, "", "SELECT * FROM t WHERE a = 1 /*!99999 + 1 */"},
	{my, true, "", "SELECT 1 # it's a comment, so no unterminated quote"},
	{my, true, "", "SELECT my_report(42)"},
	{my, true, "", "SELECT 1 # a NUL byte ends a comment, then is a character\x00"},

	// ---- MySQL and MariaDB statements that are not reads ----
	{my, false, "", "INSERT INTO users (name, email) VALUES ('x', 'x@example.com')"},
	{my, false, "", "INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE n = n + 1"},
	{my, false, "", "REPLACE INTO users (id, name) VALUES (1, 'x')"},
	{my, false, "", "replace users set name = 'x'"},
	{my, false, "", "UPDATE users SET name = 'x' ORDER BY id LIMIT 1"},
	{my, false, "", "DELETE FROM orders WHERE id = 1"},
	{my, false, "", "LOCK TABLES users READ"},
	{my, false, "", "UNLOCK TABLES"},
	{my, false, "", "HANDLER users OPEN"},
	{my, false, "", "FLUSH TABLES"},
	{my, false, "", "KILL QUERY 12"},
	{my, false, "", "PURGE BINARY LOGS BEFORE NOW()"},
	{my, false, "", "OPTIMIZE TABLE users"},
	{my, false, "", "LOAD DATA INFILE '/tmp/x' INTO TABLE users"},
	{my, false, "", "XA START 'x'"},
	{my, false, "", "USE app"},
	{my, false, "", "DO SLEEP(1)"},
	{my, false, "", "SET NAMES utf8mb4"},
	{my, false, "", "SET @x = 1"},
	{my, false, "", "/*!40101 SET NAMES utf8 */"},
	{my, false, "", "/*!40101 SELECT 1 */; SET @a = 1"},
	{my, false, "", "SHOW TABLES"},
	{my, false, "", "SHOW CREATE TABLE users"},
	{my, false, "", "SHOW WARNINGS"},
	{my, false, "", "DESCRIBE users"},
	{my, false, "", "desc users"},
	{my, false, "", "EXPLAIN users"},
	{my, false, "", "EXPLAIN `users`"},
	{my, false, "", "EXPLAIN comment"},
	{my, false, "", "EXPLAIN ANALYZE SELECT 1"},
	{my, false, "", "ANALYZE SELECT * FROM users"},
	{my, false, "", "WITH x AS (SELECT 1 AS id) UPDATE users JOIN x USING (id) SET name = 'x'"},
	// Locking clauses.
	{my, false, "", "SELECT * FROM users WHERE id = 1 FOR UPDATE"},
	{my, false, "", "SELECT * FROM users WHERE id = 1 LOCK IN SHARE MODE"},
	{my, false, "", "SELECT * FROM users FOR SHARE NOWAIT"},
	{my, false, "", "SELECT * FROM orders LIMIT 1 FOR UPDATE SKIP LOCKED"},
	{my, false, "", "SELECT * FROM users FOR UPDATE WAIT 5"},
	// INTO.
	{my, false, "", "SELECT * FROM users INTO OUTFILE '/tmp/users.txt'"},
	{my, false, "", "SELECT name FROM users LIMIT 1 INTO DUMPFILE '/tmp/x'"},
	{my, false, "", "SELECT COUNT(*) INTO @n FROM users"},
	// Functions, sequences and session state.
	{my, false, "", "SELECT GET_LOCK('job', 10)"},
	{my, false, "", "SELECT release_lock('job')"},
	{my, false, "", "SELECT RELEASE_ALL_LOCKS()"},
	{my, false, "", "SELECT IS_FREE_LOCK('job'), IS_USED_LOCK('job')"},
	{my, false, "", "SELECT LAST_INSERT_ID()"},
	{my, false, "", "SELECT ROW_COUNT()"},
	{my, false, "", "SELECT FOUND_ROWS()"},
	{my, false, "", "SELECT SQL_CALC_FOUND_ROWS * FROM users LIMIT 1"},
	{my, false, "", "SELECT MASTER_POS_WAIT('mysql-bin.000001', 4)"},
	{my, false, "", "SELECT MASTER_GTID_WAIT('0-1-100', 1)"},
	{my, false, "", "SELECT WAIT_FOR_EXECUTED_GTID_SET('x')"},
	{my, false, "", "SELECT NEXTVAL(invoice_seq)"},
	{my, false, "", "SELECT SETVAL(invoice_seq, 2000)"},
	{my, false, "", "SELECT LASTVAL(invoice_seq)"},
	{my, false, "", "SELECT NEXT VALUE FOR invoice_seq"},
	{my, false, "", "SELECT previous value for invoice_seq"},
	{my, false, "", "SELECT invoice_seq.nextval"},
	{my, false, "", "SELECT @x := 1"},
	{my, false, "", "SELECT @rownum := @rownum + 1, name FROM users"},
	{my, false, "", "SELECT @x"},
	{my, false, "", "SELECT @`x`, @'y'"},
	{my, false, "", "SELECT @@IDENTITY"},
	{my, false, "", "SELECT @@session.warning_count, @@error_count"},
	// Catalog reads.
	{my, false, "", "SELECT * FROM information_schema.tables WHERE table_schema = DATABASE()"},
	{my, false, "", "SELECT user, host FROM mysql.user"},
	{my, false, "", "SELECT * FROM `mysql`.`db`"},
	{my, false, "", "SELECT * FROM mysql . user"},
	{my, false, "", "SELECT * FROM sys.schema_table_statistics"},
	{my, false, "", "SELECT * FROM performance_schema.threads"},
	// Several statements.
	{my, false, "", "SELECT 1; SELECT 2"},
	{my, false, "", "SELECT 1; # comment\nINSERT INTO t VALUES (1)"},
	{my, false, "", "SELECT 1 # comment\x00; DELETE FROM users"},
	// Executable comments are code.
	{my, false, "", "SELECT 1 /*! ; DELETE FROM users */"},
	{my, false, "", "SELECT /*!50000 SQL_CALC_FOUND_ROWS */ * FROM users"},
	{my, false, "", "SELECT * FROM users /*!99999 FOR UPDATE */"},
	{my, false, "", "SELECT * FROM users /*M!100000 FOR UPDATE */"},
	{my, false, "", "SELECT 1 /*!INTO @x*/"},
	{my, false, "", "SELECT /*M! NEXT VALUE FOR invoice_seq, */ 1"},
	{my, false, "", "SELECT 1 /*! -- comment in code */"},
	{my, false, "", "SELECT 1 /*! /* nested */ */"},
	// Versioned executable comments read as comments by older servers.
	{my, false, "", "SELECT /*!50000 'x */ ; DELETE FROM users; -- ' */ 1"},
	{my, false, "", "SELECT /*M! 'x */ ; DELETE FROM users; -- ' */ 1"},
	// Backslash escapes off (NO_BACKSLASH_ESCAPES, ANSI_QUOTES).
	{my, false, "", "SELECT 'a\\'; DELETE FROM users; -- '"},
	{my, false, "", "SELECT \"a\\\"; DELETE FROM users; -- \""},
	{my, false, "", "SELECT 'a\\' , '; DELETE FROM users; -- '"},
	// Without backslash escapes this is two statements: conservative.
	{my, false, "", "SELECT 'it\\'s; delete from users' AS s"},
	// -- is a comment only before whitespace.
	{my, false, "", "SELECT id FROM users --delete"},
	{my, false, "", "SELECT 1 --x\nFOR UPDATE"},
	// What cannot be lexed, and empty statements.
	{my, false, "", "SELECT 'unterminated"},
	{my, false, "", "SELECT 'escaped quote at the end\\'"},
	{my, false, "", "SELECT `unterminated"},
	{my, false, "", "SELECT 1 /* unterminated"},
	{my, false, "", "SELECT /*! 1"},
	{my, false, "", "# only a comment"},
	{my, false, "", "-- "},
	{my, false, "", ""},
	// Keywords as unquoted names, and nesting that MySQL does not do.
	{my, false, "", "SELECT update FROM events"},
	{my, false, "", "SELECT close, share FROM stocks"},
	{my, false, "", "/* a /* b */ c */ SELECT 1"},

	// ---- Generic: a read only if both dialects say so ----
	{generic, true, "pg", "SELECT 1"},
	{generic, true, "pg", "SELECT id, name FROM users WHERE id = 1"},
	{generic, true, "pg", "-- comment\nSELECT count(*) FROM orders"},
	{generic, true, "pg", "SELECT 'it''s' AS s"},
	{generic, true, "pg", "SELECT \"update\" FROM events"},
	{generic, true, "pg", "SELECT 1 # 2"},
	{generic, true, "pg", "SELECT E'\\\\' AS backslash"},
	{generic, true, "mysql", "SELECT 1 AS one"},
	{generic, true, "mysql", "SELECT name FROM users ORDER BY name LIMIT 2"},
	{generic, true, "mysql", "/* comment */ SELECT COUNT(*) FROM items"},
	{generic, true, "mysql", "SELECT 'update' AS s"},
	{generic, true, "", "SELECT $$update$$"},
	{generic, true, "", "SELECT * FROM users WHERE id = ?"},
	{generic, false, "", "SELECT * FROM pg_class"},
	{generic, false, "", "SELECT @x"},
	{generic, false, "", "SELECT 1 # delete"},
	{generic, false, "", "SELECT id FROM users --delete"},
	{generic, false, "", "/* a /* b */ c */ SELECT 1"},
	{generic, false, "", "SELECT `update` FROM events"},
	{generic, false, "", "SELECT 1 /*! ; DELETE FROM users */"},
	{generic, false, "", "SELECT 'a\\'; DELETE FROM users; -- '"},
	{generic, false, "", "SELECT * FROM users FOR UPDATE"},
	{generic, false, "", "DELETE FROM users"},
	{generic, false, "", ""},
}

func dialectOf(t testing.TB, name string) Dialect {
	t.Helper()
	switch name {
	case pg:
		return Postgres
	case my:
		return MySQL
	case generic:
		return Generic
	}
	t.Fatalf("unknown dialect %q", name)
	return Generic
}

// encodeCorpus renders the table as testdata/corpus.json: a JSON array with
// one statement per line.
func encodeCorpus(cases []corpusCase) []byte {
	var out, line bytes.Buffer
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false)
	out.WriteString("[\n")
	for i, c := range cases {
		line.Reset()
		if err := enc.Encode(c); err != nil {
			panic(err)
		}
		out.WriteString("  ")
		out.Write(bytes.TrimSuffix(line.Bytes(), []byte("\n")))
		if i < len(cases)-1 {
			out.WriteByte(',')
		}
		out.WriteByte('\n')
	}
	out.WriteString("]\n")
	return out.Bytes()
}

func loadCorpus(t testing.TB) []corpusCase {
	t.Helper()
	body, err := os.ReadFile(corpusFile)
	if err != nil {
		t.Fatal(err)
	}
	var cases []corpusCase
	if err := json.Unmarshal(body, &cases); err != nil {
		t.Fatalf("%s: %v", corpusFile, err)
	}
	return cases
}

// TestCorpusFile checks that testdata/corpus.json holds the table;
// go test ./internal/sqlclass/ -run TestCorpusFile -update rewrites it.
func TestCorpusFile(t *testing.T) {
	want := encodeCorpus(corpus)
	if *update {
		if err := os.WriteFile(corpusFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(corpusFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not the table of classify_test.go: run go test ./internal/sqlclass/ -run TestCorpusFile -update", corpusFile)
	}
}

func TestCorpusShape(t *testing.T) {
	cases := loadCorpus(t)
	seen := map[string]bool{}
	runPG, runMy := 0, 0
	for _, c := range cases {
		dialectOf(t, c.Dialect)
		key := c.Dialect + "\x00" + c.SQL
		if seen[key] {
			t.Errorf("duplicate %s statement %q", c.Dialect, c.SQL)
		}
		seen[key] = true
		switch c.Run {
		case "":
		case "pg":
			runPG++
			if c.Dialect == my {
				t.Errorf("%q: a MySQL statement marked runnable on PostgreSQL", c.SQL)
			}
		case "mysql":
			runMy++
			if c.Dialect == pg {
				t.Errorf("%q: a PostgreSQL statement marked runnable on MariaDB", c.SQL)
			}
		default:
			t.Errorf("%q: bad run %q", c.SQL, c.Run)
		}
		if c.Run != "" && !c.Read {
			t.Errorf("%q: only reads are runnable", c.SQL)
		}
	}
	if len(cases) < 180 || runPG < 60 || runMy < 40 {
		t.Errorf("corpus has %d statements, %d runnable on PostgreSQL, %d on MariaDB; want at least 180, 60, 40",
			len(cases), runPG, runMy)
	}
	t.Logf("%d statements, %d runnable on PostgreSQL, %d on MariaDB", len(cases), runPG, runMy)
}

func TestClassify(t *testing.T) {
	for _, c := range loadCorpus(t) {
		d := dialectOf(t, c.Dialect)
		if got := IsRead(d, c.SQL); got != c.Read {
			t.Errorf("IsRead(%s, %q) = %v, want %v (%s)", d, c.SQL, got, c.Read, Why(d, c.SQL))
		}
		for _, d := range []Dialect{Generic, Postgres, MySQL} {
			if (Why(d, c.SQL) == "read") != IsRead(d, c.SQL) {
				t.Errorf("%s %q: Why says %q but IsRead %v", d, c.SQL, Why(d, c.SQL), IsRead(d, c.SQL))
			}
		}
		if g, p, m := IsRead(Generic, c.SQL), IsRead(Postgres, c.SQL), IsRead(MySQL, c.SQL); g != (p && m) {
			t.Errorf("%q: Generic %v, Postgres %v, MySQL %v", c.SQL, g, p, m)
		}
	}
}

func TestWhy(t *testing.T) {
	tests := []struct {
		d    Dialect
		sql  string
		want string
	}{
		{Postgres, "SELECT 1", "read"},
		{MySQL, "  -- nothing", "empty"},
		{Generic, "", "empty"},
		{Postgres, "VACUUM", "write keyword"},
		{Postgres, "REASSIGN OWNED BY a TO b", "not a read statement"},
		{Postgres, "(1)", "not a read statement"},
		{MySQL, "SELECT 1 FROM t WHERE x IN (SELECT 1) AND y = 2 OR update", "write keyword"},
		{Postgres, "WITH x AS (DELETE FROM t RETURNING 1) SELECT 1", "write keyword"},
		{Postgres, "SELECT * FROM t FOR UPDATE", "locking clause"},
		{Postgres, "SELECT * FROM t FOR NO KEY UPDATE", "locking clause"},
		{Postgres, "SELECT * FROM t FOR KEY SHARE", "locking clause"},
		{MySQL, "SELECT * FROM t LOCK IN SHARE MODE", "locking clause"},
		{Postgres, "SELECT * INTO t2 FROM t", "into clause"},
		{MySQL, "SELECT 1 INTO OUTFILE '/tmp/x'", "into clause"},
		{Postgres, "SELECT pg_advisory_xact_lock(1)", "side-effecting function"},
		{MySQL, "SELECT get_lock('x', 1)", "side-effecting function"},
		{MySQL, "SELECT NEXT VALUE FOR s", "sequence access"},
		{MySQL, "SELECT s.currval", "sequence access"},
		{MySQL, "SELECT @v", "session state"},
		{MySQL, "SELECT SQL_CALC_FOUND_ROWS * FROM t", "session state"},
		{MySQL, "SELECT @@last_insert_id", "session state"},
		{MySQL, "SELECT @v := 1", "session state"},
		{MySQL, "SELECT a := 1", "variable assignment"},
		{Postgres, "SELECT * FROM pg_class", "catalog read"},
		{Postgres, "SELECT 'x'::regclass", "catalog read"},
		{MySQL, "SHOW TABLES", "catalog read"},
		{MySQL, "DESCRIBE t", "catalog read"},
		{MySQL, "EXPLAIN t", "catalog read"},
		{Generic, "SELECT * FROM information_schema.columns", "catalog read"},
		{Postgres, "SELECT 1; SELECT 2", "multiple statements"},
		{Postgres, "SELECT 'x", "unterminated literal or comment"},
		{MySQL, "SELECT 1 /* x", "unterminated literal or comment"},
		{Postgres, "SELECT U&\"x\" FROM t", "unicode escaped identifier"},
		{MySQL, "SELECT /*! 1 # x */ 2", "comment in executable comment"},
		{Dialect(200), "SELECT * FROM pg_class", "catalog read"},
		{Dialect(200), "SELECT 1", "read"},
	}
	for _, tt := range tests {
		if got := Why(tt.d, tt.sql); got != tt.want {
			t.Errorf("Why(%s, %q) = %q, want %q", tt.d, tt.sql, got, tt.want)
		}
	}
}

func TestDialectString(t *testing.T) {
	for d, want := range map[Dialect]string{Generic: "generic", Postgres: "postgres", MySQL: "mysql", 7: "unknown"} {
		if got := d.String(); got != want {
			t.Errorf("Dialect(%d).String() = %q, want %q", uint8(d), got, want)
		}
	}
}

func TestTables(t *testing.T) {
	lower := func(s string) bool { return s == strings.ToLower(s) && s != "" }
	for k := range keywords {
		if !lower(k) || len(k) > maxName {
			t.Errorf("keyword %q must be lower case and at most %d bytes", k, maxName)
		}
	}
	for k := range functions {
		if !lower(k) || len(k) > maxName {
			t.Errorf("function %q must be lower case and at most %d bytes", k, maxName)
		}
	}
	for _, p := range functionPrefixes {
		if !lower(p.prefix) {
			t.Errorf("function prefix %q must be lower case", p.prefix)
		}
	}
	texts := map[string]bool{}
	for r := rRead; r <= rAmbiguous; r++ {
		s := r.String()
		if s == "" || s == "unknown" || texts[s] {
			t.Errorf("reason %d has text %q", r, s)
		}
		texts[s] = true
	}
}
