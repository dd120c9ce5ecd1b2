package sqlclass

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// FuzzClassify checks that no input makes the classifier panic, that its
// answers agree with each other, and that whatever it calls a read passes
// an independent oracle: a separate, simpler masking of comments and
// literals, after which no write keyword, side-effecting function call,
// catalog name or second statement may be left in the code.
func FuzzClassify(f *testing.F) {
	for _, c := range corpus {
		f.Add(c.SQL)
	}
	for _, s := range []string{
		"SELECT $a$ $b$ $a$", "SELECT $$", "SELECT $", "SELECT $1$", "SELECT a$$b$$",
		"SELECT 1e'x'", "SELECT 1e5update", "SELECT 1for update", "SELECT E'\\", "SELECT U&'x' UESCAPE '!'",
		"SELECT 'a'\n'b'", "SELECT 'a' -- c\n'b\\'", "SELECT E'a'\r'\\'' ; DELETE", "SELECT b'1'''",
		"/*/*/**/*/*/ SELECT 1", "SELECT /*! 1 */ */", "SELECT /*!123456 1 */", "SELECT /*M!1 x */",
		"SELECT 1 --\x00update", "SELECT 1 # x\x00 update", "SELECT 1 --\x7fupdate", "SELECT @", "SELECT @@",
		"SELECT \"\"", "SELECT ``", "SELECT ''''", "select\tREPLACE\n(x)", "SELECT replace", "( ( (",
		"SELECT 1;;;;", "SELECT 1; ;x", "\xff\xfe SELECT", "SELECT \xffupdate", "SELECT pg_(x)",
		strings.Repeat("(", 100) + "SELECT 1", "SELECT " + strings.Repeat("x", 100) + "(1)",
		"SELECT pg_stat_reset" + strings.Repeat("_x", 40) + "()",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		g, p, m := IsRead(Generic, q), IsRead(Postgres, q), IsRead(MySQL, q)
		for _, d := range []Dialect{Generic, Postgres, MySQL} {
			if why, read := Why(d, q), IsRead(d, q); (why == "read") != read {
				t.Fatalf("%s %q: Why %q, IsRead %v", d, q, why, read)
			}
		}
		if g != (p && m) {
			t.Fatalf("%q: Generic %v, Postgres %v, MySQL %v", q, g, p, m)
		}
		// A read never pins a connection, and Generic pins whenever
		// either dialect would.
		for _, d := range []Dialect{Postgres, MySQL} {
			if IsRead(d, q) && ChangesSession(d, q) {
				t.Fatalf("%s read %q changes the session", d, q)
			}
		}
		if sp, sm := ChangesSession(Postgres, q), ChangesSession(MySQL, q); (sp || sm) && !ChangesSession(Generic, q) {
			t.Fatalf("%q: Postgres %v, MySQL %v, Generic false", q, sp, sm)
		}
		if p {
			if v := oracleAll(q, false); v != "" {
				t.Fatalf("Postgres read %q: %s", q, v)
			}
		}
		if m {
			if v := oracleAll(q, true); v != "" {
				t.Fatalf("MySQL read %q: %s", q, v)
			}
		}
	})
}

func TestOracleAgreesOnCorpus(t *testing.T) {
	for _, c := range corpus {
		if IsRead(Postgres, c.SQL) {
			if v := oracleAll(c.SQL, false); v != "" {
				t.Errorf("Postgres read %q: %s", c.SQL, v)
			}
		}
		if IsRead(MySQL, c.SQL) {
			if v := oracleAll(c.SQL, true); v != "" {
				t.Errorf("MySQL read %q: %s", c.SQL, v)
			}
		}
	}
	// The oracle itself must see what it is meant to see.
	for _, q := range []string{"SELECT 1; DELETE", "SELECT x FOR UPDATE", "SELECT nextval ('s')", "SELECT 'x",
		"SELECT 'a\\'; DELETE FROM t; -- '", "SELECT /*!50000 'x */ ; DELETE FROM t; -- ' */ 1"} {
		if oracleAll(q, false) == "" || oracleAll(q, true) == "" {
			t.Errorf("the oracle finds nothing wrong with %q", q)
		}
	}
}

