package sqlclass

// keyword is an entry of the keyword table.
type keyword struct {
	r     reason
	flags uint8
}

const (
	// stmtOnly: the word only starts statements that are not reads; inside
	// a read it means something harmless (a column named "comment", FETCH
	// FIRST n ROWS ONLY), so it is only looked at as the first word.
	stmtOnly uint8 = 1 << iota
	// callIsRead: followed by "(" the word is a harmless function
	// (replace(str, from, to)).
	callIsRead
	// lockAfterFor: after FOR or KEY the word is a locking clause
	// (FOR UPDATE, FOR NO KEY UPDATE).
	lockAfterFor
)

// keywords holds every bare word (unquoted, any ASCII case) whose presence
// anywhere in the code of a statement makes it not a read (stmtOnly words:
// as its first word). A column or table named like one of them must be
// quoted to be read on a replica.
var keywords = map[string]keyword{
	// Data modification.
	"insert":  {rWriteKeyword, 0},
	"update":  {rWriteKeyword, lockAfterFor},
	"delete":  {rWriteKeyword, 0},
	"merge":   {rWriteKeyword, 0},
	"upsert":  {rWriteKeyword, 0},
	"replace": {rWriteKeyword, callIsRead},
	"copy":    {rWriteKeyword, 0},
	"load":    {rWriteKeyword, 0},
	"import":  {rWriteKeyword, 0},
	"handler": {rWriteKeyword, 0},
	"into":    {rInto, 0}, // SELECT ... INTO table / OUTFILE / DUMPFILE / @var

	// Definitions and privileges.
	"create":    {rWriteKeyword, 0},
	"drop":      {rWriteKeyword, 0},
	"alter":     {rWriteKeyword, 0},
	"truncate":  {rWriteKeyword, 0},
	"rename":    {rWriteKeyword, 0},
	"comment":   {rWriteKeyword, stmtOnly}, // COMMENT ON; elsewhere a column name
	"grant":     {rWriteKeyword, 0},
	"revoke":    {rWriteKeyword, 0},
	"security":  {rWriteKeyword, 0},
	"owner":     {rWriteKeyword, 0},
	"install":   {rWriteKeyword, 0},
	"uninstall": {rWriteKeyword, 0},

	// Maintenance.
	"vacuum":     {rWriteKeyword, 0},
	"analyze":    {rWriteKeyword, 0}, // also EXPLAIN ANALYZE, which runs the statement
	"analyse":    {rWriteKeyword, 0},
	"reindex":    {rWriteKeyword, 0},
	"cluster":    {rWriteKeyword, 0},
	"refresh":    {rWriteKeyword, 0},
	"checkpoint": {rWriteKeyword, 0},
	"optimize":   {rWriteKeyword, 0},
	"repair":     {rWriteKeyword, 0},
	"flush":      {rWriteKeyword, 0},
	"purge":      {rWriteKeyword, 0},
	"kill":       {rWriteKeyword, 0},

	// Procedures, prepared statements, cursors, notifications, settings.
	"call":       {rWriteKeyword, 0},
	"do":         {rWriteKeyword, 0},
	"set":        {rWriteKeyword, 0}, // also CAST(x AS CHAR CHARACTER SET cs): conservative
	"reset":      {rWriteKeyword, 0},
	"discard":    {rWriteKeyword, 0},
	"prepare":    {rWriteKeyword, 0},
	"execute":    {rWriteKeyword, 0},
	"deallocate": {rWriteKeyword, 0},
	"declare":    {rWriteKeyword, 0},
	"fetch":      {rWriteKeyword, stmtOnly}, // cursor FETCH; elsewhere FETCH FIRST n ROWS ONLY
	"move":       {rWriteKeyword, 0},
	"close":      {rWriteKeyword, 0},
	"listen":     {rWriteKeyword, 0},
	"unlisten":   {rWriteKeyword, 0},
	"notify":     {rWriteKeyword, 0},

	// Transactions.
	"begin":     {rWriteKeyword, 0},
	"start":     {rWriteKeyword, 0},
	"commit":    {rWriteKeyword, 0},
	"rollback":  {rWriteKeyword, 0},
	"savepoint": {rWriteKeyword, 0},
	"release":   {rWriteKeyword, 0},
	"xa":        {rWriteKeyword, 0},

	// Locks.
	"lock":   {rLocking, 0}, // LOCK TABLE(S), LOCK IN SHARE MODE
	"unlock": {rWriteKeyword, 0},
	"share":  {rLocking, 0}, // FOR SHARE, FOR KEY SHARE, LOCK IN SHARE MODE
	"nowait": {rLocking, 0},
	"skip":   {rLocking, 0}, // SKIP LOCKED

	// MySQL: keeps the row count for a later FOUND_ROWS() on the same
	// connection.
	"sql_calc_found_rows": {rSession, 0},
}

