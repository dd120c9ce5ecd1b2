package sqlclass

import "strings"

// PostgreSQL lexical rules (src/backend/parser/scan.l):
//
//   - whitespace is space, \t, \n, \v, \f and \r;
//   - -- starts a comment to the end of the line (\n or \r);
//   - /* */ comments nest;
//   - '...' doubles a quote to write one; backslash is an ordinary byte
//     unless standard_conforming_strings is off;
//   - E'...' takes backslash escapes as well as doubled quotes; B'...',
//     X'...' and U&'...' never take backslash escapes, and in B'...' and
//     X'...' '' ends one literal and starts another; N'...' is '...';
//   - a literal closed by ' continues when whitespace holding a newline
//     (and -- comments) and another ' follow, in the same escape mode;
//   - "..." is a quoted identifier ("" for a quote), U&"..." one with
//     Unicode escapes;
//   - $tag$...$tag$ and $$...$$ are dollar-quoted literals (the tag is
//     letters, digits, _ and non-ASCII bytes, not starting with a digit);
//     $1 is a parameter; a lone $ is punctuation;
//   - identifiers start with a letter, _ or a non-ASCII byte and go on with
//     those, digits and $.

func (l *lexer) nextPostgres() token {
	s := l.s
	i := l.pos
	for i < len(s) {
		c := s[i]
		switch {
		case isSpace(c):
			i++
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			i = endOfLine(s, i+2)
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			i = endOfNestedComment(s, i+2)
			if i < 0 {
				return l.fail()
			}
		default:
			return l.tokenPostgres(i)
		}
	}
	l.pos = i
	return token{kind: tokEOF}
}

func (l *lexer) tokenPostgres(i int) token {
	s := l.s
	c := s[i]
	var n, n2 byte
	if i+1 < len(s) {
		n = s[i+1]
	}
	if i+2 < len(s) {
		n2 = s[i+2]
	}
	switch {
	case c == '\'':
		return l.stringPostgres(i+1, l.mode&modeBackslashQuotes != 0, true)
	case c == '"':
		return l.quoted(i, '"', tokQuoted)
	case c == '$':
		return l.dollar(i)
	case isDigit(c):
		return l.number(i)
	case !isLetter(c) && c != '_' && c < 0x80:
		return l.punct(i)
	}
	// An identifier, or the prefix of a literal.
	switch c | 0x20 {
	case 'e':
		if n == '\'' {
			return l.stringPostgres(i+2, true, true)
		}
	case 'b', 'x':
		if n == '\'' {
			return l.stringPostgres(i+2, false, false)
		}
	case 'n':
		if n == '\'' {
			return l.stringPostgres(i+2, l.mode&modeBackslashQuotes != 0, true)
		}
	case 'u':
		if n == '&' && n2 == '\'' {
			return l.stringPostgres(i+3, false, true)
		}
		if n == '&' && n2 == '"' {
			return l.quoted(i+2, '"', tokEscapedIdent)
		}
	}
	return l.word(i)
}

// stringPostgres ends a literal whose text starts at i, just after its
// opening quote, including any continuation. backslash tells whether a
// backslash escapes the next byte, doubled whether ” stands for a quote
// (bit strings have no such thing: there ” ends one literal and starts
// another).
func (l *lexer) stringPostgres(i int, backslash, doubled bool) token {
	s := l.s
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\\' && backslash:
			i += 2
		case c == '\'' && doubled && i+1 < len(s) && s[i+1] == '\'':
			i += 2
		case c == '\'':
			if j := continuation(s, i+1); j > 0 {
				i = j
				continue
			}
			l.pos = i + 1
			return token{kind: tokString}
		default:
			i++
		}
	}
	return l.fail()
}

// continuation returns where the text of a literal continues when the
// literal closed just before i is followed by whitespace holding a newline
// and another quote, or 0 when it does not continue.
func continuation(s string, i int) int {
	newline := false
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\n' || c == '\r':
			newline = true
			i++
		case isSpace(c):
			i++
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			i = endOfLine(s, i+2)
		case c == '\'' && newline:
			return i + 1
		default:
			return 0
		}
	}
	return 0
}

// dollar lexes what starts with the $ at i: a parameter, a dollar-quoted
// literal or a lone $.
func (l *lexer) dollar(i int) token {
	s := l.s
	j := i + 1
	if j < len(s) && isDigit(s[j]) {
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		l.pos = j
		return token{kind: tokParam}
	}
	if j < len(s) && (isLetter(s[j]) || s[j] == '_' || s[j] >= 0x80) {
		for j < len(s) && (isIdentCont(s[j]) && s[j] != '$') {
			j++
		}
	}
	if j >= len(s) || s[j] != '$' {
		return l.punct(i)
	}
	delim := s[i : j+1]
	k := strings.Index(s[j+1:], delim)
	if k < 0 {
		return l.fail()
	}
	l.pos = j + 1 + k + len(delim)
	return token{kind: tokString}
}

// endOfLine returns the index of the first \n or \r at or after i, or
// len(s).
func endOfLine(s string, i int) int {
	for i < len(s) && s[i] != '\n' && s[i] != '\r' {
		i++
	}
	return i
}

// endOfNestedComment returns the index just after the */ that closes the
// comment whose text starts at i, counting nested /* */ pairs, or -1.
func endOfNestedComment(s string, i int) int {
	depth := 1
	for i+1 < len(s) {
		switch {
		case s[i] == '/' && s[i+1] == '*':
			depth++
			i += 2
		case s[i] == '*' && s[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return -1
}
