package sqlclass

import "strings"

// MySQL and MariaDB lexical rules (sql/sql_lex.cc):
//
//   - whitespace is space, \t, \n, \v, \f and \r;
//   - # starts a comment to the end of the line (\n, or a NUL byte);
//   - -- starts one only when the next byte is whitespace or a control
//     character, or the query ends: otherwise it is two minus signs;
//   - /* */ comments do not nest; /*+ */ optimizer hints are comments;
//   - /*! ... */ is an executable comment: its text is code, closed by */.
//     /*!NNNNN ... */ (5 or 6 digits) is code only on servers of at least
//     that version, a comment on older ones; MariaDB's /*M! ... */ and
//     /*M!NNNNN ... */ are the same for MariaDB, plain comments for MySQL.
//     Both readings are classified (modeVersionedComments). Comments inside
//     an executable comment are refused: the servers disagree about them;
//   - '...' and "..." take backslash escapes (unless NO_BACKSLASH_ESCAPES,
//     or ANSI_QUOTES for "...") and doubled quotes; under ANSI_QUOTES "..."
//     is an identifier;
//   - `...` is a quoted identifier (`` for a backtick);
//   - @name, @'name', @"name" and @`name` are user variables, @@name
//     system variables, := an assignment;
//   - identifiers are letters, digits, _, $ and non-ASCII bytes.
//
// The lexer assumes the connection character set is UTF-8 (or another in
// which the bytes \ and ` never occur inside a multi-byte character).

func (l *lexer) nextMySQL() token {
	s := l.s
	i := l.pos
	for i < len(s) {
		c := s[i]
		switch {
		case isSpace(c):
			i++
		case c == '#' || c == '-' && i+1 < len(s) && s[i+1] == '-' && (i+2 == len(s) || s[i+2] <= ' ' || s[i+2] == 0x7f):
			if l.inExec {
				return l.ambiguous()
			}
			i = endOfMySQLLine(s, i+1)
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			if l.inExec {
				return l.ambiguous()
			}
			i = l.comment(i)
			switch i {
			case -1:
				return l.fail()
			case -2:
				return l.ambiguous()
			}
		case c == '*' && l.inExec && i+1 < len(s) && s[i+1] == '/':
			l.inExec = false
			i += 2
		default:
			return l.tokenMySQL(i)
		}
	}
	l.pos = i
	if l.inExec {
		return l.fail()
	}
	return token{kind: tokEOF}
}

// comment skips the comment that starts with the /* at i and returns
// where lexing goes on, -1 when the comment does not end, or -2 for an
// executable comment holding /* before its first */. For an executable
// comment whose text is code it sets inExec and returns the start of that
// code.
func (l *lexer) comment(i int) int {
	s := l.s
	j := i + 2
	maria := false
	switch {
	case j < len(s) && s[j] == '!':
		j++
	case j+1 < len(s) && s[j] == 'M' && s[j+1] == '!':
		maria = true
		j += 2
	default:
		k := strings.Index(s[j:], "*/")
		if k < 0 {
			return -1
		}
		return j + k + 2
	}
	versioned := false
	d := 0
	for d < 6 && j+d < len(s) && isDigit(s[j+d]) {
		d++
	}
	if d >= 5 {
		versioned = true
		j += d
	}
	k := strings.Index(s[j:], "*/")
	if k < 0 {
		return -1
	}
	if strings.Contains(s[j:j+k], "/*") {
		return -2
	}
	if l.mode&modeVersionedComments != 0 && (versioned || maria) {
		return j + k + 2
	}
	l.inExec = true
	return j
}

func (l *lexer) tokenMySQL(i int) token {
	s := l.s
	c := s[i]
	var n byte
	if i+1 < len(s) {
		n = s[i+1]
	}
	switch {
	case c == '\'':
		return l.stringMySQL(i, l.mode&modeNoBackslash == 0, tokString)
	case c == '"':
		return l.stringMySQL(i, l.mode&(modeNoBackslash|modeAnsiQuotes) == 0, tokQuoted)
	case c == '`':
		return l.quoted(i, '`', tokQuoted)
	case c == '@' && n == '@':
		l.pos = i + 2
		return token{kind: tokPunct, ch: '@'}
	case c == '@':
		l.pos = i + 1
		return token{kind: tokUserVar}
	case c == ':' && n == '=':
		l.pos = i + 2
		return token{kind: tokAssign}
	case isDigit(c):
		return l.number(i)
	case isIdentCont(c):
		return l.word(i)
	}
	return l.punct(i)
}

// stringMySQL ends the literal whose opening quote is at i. The result
// spans the text between the quotes, as for a quoted identifier.
func (l *lexer) stringMySQL(i int, backslash bool, kind tokKind) token {
	s := l.s
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			if backslash {
				j++
			}
		case q:
			if j+1 < len(s) && s[j+1] == q {
				j++
				continue
			}
			l.pos = j + 1
			return token{kind: kind, start: i + 1, end: j}
		}
	}
	return l.fail()
}

// endOfMySQLLine returns the index of the end of the line comment whose
// text starts at i: just after its \n, at a NUL byte (which MySQL then
// reads as a character of its own), or len(s).
func endOfMySQLLine(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case '\n':
			return i + 1
		case 0:
			return i
		}
		i++
	}
	return i
}
