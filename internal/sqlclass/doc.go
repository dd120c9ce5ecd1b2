// Package sqlclass decides whether an SQL statement is a pure read that may
// run on a read replica, or must run on the primary.
//
// The classifier is conservative: when it is unsure, a statement is not a
// read. Sending a read to the primary only costs load; sending a write, a
// lock or a session change to a replica fails or, worse, gives wrong
// answers. It is a lexer, not a parser: it looks at the code tokens of the
// statement (what is left once whitespace, comments, string literals and
// quoted identifiers are set aside) and never allocates.
//
// # Rules
//
// A statement is a read only if its first code token, after any opening
// parentheses, is SELECT, WITH, VALUES, TABLE, EXPLAIN or (PostgreSQL) SHOW,
// and none of the following occur in its code:
//
//   - a word of the keyword table (tables.go), in any ASCII case: data
//     modification (INSERT, UPDATE, DELETE, MERGE, REPLACE, INTO, ...),
//     definitions (CREATE, DROP, ALTER, ...), maintenance (VACUUM, ANALYZE,
//     ...), transactions, prepared statements, cursors, settings (SET),
//     notifications and locks (FOR UPDATE, FOR [KEY] SHARE, LOCK IN SHARE
//     MODE, NOWAIT, SKIP LOCKED). This catches data-modifying CTEs, SELECT
//     ... INTO and EXPLAIN ANALYZE (which runs the statement). REPLACE
//     followed by "(" is the string function; COMMENT and FETCH only count
//     as the first word (a column named comment, FETCH FIRST n ROWS ONLY).
//     A column or table named like one of the other words, unquoted, makes
//     the statement a write: quote it ("update", `update`) to have it read
//     on a replica;
//   - a call of a function of the function table that changes data or
//     server state or depends on the session: nextval, setval, currval,
//     lastval, advisory locks, pg_notify, set_config, txid_current,
//     large objects, replication slots, pg_stat_reset*, dblink*, MySQL's
//     GET_LOCK, RELEASE_LOCK, LAST_INSERT_ID, FOUND_ROWS, ROW_COUNT,
//     MASTER_POS_WAIT, ...; also MariaDB's NEXT VALUE FOR, PREVIOUS VALUE
//     FOR and seq.nextval. UUID_SHORT() is a read: its value depends on the
//     server, but it changes nothing the application can see;
//   - MySQL session state: user variables (@x, read or assigned with :=),
//     SQL_CALC_FOUND_ROWS and the system variables that hold results of
//     the session's last statements (@@identity, @@last_insert_id,
//     @@insert_id, @@warning_count, @@error_count); other system variables
//     (@@version) are reads, as PostgreSQL's SHOW is;
//   - the system catalog, which a migration tool must see as the primary
//     has it: information_schema, pg_catalog, performance_schema, the
//     qualifiers mysql. and sys., and in PostgreSQL any name starting with
//     pg_ that is not a function call (pg_class, pg_stat_activity; but
//     pg_typeof(x) and pg_sleep(0.1) are fine), the reg* OID alias types
//     ('t'::regclass) and to_reg*(). MySQL's SHOW, DESCRIBE and EXPLAIN t
//     are catalog reads too;
//   - a second statement: a ";" followed by more code (a trailing ";" is
//     fine).
//
// Anything the lexer cannot finish (an unterminated literal, quoted
// identifier, dollar quote or comment) is not a read; neither is an empty
// statement, nor a MySQL executable comment holding another comment.
//
// Names (functions, catalogs) are recognised quoted as well as unquoted;
// keywords only unquoted. PostgreSQL U&"..." identifiers are not decoded
// and so make a statement not a read.
//
// # Lexers
//
// PostgreSQL: -- comments, nested /* */ comments, '...' with doubled
// quotes (standard_conforming_strings on), E'...', B'...', X'...', N'...',
// U&'...', literal continuation across newlines, "quoted identifiers" and
// dollar quotes. A query holding a backslash is also classified as seen with
// standard_conforming_strings off, under the same terms as MySQL's settings
// below.
//
// MySQL and MariaDB: # comments, -- comments (only before whitespace or a
// control character), non-nesting /* */ comments, /*+ hints */, executable
// comments /*! ... */, /*!NNNNN ... */ and MariaDB's /*M! ... */ whose
// content is code, '...' and "..." with backslash escapes and doubled
// quotes, and `quoted identifiers`. A query is also classified under each
// server setting that could change its reading: backslash escapes off
// (NO_BACKSLASH_ESCAPES, ANSI_QUOTES) when it holds a backslash, and
// versioned executable comments as comments (an older server, or MySQL
// reading MariaDB's) when it holds one. It must be a read under each of
// them, or unterminated under that setting (a server with the setting
// rejects it before running anything). The connection character set is
// assumed to be UTF-8.
//
// Generic (an unknown driver): a read only if both the PostgreSQL and the
// MySQL rules call it one.
//
// # What it cannot see
//
// The classifier cannot see inside functions, procedures, views or rules
// that the application defines: SELECT my_func() is a read to it even when
// my_func writes. The servers catch that case (a hot standby or a read_only
// replica refuses the write), and the library then re-runs a read rejected
// by a replica as a write on the primary.
package sqlclass
