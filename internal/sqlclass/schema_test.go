package sqlclass

import "testing"

func TestIsSchemaChange(t *testing.T) {
	tests := []struct {
		q    string
		want bool
	}{
		{"CREATE TABLE t (id int)", true},
		{"  /* migration */ create index i on t (x)", true},
		{"-- note\nALTER TABLE t ADD COLUMN y int", true},
		{"DROP TABLE IF EXISTS t", true},
		{"TRUNCATE t", true},
		{"RENAME TABLE a TO b", true},
		{"COMMENT ON TABLE t IS 'x'", true},
		{"GRANT SELECT ON t TO u", true},
		{"revoke all on t from u", true},
		{"INSERT INTO t VALUES (1); CREATE TABLE u (id int)", true},
		{"INSERT INTO t VALUES ('create table')", false},
		{"UPDATE t SET note = 'drop'", false},
		{"SELECT 1", false},
		{"INSERT INTO t VALUES (1); UPDATE t SET x = 2", false},
		{"WITH x AS (SELECT 1) SELECT * FROM x", false},
		{"", false},
		{"'unterminated", true},
		{"CREATEX TABLE t", false},
	}
	for _, tt := range tests {
		for _, d := range []Dialect{Postgres, MySQL, Generic} {
			if got := IsSchemaChange(d, tt.q); got != tt.want {
				t.Errorf("IsSchemaChange(%s, %q) = %v, want %v", d, tt.q, got, tt.want)
			}
		}
	}
	// MySQL: a hash comment, and code in an executable comment.
	if !IsSchemaChange(MySQL, "# setup\nCREATE TABLE t (id int)") {
		t.Error("MySQL: DDL after a # comment not seen")
	}
	if !IsSchemaChange(MySQL, "/*!50100 ALTER TABLE t ENGINE=InnoDB */") {
		t.Error("MySQL: DDL in an executable comment not seen")
	}
}

func TestIsSchemaChangeAllocatesNothing(t *testing.T) {
	q := "INSERT INTO users (name, email) VALUES ($1, $2)"
	if n := testing.AllocsPerRun(100, func() { IsSchemaChange(Postgres, q) }); n != 0 {
		t.Errorf("IsSchemaChange allocates %v times", n)
	}
}

func FuzzIsSchemaChange(f *testing.F) {
	for _, s := range []string{"CREATE TABLE t (id int)", "SELECT 1; DROP TABLE t", "/*! ALTER */", "'", "-- x\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		for _, d := range []Dialect{Postgres, MySQL, Generic} {
			IsSchemaChange(d, q) // never panics
		}
	})
}

func BenchmarkIsSchemaChange(b *testing.B) {
	q := "UPDATE users SET name = $1 WHERE id = $2"
	b.ReportAllocs()
	for b.Loop() {
		IsSchemaChange(Postgres, q)
	}
}
