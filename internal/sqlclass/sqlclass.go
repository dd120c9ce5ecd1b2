package sqlclass

import "strings"

// Dialect selects the lexer family.
type Dialect uint8

const (
	Generic  Dialect = iota // unknown driver: a statement is a read only if BOTH the Postgres and MySQL rules call it a read
	Postgres                // PostgreSQL (pgx, lib/pq)
	MySQL                   // MySQL and MariaDB (go-sql-driver/mysql)
)

// String returns "generic", "postgres" or "mysql".
func (d Dialect) String() string {
	switch d {
	case Generic:
		return "generic"
	case Postgres:
		return "postgres"
	case MySQL:
		return "mysql"
	}
	return "unknown"
}

// IsRead reports whether query is a pure read that may run on a read replica.
// It must allocate nothing and never panic, for any input.
func IsRead(d Dialect, query string) bool {
	return classify(d, query) == rRead
}

// Why returns a short constant reason for the decision, e.g. "read", "write keyword", "locking clause",
// "side-effecting function", "catalog read", "multiple statements", "unterminated literal or comment",
// "not a read statement", "empty". For logs and tests; it must also allocate nothing (return constant strings).
func Why(d Dialect, query string) string {
	return classify(d, query).String()
}

// reason is the outcome of a classification: rRead or why it is not a read.
type reason uint8

const (
	rRead         reason = iota // a pure read
	rEmpty                      // nothing but whitespace and comments
	rNotRead                    // the statement does not start with a read keyword
	rWriteKeyword               // a write, DDL, transaction or session keyword
	rLocking                    // FOR UPDATE, FOR SHARE, LOCK IN SHARE MODE, NOWAIT, SKIP LOCKED
	rInto                       // SELECT ... INTO (a table, a file or variables)
	rFunction                   // a call of a function with side effects or session state
	rSequence                   // MariaDB NEXT VALUE FOR, PREVIOUS VALUE FOR, seq.nextval
	rSession                    // MySQL user variables, SQL_CALC_FOUND_ROWS
	rAssign                     // MySQL := assignment
	rCatalog                    // a system catalog, SHOW or DESCRIBE (MySQL)
	rMulti                      // more than one statement
	rLex                        // unterminated literal, identifier or comment
	rEscapedIdent               // PostgreSQL U&"..." identifier, whose name the classifier does not decode
	rAmbiguous                  // MySQL comment inside an executable comment
)

var reasonText = [...]string{
	rRead:         "read",
	rEmpty:        "empty",
	rNotRead:      "not a read statement",
	rWriteKeyword: "write keyword",
	rLocking:      "locking clause",
	rInto:         "into clause",
	rFunction:     "side-effecting function",
	rSequence:     "sequence access",
	rSession:      "session state",
	rAssign:       "variable assignment",
	rCatalog:      "catalog read",
	rMulti:        "multiple statements",
	rLex:          "unterminated literal or comment",
	rEscapedIdent: "unicode escaped identifier",
	rAmbiguous:    "comment in executable comment",
}

func (r reason) String() string {
	if int(r) < len(reasonText) {
		return reasonText[r]
	}
	return "unknown"
}

// classify runs the rules of d over query. Any value of d other than
// Postgres and MySQL is treated as Generic.
func classify(d Dialect, query string) reason {
	switch d {
	case Postgres:
		return classifyPostgres(query)
	case MySQL:
		return classifyMySQL(query)
	}
	if r := classifyPostgres(query); r != rRead {
		return r
	}
	return classifyMySQL(query)
}

// classifyPostgres scans query as PostgreSQL sees it with
// standard_conforming_strings on and, when the query holds a backslash,
// again as it is seen with the setting off.
func classifyPostgres(query string) reason {
	r := scan(query, false, 0)
	if r == rRead && strings.IndexByte(query, '\\') >= 0 {
		r = alternative(scan(query, false, modeBackslashQuotes))
	}
	return r
}

// alternative returns the outcome r of a scan under a server setting other
// than the default one. A read must be a read under every setting, except
// that a query the setting makes unterminated is harmless: a server with
// that setting rejects it before running any of it (PostgreSQL parses the
// whole query string first; MySQL stops at the first statement that does
// not parse, and the scan has seen no second statement before that point).
func alternative(r reason) reason {
	if r == rLex {
		return rRead
	}
	return r
}

// classifyMySQL scans query under every server setting that changes where
// its literals and comments end: backslash escapes on, off
// (NO_BACKSLASH_ESCAPES) and off in double quotes only (ANSI_QUOTES), and
// versioned executable comments taken as code (a server new enough) or as
// comments (an older server; MySQL also ignores MariaDB's /*M! comments).
// Settings that cannot matter for query (no backslash, no executable
// comment) are skipped.
func classifyMySQL(query string) reason {
	quoteModes := [...]mode{0, modeAnsiQuotes, modeNoBackslash}
	nq := 1
	if strings.IndexByte(query, '\\') >= 0 {
		nq = len(quoteModes)
	}
	versionModes := [...]mode{0, modeVersionedComments}
	nv := 1
	if strings.Contains(query, "/*!") || strings.Contains(query, "/*M!") {
		nv = len(versionModes)
	}
	if r := scan(query, true, 0); r != rRead {
		return r
	}
	for _, v := range versionModes[:nv] {
		for _, q := range quoteModes[:nq] {
			if v|q == 0 {
				continue // done above
			}
			if r := alternative(scan(query, true, v|q)); r != rRead {
				return r
			}
		}
	}
	return rRead
}
