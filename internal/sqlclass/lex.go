package sqlclass

// This file holds what the two lexers share: the token, the lexer state and
// byte classes. lex_postgres.go and lex_mysql.go hold the dialect rules.

type tokKind uint8

const (
	tokEOF          tokKind = iota
	tokError                // unterminated literal, quoted identifier or comment
	tokAmbiguous            // MySQL: a comment inside an executable comment
	tokWord                 // unquoted identifier or keyword
	tokQuoted               // quoted identifier, or MySQL "..." (a string, or an identifier under ANSI_QUOTES)
	tokEscapedIdent         // PostgreSQL U&"..."
	tokString               // string literal of any kind
	tokNumber               // numeric literal
	tokParam                // PostgreSQL $1
	tokPunct                // one byte of punctuation or operator, in ch
	tokUserVar              // MySQL @name, @'name', @`name`
	tokAssign               // MySQL :=
)

// token is one code token. For tokWord, start:end is the word; for
// tokQuoted it is the text between the quotes (doubled quotes left as they
// are); for other kinds it is unset.
type token struct {
	kind       tokKind
	ch         byte
	start, end int
}

func (t token) isPunct(c byte) bool { return t.kind == tokPunct && t.ch == c }

// mode selects server settings that change how a query is lexed.
type mode uint8

const (
	// PostgreSQL standard_conforming_strings=off: '...' takes backslash escapes.
	modeBackslashQuotes mode = 1 << iota
	// MySQL NO_BACKSLASH_ESCAPES: no literal takes backslash escapes.
	modeNoBackslash
	// MySQL ANSI_QUOTES: "..." is an identifier, without backslash escapes.
	modeAnsiQuotes
	// MySQL server too old for /*!NNNNN ... */, or MySQL seeing MariaDB's
	// /*M! ... */: those comments are comments, not code.
	modeVersionedComments
)

// lexer produces the code tokens of one query, skipping whitespace and
// comments. It never allocates; once it has reported tokError or
// tokAmbiguous it keeps reporting it.
type lexer struct {
	s      string
	pos    int
	mode   mode
	mysql  bool
	failed tokKind // tokError or tokAmbiguous once lexing has failed
	inExec bool    // MySQL: inside the code of an executable comment
	buf    [maxName]byte
}

func (l *lexer) next() token {
	if l.failed != tokEOF {
		return token{kind: l.failed}
	}
	if l.mysql {
		return l.nextMySQL()
	}
	return l.nextPostgres()
}

// fail reports an unterminated literal, quoted identifier or comment.
func (l *lexer) fail() token { return l.stop(tokError) }

// ambiguous reports a construct the servers read in different ways.
func (l *lexer) ambiguous() token { return l.stop(tokAmbiguous) }

func (l *lexer) stop(kind tokKind) token {
	l.failed = kind
	l.pos = len(l.s)
	return token{kind: kind}
}

func (l *lexer) punct(i int) token {
	l.pos = i + 1
	return token{kind: tokPunct, ch: l.s[i]}
}

// word ends the identifier or keyword that starts at i.
func (l *lexer) word(i int) token {
	j := i + 1
	for j < len(l.s) && isIdentCont(l.s[j]) {
		j++
	}
	l.pos = j
	return token{kind: tokWord, start: i, end: j}
}

// number ends the numeric literal that starts with the digit at i: digits
// and an optional exponent. It stops before anything else, so that a word
// glued to a number ("1for", "1e5update") is a word of its own, as
// PostgreSQL before version 15 reads it (15 rejects it). MySQL reads "1for"
// as one identifier: then the classifier sees more keywords than the
// server, never fewer.
func (l *lexer) number(i int) token {
	s := l.s
	j := i
	for j < len(s) && isDigit(s[j]) {
		j++
	}
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		k := j + 1
		if k < len(s) && (s[k] == '+' || s[k] == '-') {
			k++
		}
		if k < len(s) && isDigit(s[k]) {
			for k < len(s) && isDigit(s[k]) {
				k++
			}
			j = k
		}
	}
	l.pos = j
	return token{kind: tokNumber}
}

// quoted ends a quoted identifier whose opening quote q is at i; a doubled
// q stands for itself and there are no escapes.
func (l *lexer) quoted(i int, q byte, kind tokKind) token {
	s := l.s
	for j := i + 1; j < len(s); j++ {
		if s[j] != q {
			continue
		}
		if j+1 < len(s) && s[j+1] == q {
			j++
			continue
		}
		l.pos = j + 1
		return token{kind: kind, start: i + 1, end: j}
	}
	return l.fail()
}

// isSpace reports the whitespace of both servers: space, \t, \n, \v, \f, \r.
func isSpace(c byte) bool { return c == ' ' || ('\t' <= c && c <= '\r') }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

// isIdentCont reports the bytes that continue an unquoted identifier in
// both dialects; bytes of multi-byte UTF-8 characters count as letters.
func isIdentCont(c byte) bool {
	return isLetter(c) || isDigit(c) || c == '_' || c == '$' || c >= 0x80
}

// maxName is the longest name kept for table look-ups; longer names can
// only match by prefix.
const maxName = 64

// fold returns the text of t lower-cased in ASCII and truncated to maxName
// bytes, and whether it was truncated. The result is valid until the next
// call.
func (l *lexer) fold(t token) ([]byte, bool) {
	name := l.s[t.start:t.end]
	n := copy(l.buf[:], name)
	for i := 0; i < n; i++ {
		if c := l.buf[i]; 'A' <= c && c <= 'Z' {
			l.buf[i] = c + ('a' - 'A')
		}
	}
	return l.buf[:n], len(name) > maxName
}

// equalFold reports whether s equals the lower-case ASCII word lower,
// ignoring ASCII case.
func equalFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func hasPrefix(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == prefix
}