// functions holds the functions (matched by name, any ASCII case, any
// schema, quoted or not, when followed by "(") that change data or server
// state, or whose result depends on the session, so that they must run on
// the primary, on the connection the application expects. Functions of
// both dialects apply to both. A function the application defines itself
// cannot be seen into: see the package documentation.
var functions = map[string]reason{
	// PostgreSQL sequences (also MariaDB).
	"nextval": rFunction,
	"setval":  rFunction,
	"currval": rFunction,
	"lastval": rFunction,
	// PostgreSQL notifications, settings, WAL, backups, server control,
	// index maintenance, large objects. Advisory locks, statistics resets,
	// replication slots and origins, transaction ids, dblink and most large
	// object functions are matched by functionPrefixes.
	"pg_notify":                   rFunction,
	"set_config":                  rFunction,
	"setseed":                     rFunction,
	"pg_switch_wal":               rFunction,
	"pg_switch_xlog":              rFunction,
	"pg_promote":                  rFunction,
	"pg_reload_conf":              rFunction,
	"pg_rotate_logfile":           rFunction,
	"pg_rotate_logfile_old":       rFunction,
	"pg_terminate_backend":        rFunction,
	"pg_cancel_backend":           rFunction,
	"pg_logical_emit_message":     rFunction,
	"pg_replication_slot_advance": rFunction,
	"pg_export_snapshot":          rFunction,
	"pg_log_standby_snapshot":     rFunction,
	"pg_import_system_collations": rFunction,
	"pg_backup_start":             rFunction,
	"pg_backup_stop":              rFunction,
	"pg_start_backup":             rFunction,
	"pg_stop_backup":              rFunction,
	"pg_stat_statements_reset":    rFunction,
	"pg_file_write":               rFunction,
	"pg_file_rename":              rFunction,
	"pg_file_unlink":              rFunction,
	"pg_file_sync":                rFunction,
	"brin_summarize_new_values":   rFunction,
	"brin_summarize_range":        rFunction,
	"brin_desummarize_range":      rFunction,
	"gin_clean_pending_list":      rFunction,
	"lowrite":                     rFunction,
	"loread":                      rFunction,

	// MySQL and MariaDB.
	"get_lock":                          rFunction,
	"release_lock":                      rFunction,
	"release_all_locks":                 rFunction,
	"is_free_lock":                      rFunction,
	"is_used_lock":                      rFunction,
	"last_insert_id":                    rFunction,
	"row_count":                         rFunction,
	"found_rows":                        rFunction,
	"master_pos_wait":                   rFunction,
	"source_pos_wait":                   rFunction,
	"master_gtid_wait":                  rFunction,
	"wait_for_executed_gtid_set":        rFunction,
	"wait_until_sql_thread_after_gtids": rFunction,
}