// TestOracleOnFragments complements FuzzClassify with statements built from
// the fragments where the lexers' rules meet: quotes, escapes, comment
// markers, dollar tags, newlines and the words the rules look for.
func TestOracleOnFragments(t *testing.T) {
	fragments := []string{
		" ", "\n", "\r", "\t", "'", "''", "\"", "`", "\\", "$", "$$", "$a$", "$1", "E'", "e'", "B'", "X'",
		"N'", "U&'", "U&\"", "-", "--", "-- ", "--\n", "#", "/*", "*/", "/*!", "/*!50000", "/*M!", "/*+",
		";", "(", ")", ".", ",", "@", "@@", ":=", ":", "=", "update", "UPDATE", "nextval", "replace",
		"pg_class", "mysql", "sys", "information_schema", "for", "share", "value", "next", "x", "1", "1e5",
		"a$", "\x00", "\x7f", "\xc3\xa9", "select", "into",
		"\\'", "'\n'", "*", "/", "/*/", "**/", "0x", "`x`", "\"\"", "key", "no", "lock", "in", "@x", "--\t", "\v",
		"\f", "u&", "&", "$b$", "$a", "previous", "currval", "pg_", "to_regclass", "regclass", "performance_schema",
		"get_lock", "lo_x", "fetch", "comment", "explain", "show", "desc", "/*!1", "/*!123456", "*/ ", "\n'", "-- x\n'",
	}
	starts := []string{"SELECT ", "(", "/* */ SELECT ", "EXPLAIN ", "WITH x AS (", "(SELECT ", "VALUES ", "SHOW ", "TABLE "}
	n := 40000
	if testing.Short() {
		n = 4000
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	for range n {
		b.Reset()
		b.WriteString(starts[rng.IntN(len(starts))])
		for range 1 + rng.IntN(14) {
			b.WriteString(fragments[rng.IntN(len(fragments))])
		}
		q := b.String()
		p, m := IsRead(Postgres, q), IsRead(MySQL, q)
		if IsRead(Generic, q) != (p && m) {
			t.Fatalf("%q: Generic disagrees", q)
		}
		if p {
			if v := oracleAll(q, false); v != "" {
				t.Fatalf("Postgres read %q: %s", q, v)
			}
		}
		if m {
			if v := oracleAll(q, true); v != "" {
				t.Fatalf("MySQL read %q: %s", q, v)
			}
		}
	}
}

// oracleAll returns what is wrong with q for a read in PostgreSQL (with
// standard_conforming_strings on and off) or MySQL (with and without
// backslash escapes and ANSI_QUOTES, versioned comments as code and as
// comments), or "". Only the default reading must lex: a server whose
// setting makes q unterminated refuses it.
func oracleAll(q string, mysql bool) string {
	if !mysql {
		for _, backslash := range []bool{false, true} {
			code, ok := maskPostgres(q, backslash)
			if v := oracle(code, ok, !backslash, mysql); v != "" {
				return v
			}
		}
		return ""
	}
	for _, esc := range [][2]bool{{true, true}, {true, false}, {false, false}} {
		for _, versioned := range []bool{false, true} {
			code, ok := maskMySQL(q, esc[0], esc[1], versioned)
			if v := oracle(code, ok, esc == [2]bool{true, true} && !versioned, mysql); v != "" {
				return v
			}
		}
	}
	return ""
}

// oracle returns what is wrong for a read with code, a query masked by
// maskPostgres or maskMySQL, or "".
func oracle(code []byte, ok, mustLex, mysql bool) string {
	if !ok {
		if mustLex {
			return "the oracle finds an unterminated literal or comment"
		}
		return ""
	}
	// Words: maximal runs of identifier bytes.
	for i := 0; i < len(code); {
		if !oracleWordByte(code[i]) {
			i++
			continue
		}
		j := i
		for j < len(code) && oracleWordByte(code[j]) {
			j++
		}
		w := strings.ToLower(string(code[i:j]))
		k := j
		for k < len(code) && strings.IndexByte(" \t\n\r\f\v", code[k]) >= 0 {
			k++
		}
		call := k < len(code) && code[k] == '('
		if kw, ok := keywords[w]; ok && kw.flags&stmtOnly == 0 && !(kw.flags&callIsRead != 0 && call) {
			return "keyword " + w
		}
		if _, ok := functions[w]; ok && call {
			return "function " + w
		}
		if w == "information_schema" || w == "pg_catalog" || w == "performance_schema" {
			return "catalog " + w
		}
		if !mysql && strings.HasPrefix(w, "pg_") && !call {
			return "catalog " + w
		}
		i = j
	}
	// Statements.
	if k := strings.IndexByte(string(code), ';'); k >= 0 {
		if rest := strings.Trim(string(code[k:]), "; \t\n\r\f\v"); rest != "" {
			return "a second statement"
		}
	}
	return ""
}

func oracleWordByte(c byte) bool {
	return c >= 0x80 || c == '_' || c == '$' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func oracleLetter(c byte) bool {
	return c >= 0x80 || c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// litMark stands for a literal or quoted identifier in masked code.
const litMark = 0x01

// maskPostgres returns q with its comments replaced by spaces and its
// literals and quoted identifiers by litMark and spaces, reading it as PostgreSQL does with
// standard_conforming_strings on, or off if backslashStrings; ok is false if
// something does not end.
func maskPostgres(q string, backslashStrings bool) (code []byte, ok bool) {
	code = []byte(q)
	blank := func(from, to int) {
		for k := from; k < to && k < len(code); k++ {
			code[k] = ' '
		}
	}
	lit := func(from, to int) {
		blank(from, to)
		code[from] = litMark
	}
	// literal blanks the quoted text opened at start (prefix included)
	// whose first quote is at open, following continuations, and returns
	// the index after it, or -1.
	literal := func(start, open int, backslash, doubled bool) int {
		k := open + 1
		for {
			for {
				if k >= len(q) {
					return -1
				}
				if q[k] == '\\' && backslash {
					k += 2
					continue
				}
				if q[k] == '\'' {
					if doubled && k+1 < len(q) && q[k+1] == '\'' {
						k += 2
						continue
					}
					break
				}
				k++
			}
			k++ // closing quote
			// Continuation: whitespace with a newline, -- comments, quote.
			m, newline := k, false
			for m < len(q) {
				if q[m] == '\n' || q[m] == '\r' {
					newline = true
					m++
				} else if strings.IndexByte(" \t\f\v", q[m]) >= 0 {
					m++
				} else if strings.HasPrefix(q[m:], "--") {
					for m < len(q) && q[m] != '\n' && q[m] != '\r' {
						m++
					}
				} else {
					break
				}
			}
			if !newline || m >= len(q) || q[m] != '\'' {
				lit(start, k)
				return k
			}
			k = m + 1
		}
	}
	inWord := false
	for i := 0; i < len(q); {
		c := q[i]
		if inWord && (oracleWordByte(c)) {
			i++
			continue
		}
		if !inWord && '0' <= c && c <= '9' {
			// A number: digits and an optional exponent.
			for i < len(q) && '0' <= q[i] && q[i] <= '9' {
				i++
			}
			if j := i; j < len(q) && (q[j] == 'e' || q[j] == 'E') {
				j++
				if j < len(q) && (q[j] == '+' || q[j] == '-') {
					j++
				}
				if j < len(q) && '0' <= q[j] && q[j] <= '9' {
					for j < len(q) && '0' <= q[j] && q[j] <= '9' {
						j++
					}
					i = j
				}
			}
			continue
		}
		if !inWord && oracleLetter(c) {
			lc := c | 0x20
			nx := byte(0)
			if i+1 < len(q) {
				nx = q[i+1]
			}
			end := 0
			switch {
			case lc == 'e' && nx == '\'':
				end = literal(i, i+1, true, true)
			case (lc == 'b' || lc == 'x') && nx == '\'':
				end = literal(i, i+1, false, false)
			case lc == 'n' && nx == '\'':
				end = literal(i, i+1, backslashStrings, true)
			case lc == 'u' && strings.HasPrefix(q[i+1:], "&'"):
				end = literal(i, i+2, false, true)
			case lc == 'u' && strings.HasPrefix(q[i+1:], "&\""):
				return nil, true // an escaped identifier: the classifier refuses it
			}
			if end < 0 {
				return nil, false
			}
			if end > 0 {
				i = end
				continue
			}
			inWord = true
			i++
			continue
		}
		inWord = false
		switch {
		case strings.HasPrefix(q[i:], "--"):
			j := i
			for j < len(q) && q[j] != '\n' && q[j] != '\r' {
				j++
			}
			blank(i, j)
			i = j
		case strings.HasPrefix(q[i:], "/*"):
			depth, j := 0, i
			for {
				if j+1 >= len(q) {
					return nil, false
				}
				if q[j] == '/' && q[j+1] == '*' {
					depth++
					j += 2
				} else if q[j] == '*' && q[j+1] == '/' {
					depth--
					j += 2
					if depth == 0 {
						break
					}
				} else {
					j++
				}
			}
			blank(i, j)
			i = j
		case c == '\'':
			end := literal(i, i, backslashStrings, true)
			if end < 0 {
				return nil, false
			}
			i = end
		case c == '"':
			j := i + 1
			for ; j < len(q); j++ {
				if q[j] == '"' {
					if j+1 < len(q) && q[j+1] == '"' {
						j++
						continue
					}
					break
				}
			}
			if j >= len(q) {
				return nil, false
			}
			lit(i, j+1)
			i = j + 1
		case c == '$' && i+1 < len(q) && '0' <= q[i+1] && q[i+1] <= '9':
			// A parameter.
			i++
			for i < len(q) && '0' <= q[i] && q[i] <= '9' {
				i++
			}
		case c == '$':
			j := i + 1
			if j < len(q) && oracleLetter(q[j]) {
				for j < len(q) && oracleWordByte(q[j]) && q[j] != '$' {
					j++
				}
			}
			if j < len(q) && q[j] == '$' {
				tag := q[i : j+1]
				k := strings.Index(q[j+1:], tag)
				if k < 0 {
					return nil, false
				}
				end := j + 1 + k + len(tag)
				lit(i, end)
				i = end
			} else {
				i++
			}
		default:
			i++
		}
	}
	return code, true
}

// maskMySQL is maskPostgres for MySQL: sqEscapes and dqEscapes tell whether
// backslash escapes apply in '...' and "..."; versionedComments whether
// /*!NNNNN and /*M! comments are comments rather than code.
func maskMySQL(q string, sqEscapes, dqEscapes, versionedComments bool) (code []byte, ok bool) {
	code = []byte(q)
	blank := func(from, to int) {
		for k := from; k < to && k < len(code); k++ {
			code[k] = ' '
		}
	}
	lit := func(from, to int) {
		blank(from, to)
		code[from] = litMark
	}
	exec := false
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '#' || strings.HasPrefix(q[i:], "--") && (i+2 == len(q) || q[i+2] <= ' ' || q[i+2] == 0x7f):
			j := i
			for j < len(q) && q[j] != '\n' && q[j] != 0 {
				j++
			}
			blank(i, j)
			i = j
		case exec && strings.HasPrefix(q[i:], "*/"):
			blank(i, i+2)
			exec = false
			i += 2
		case strings.HasPrefix(q[i:], "/*!") || strings.HasPrefix(q[i:], "/*M!"):
			j := i + 3
			if q[i+2] == 'M' {
				j++
			}
			d := 0
			for j+d < len(q) && '0' <= q[j+d] && q[j+d] <= '9' {
				d++
			}
			if d >= 5 {
				j += min(d, 6)
			}
			if versionedComments && (d >= 5 || q[i+2] == 'M') {
				k := strings.Index(q[j:], "*/")
				if k < 0 {
					return nil, false
				}
				blank(i, j+k+2)
				i = j + k + 2
				continue
			}
			blank(i, j)
			exec = true
			i = j
		case strings.HasPrefix(q[i:], "/*"):
			k := strings.Index(q[i+2:], "*/")
			if k < 0 {
				return nil, false
			}
			blank(i, i+2+k+2)
			i += 2 + k + 2
		case c == '\'' || c == '"' || c == '`':
			j := i + 1
			for ; j < len(q); j++ {
				if q[j] == '\\' && (c == '\'' && sqEscapes || c == '"' && dqEscapes) {
					j++
					continue
				}
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c {
						j++
						continue
					}
					break
				}
			}
			if j >= len(q) {
				return nil, false
			}
			lit(i, j+1)
			i = j + 1
		default:
			i++
		}
	}
	if exec {
		return nil, false
	}
	return code, true
}
