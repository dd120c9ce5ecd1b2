package sqlclass

import "testing"

func TestChangesSession(t *testing.T) {
	for _, c := range []struct {
		d    Dialect
		q    string
		want bool
	}{
		// Reads and stateless statements: no pin.
		{Postgres, "SELECT * FROM t WHERE id = $1", false},
		{Postgres, "SELECT * FROM t FOR UPDATE", false},
		{Postgres, "SELECT relname FROM pg_class", false},
		{Postgres, "INSERT INTO t (a) VALUES ($1) RETURNING id", false},
		{Postgres, "  update t set a = 1", false},
		{Postgres, "DELETE FROM t", false},
		{Postgres, "WITH x AS (DELETE FROM t RETURNING *) SELECT count(*) FROM x", false},
		{Postgres, "CREATE TABLE notes (id bigserial PRIMARY KEY)", false},
		{Postgres, "ALTER TABLE notes ADD COLUMN body text", false},
		{Postgres, "DROP TABLE notes", false},
		{Postgres, "TRUNCATE notes", false},
		{Postgres, "COMMENT ON TABLE notes IS 'x'", false},
		{Postgres, "NOTIFY jobs, 'x'", false},
		{Postgres, "", false},
		{MySQL, "INSERT INTO t (a) VALUES (?)", false},
		{MySQL, "REPLACE INTO t VALUES (1)", false},
		{MySQL, "SELECT * FROM t LOCK IN SHARE MODE", false},
		{MySQL, "SHOW TABLES", false},
		{Generic, "UPDATE t SET a = 2", false},

		// Session state: pin.
		{Postgres, "SET search_path = app", true},
		{Postgres, "set local statement_timeout = 0", true},
		{Postgres, "RESET ALL", true},
		{Postgres, "SELECT set_config('app.user', $1, false)", true},
		{Postgres, "SELECT pg_catalog.set_config('x', 'y', false)", true},
		{Postgres, "CREATE TEMP TABLE scratch (id int)", true},
		{Postgres, "CREATE TEMPORARY TABLE scratch (id int)", true},
		{Postgres, "create global temporary table scratch (id int)", true},
		{Postgres, "SELECT * INTO TEMP scratch FROM t", true},
		{Postgres, "LISTEN jobs", true},
		{Postgres, "PREPARE q AS SELECT 1", true},
		{Postgres, "EXECUTE q", true},
		{Postgres, "DECLARE c CURSOR WITH HOLD FOR SELECT 1", true},
		{Postgres, "SELECT pg_advisory_lock(42)", true},
		{Postgres, "SELECT pg_try_advisory_lock(42)", true},
		{Postgres, "SELECT nextval('s')", true},
		{Postgres, "BEGIN", true},
		{Postgres, "COMMIT", true},
		{Postgres, "DO $$ BEGIN PERFORM 1; END $$", true},
		{Postgres, "CALL p()", true},
		{Postgres, "INSERT INTO t VALUES (1); SET x = 1", true},
		{Postgres, "SELECT 'unterminated", true},
		{Postgres, "DISCARD ALL", true},
		{MySQL, "SET @x = 1", true},
		{MySQL, "SET NAMES utf8mb4", true},
		{MySQL, "SELECT @x := 1", true},
		{MySQL, "SELECT a INTO @v FROM t", true},
		{MySQL, "INSERT INTO t VALUES (@x)", true},
		{MySQL, "USE app", true},
		{MySQL, "LOCK TABLES t WRITE", true},
		{MySQL, "UNLOCK TABLES", true},
		{MySQL, "SELECT GET_LOCK('m', 10)", true},
		{MySQL, "SELECT LAST_INSERT_ID()", true},
		{MySQL, "SELECT SQL_CALC_FOUND_ROWS * FROM t", true},
		{MySQL, "CREATE TEMPORARY TABLE s (id int)", true},
		{MySQL, "START TRANSACTION", true},
		{MySQL, "HANDLER t OPEN", true},
		{Generic, "SET x = 1", true},
		{Generic, "SELECT @v := 1", true},
		{Generic, "frobnicate the database", true},
	} {
		if got := ChangesSession(c.d, c.q); got != c.want {
			t.Errorf("%s %q: ChangesSession %v, want %v", c.d, c.q, got, c.want)
		}
	}
}

func TestChangesSessionAllocatesNothing(t *testing.T) {
	for _, q := range []string{"INSERT INTO t VALUES ($1)", "SET search_path = app", "SELECT set_config('a', 'b', false)"} {
		if n := testing.AllocsPerRun(100, func() { ChangesSession(Postgres, q) }); n != 0 {
			t.Errorf("%q: %v allocations", q, n)
		}
	}
}
