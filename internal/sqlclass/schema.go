package sqlclass

import "strings"

// IsSchemaChange reports whether query changes the schema: one of its
// statements begins with CREATE, ALTER, DROP, TRUNCATE, RENAME, COMMENT,
// GRANT or REVOKE. Where it cannot lex the start of a statement, it says
// yes. Like IsRead it allocates nothing and never panics. A query that
// starts with a word and has no ';' is decided on that word without the
// lexer, so the common statement costs a few nanoseconds.
func IsSchemaChange(d Dialect, query string) bool {
	i := 0
	for i < len(query) && isSpace(query[i]) {
		i++
	}
	if i < len(query) && isLetter(query[i]) {
		switch query[i] | 0x20 { // the first letters of the schema words
		case 'a', 'c', 'd', 'g', 'r', 't':
			j := i + 1
			for j < len(query) && isIdentCont(query[j]) {
				j++
			}
			if isSchemaWord(query[i:j]) {
				return true
			}
		}
		if strings.IndexByte(query, ';') < 0 {
			return false
		}
	}
	switch d {
	case Postgres:
		return schemaChange(query, false)
	case MySQL:
		return schemaChange(query, true)
	}
	return schemaChange(query, false) || schemaChange(query, true)
}

func schemaChange(query string, mysql bool) bool {
	l := lexer{s: query, mysql: mysql}
	several := strings.IndexByte(query, ';') >= 0
	start := true
	for {
		t := l.next()
		switch t.kind {
		case tokEOF:
			return false
		case tokError, tokAmbiguous:
			return true
		case tokPunct:
			if t.ch == ';' {
				start = true
				continue
			}
			if t.ch == '(' && start {
				continue // a parenthesised statement: its first word counts
			}
		case tokWord:
			if start && isSchemaWord(l.text(t)) {
				return true
			}
		}
		if !several {
			return false
		}
		start = false
	}
}

func isSchemaWord(w string) bool {
	switch len(w) {
	case 4:
		return equalFold(w, "drop")
	case 5:
		return equalFold(w, "alter") || equalFold(w, "grant")
	case 6:
		return equalFold(w, "create") || equalFold(w, "rename") || equalFold(w, "revoke")
	case 7:
		return equalFold(w, "comment")
	case 8:
		return equalFold(w, "truncate")
	}
	return false
}