// functionPrefixes extends functions to whole families.
var functionPrefixes = [...]struct {
	prefix string
	r      reason
}{
	{"pg_advisory_", rFunction},           // pg_advisory_lock, _xact_lock, _unlock, _unlock_all, _shared
	{"pg_try_advisory_", rFunction},       // pg_try_advisory_lock, _xact_lock, _shared
	{"pg_stat_reset", rFunction},          // pg_stat_reset, pg_stat_reset_shared, ..._single_table_counters
	{"pg_replication_origin_", rFunction}, // create, drop, session_setup, advance, ...
	{"pg_create_", rFunction},             // restore point, physical and logical replication slots
	{"pg_drop_", rFunction},               // pg_drop_replication_slot
	{"pg_copy_", rFunction},               // pg_copy_physical_replication_slot, ..._logical_...
	{"pg_logical_slot_get_", rFunction},   // consumes the slot's changes
	{"pg_current_", rFunction},            // pg_current_xact_id (assigns one), pg_current_wal_lsn, ...
	{"pg_wal_replay_", rFunction},         // pause, resume
	{"txid_current", rFunction},           // txid_current (assigns one), _if_assigned, _snapshot
	{"lo_", rFunction},                    // server-side large objects: lo_create, lo_import, lo_put, ...
	{"dblink", rFunction},                 // dblink_exec and the other dblink functions run SQL elsewhere
	{"to_reg", rCatalog},                  // to_regclass('t') and friends look the catalog up
}

// catalogName reports whether name (folded) designates the system catalog:
// a schema of system tables and views, or (PostgreSQL) an OID alias type,
// whose casts look the catalog up. mysql and sys only count as schema
// qualifiers, before a dot. PostgreSQL's pg_ names are checked by the caller.
func catalogName(name []byte, beforeDot, postgres bool) bool {
	switch string(name) {
	case "information_schema", "pg_catalog", "performance_schema":
		return true
	case "mysql", "sys":
		return beforeDot
	case "regclass", "regtype", "regproc", "regprocedure", "regoper", "regoperator",
		"regconfig", "regdictionary", "regnamespace", "regrole", "regcollation":
		return postgres
	}
	return false
}

// sessionResultVariable reports whether name (folded) is a MySQL system
// variable that holds a result of the session's last statements, like
// LAST_INSERT_ID(): @@identity, @@warning_count...
func sessionResultVariable(name []byte) bool {
	switch string(name) {
	case "identity", "last_insert_id", "insert_id", "warning_count", "error_count":
		return true
	}
	return false
}

// functionReason returns why calling the function name (folded; long
// when truncated) is not a read, or rRead.
func functionReason(name []byte, long bool) reason {
	if !long {
		if r, ok := functionIndex.get(name); ok {
			return r
		}
	}
	for _, p := range functionPrefixes {
		if hasPrefix(name, p.prefix) {
			return p.r
		}
	}
	return rRead
}

// Look-up copies of keywords and functions: open-addressing hash tables,
// faster than a map for the short, mostly absent names of SQL code.
var (
	keywordIndex  = newIndex(keywords)
	functionIndex = newIndex(functions)
)

type index[V any] struct {
	slots []indexSlot[V]
	mask  uint32
	// lengths[c] has bit n set when a name of n bytes starts with c
	// (n capped at 63): most names of a query are rejected by it alone.
	lengths [256]uint64
}

type indexSlot[V any] struct {
	name  string
	value V
}

func newIndex[V any](m map[string]V) index[V] {
	size := 16
	for size < 4*len(m) {
		size *= 2
	}
	ix := index[V]{slots: make([]indexSlot[V], size), mask: uint32(size - 1)}
	for name, v := range m {
		ix.lengths[name[0]] |= 1 << min(len(name), 63)
		i := hashName([]byte(name)) & ix.mask
		for ix.slots[i].name != "" {
			i = (i + 1) & ix.mask
		}
		ix.slots[i] = indexSlot[V]{name, v}
	}
	return ix
}

// get looks name (folded) up.
func (ix *index[V]) get(name []byte) (V, bool) {
	var zero V
	if len(name) == 0 || ix.lengths[name[0]]&(1<<min(len(name), 63)) == 0 {
		return zero, false
	}
	for i := hashName(name) & ix.mask; ; i = (i + 1) & ix.mask {
		s := &ix.slots[i]
		if s.name == "" {
			return zero, false
		}
		if s.name == string(name) {
			return s.value, true
		}
	}
}

// hashName is FNV-1a.
func hashName(name []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range name {
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}
