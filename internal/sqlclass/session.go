package sqlclass

// ChangesSession reports whether query may leave state on the connection it
// runs on that a later statement on the same connection could see: a
// setting (SET, RESET, set_config), a temporary table, a prepared
// statement, a cursor, a LISTEN, a lock that outlives the statement
// (advisory and named locks, LOCK TABLES), a MySQL user variable, a
// current database (USE), a transaction begun or ended in SQL text, a
// sequence's session value (nextval, currval, LAST_INSERT_ID), or anything
// it cannot tell. It says no only for a pure read (see IsRead), a read the
// classifier keeps off replicas for a reason that leaves no session state
// (a locking clause, a catalog read), and a statement that starts with a
// word of data change, definition (other than of a temporary object),
// privileges or maintenance, holds one statement and calls no function
// that IsRead counts as a side effect. Like IsRead it allocates nothing and
// never panics.
func ChangesSession(d Dialect, query string) bool {
	switch d {
	case Postgres:
		return changesSession(Postgres, query)
	case MySQL:
		return changesSession(MySQL, query)
	}
	return changesSession(Postgres, query) || changesSession(MySQL, query)
}

func changesSession(d Dialect, query string) bool {
	switch classify(d, query) {
	case rRead, rEmpty:
		return false
	case rWriteKeyword, rNotRead, rFunction, rSequence, rSession, rAssign, rInto, rLocking, rCatalog:
		return sessionScan(query, d == MySQL)
	}
	return true // several statements, or a query it cannot lex
}

// sessionScan checks a statement that is not a read: its first word, then
// every token for a side-effecting function, a user variable or a
// temporary object.
func sessionScan(query string, mysql bool) bool {
	l := lexer{s: query, mysql: mysql}
	first := l.next()
	for first.isPunct('(') {
		first = l.next()
	}
	if first.kind != tokWord || !statelessStart(l.text(first)) {
		return true
	}
	prev := first
	for {
		t := l.next()
		switch t.kind {
		case tokEOF:
			return false
		case tokError, tokAmbiguous, tokUserVar, tokAssign, tokEscapedIdent:
			return true
		case tokPunct:
			if t.ch == ';' {
				return true // a second statement (or a trailing ';': the classifier allowed it)
			}
			if t.ch == '(' && (prev.kind == tokWord || prev.kind == tokQuoted) {
				if name, long := l.fold(prev); functionReason(name, long) != rRead {
					return true
				}
			}
		case tokWord:
			w := l.text(t)
			if equalFold(w, "temp") || equalFold(w, "temporary") || equalFold(w, "sql_calc_found_rows") {
				return true // CREATE TEMP TABLE, SELECT ... INTO TEMP, MySQL FOUND_ROWS state
			}
		}
		prev = t
	}
}

// statelessStart reports whether a statement that starts with word w
// leaves no session state by itself (its functions and variables are
// checked apart).
func statelessStart(w string) bool {
	for _, s := range statelessWords {
		if equalFold(w, s) {
			return true
		}
	}
	return false
}

// statelessWords start statements that change data, definitions,
// privileges or statistics and nothing of the session, or that read.
var statelessWords = [...]string{
	"select", "with", "values", "table", "explain", "show", "desc", "describe",
	"insert", "update", "delete", "merge", "upsert", "replace",
	"create", "alter", "drop", "truncate", "rename", "comment", "grant", "revoke",
	"vacuum", "analyze", "analyse", "reindex", "cluster", "refresh", "optimize", "repair", "notify",
}
