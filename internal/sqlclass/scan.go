package sqlclass

// scan classifies query with one lexer (MySQL's when mysql is set) in one
// mode. It applies the rules of the package documentation to the code
// tokens, each seen with the token before and the token after it.
func scan(query string, mysql bool, m mode) reason {
	l := lexer{s: query, mode: m, mysql: mysql}
	first := l.next()
	parens := false
	for first.isPunct('(') {
		parens = true
		first = l.next()
	}
	switch first.kind {
	case tokWord:
	case tokEOF:
		if parens {
			return rNotRead
		}
		return rEmpty
	case tokError:
		return rLex
	case tokAmbiguous:
		return rAmbiguous
	default:
		return rNotRead
	}
	if r := l.leading(first); r != rRead {
		return r
	}
	prev, cur := first, l.next()
	if mysql && equalFold(l.text(first), "explain") {
		if r := l.explained(cur); r != rRead {
			return r
		}
	}
	next := l.next()
	ended := false // a ';' was seen
	for {
		switch cur.kind {
		case tokEOF:
			return rRead
		case tokError:
			return rLex
		case tokAmbiguous:
			return rAmbiguous
		}
		if ended {
			if !cur.isPunct(';') {
				return rMulti
			}
		} else if cur.isPunct(';') {
			ended = true
		} else if r := l.check(prev, cur, next); r != rRead {
			return r
		}
		prev, cur, next = cur, next, l.next()
	}
}

func (l *lexer) text(t token) string { return l.s[t.start:t.end] }

// isWord reports whether t is the unquoted word lower, in any case.
func (l *lexer) isWord(t token, lower string) bool {
	return t.kind == tokWord && equalFold(l.text(t), lower)
}

// leading checks the first word of the statement.
func (l *lexer) leading(t token) reason {
	w := l.text(t)
	switch {
	case equalFold(w, "select"), equalFold(w, "with"), equalFold(w, "values"),
		equalFold(w, "table"), equalFold(w, "explain"):
		return rRead
	case equalFold(w, "show"):
		if l.mysql {
			return rCatalog // SHOW TABLES, COLUMNS, CREATE ...; also WARNINGS, STATUS: session state
		}
		return rRead // PostgreSQL SHOW reads a setting
	case equalFold(w, "desc"), equalFold(w, "describe"):
		return rCatalog
	}
	if name, long := l.fold(t); !long {
		if _, ok := keywordIndex.get(name); ok {
			return rWriteKeyword
		}
	}
	return rNotRead
}

// explained checks the word after MySQL's EXPLAIN: EXPLAIN t is DESCRIBE t.
func (l *lexer) explained(t token) reason {
	switch t.kind {
	case tokWord:
		w := l.text(t)
		switch {
		case equalFold(w, "select"), equalFold(w, "with"), equalFold(w, "values"),
			equalFold(w, "table"), equalFold(w, "format"), equalFold(w, "extended"),
			equalFold(w, "partitions"):
			return rRead
		case equalFold(w, "for"):
			return rNotRead // EXPLAIN FOR CONNECTION n
		}
		if name, long := l.fold(t); !long {
			if k, ok := keywordIndex.get(name); ok && k.flags&stmtOnly == 0 {
				return rRead // the keyword rules decide: EXPLAIN UPDATE, EXPLAIN ANALYZE
			}
		}
		return rCatalog
	case tokQuoted:
		return rCatalog
	case tokPunct:
		if t.ch == '(' {
			return rRead
		}
	case tokError:
		return rLex
	case tokAmbiguous:
		return rAmbiguous
	}
	return rNotRead
}

// check applies the rules to the code token cur.
func (l *lexer) check(prev, cur, next token) reason {
	switch cur.kind {
	case tokWord:
		return l.checkWord(prev, cur, next)
	case tokQuoted:
		name, long := l.fold(cur)
		return l.checkName(prev, name, long, next)
	case tokEscapedIdent:
		return rEscapedIdent
	case tokUserVar:
		return rSession
	case tokAssign:
		return rAssign
	}
	return rRead
}

func (l *lexer) checkWord(prev, cur, next token) reason {
	name, long := l.fold(cur)
	if !long {
		if k, ok := keywordIndex.get(name); ok && k.flags&stmtOnly == 0 {
			switch {
			case k.flags&callIsRead != 0 && next.isPunct('('):
				return rRead
			case k.flags&lockAfterFor != 0 && (l.isWord(prev, "for") || l.isWord(prev, "key")):
				return rLocking
			}
			return k.r
		}
		if string(name) == "value" && (l.isWord(prev, "next") || l.isWord(prev, "previous")) && l.isWord(next, "for") {
			return rSequence // MariaDB NEXT VALUE FOR seq, PREVIOUS VALUE FOR seq
		}
	}
	return l.checkName(prev, name, long, next)
}

// checkName applies the function and catalog rules to an identifier,
// quoted or not, folded into name.
func (l *lexer) checkName(prev token, name []byte, long bool, next token) reason {
	call := next.isPunct('(')
	if call {
		if r := functionReason(name, long); r != rRead {
			return r
		}
	}
	if !long {
		if catalogName(name, next.isPunct('.'), !l.mysql) {
			return rCatalog
		}
		if l.mysql && prev.isPunct('.') &&
			(string(name) == "nextval" || string(name) == "currval" || string(name) == "lastval") {
			return rSequence // MariaDB seq.nextval (Oracle mode)
		}
		if l.mysql && (prev.isPunct('@') || prev.isPunct('.')) && sessionResultVariable(name) {
			return rSession // @@identity, @@session.warning_count
		}
	}
	if !l.mysql && !call && hasPrefix(name, "pg_") {
		return rCatalog // pg_class, pg_stat_activity, pg_toast...
	}
	return rRead
}
