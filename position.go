package rwsplit

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// position is a replication position: a PostgreSQL LSN, or a MySQL /
// MariaDB GTID set kept as text and parsed once (maria, mysql), so that
// comparing positions on the read path allocates nothing.
type position struct {
	lsn   uint64
	gtid  string
	maria []mariaGTID               // MariaDB: one per domain, sorted by domain
	mysql map[string][]gtidInterval // MySQL: per source, merged intervals
}

// epoch names a primary's history: a PostgreSQL timeline, a MariaDB
// server_id, a MySQL server_uuid.
type epoch struct {
	n  uint64
	id string
}

// nodePosition is a node's position as a probe read it.
type nodePosition struct {
	pos        position
	epoch      epoch
	epochKnown bool
	at         int64 // monotime the probe was sent: the node had at least pos then
}

// newPosition returns the position of text in dialect d.
func newPosition(d *dialect, text string) (position, bool) { return d.parsePosition(text) }

// String is the position's text form, as the server writes it.
func (p position) String() string {
	if p.gtid != "" || p.maria != nil || p.mysql != nil {
		return p.gtid
	}
	return formatLSN(p.lsn)
}

func (e epoch) String() string {
	if e.id != "" {
		return e.id
	}
	return strconv.FormatUint(e.n, 10)
}

// positionOps compares and merges the positions of one dialect. The two
// predicates differ where a history can fork (MariaDB, after a failover
// that lost transactions): progress compares how far a node has got, for
// replication lag; history whether it has applied the very transactions,
// for read-your-writes.
type positionOps struct {
	progress func(have, need position) bool
	history  func(have, need position) bool
	merge    func(a, b position) position
}

var (
	lsnOps = positionOps{
		progress: lsnCovers,
		history:  lsnCovers,
		merge:    func(a, b position) position { return position{lsn: max(a.lsn, b.lsn)} },
	}
	mariaOps = positionOps{
		progress: func(have, need position) bool { return mariaProgressCovers(have.maria, need.maria) },
		history:  func(have, need position) bool { return mariaHistoryCovers(have.maria, need.maria) },
		merge:    mergeMaria,
	}
	// A MySQL GTID names its transaction uniquely (source UUID and
	// number): having got as far is having applied it.
	mysqlOps = positionOps{
		progress: mysqlCovers,
		history:  mysqlCovers,
		merge:    mergeMySQL,
	}
	noPositionOps = positionOps{
		progress: func(position, position) bool { return false },
		history:  func(position, position) bool { return false },
		merge:    func(_, b position) position { return b },
	}
)

// PostgreSQL positions are LSNs, byte offsets in the one WAL of a history.

func lsnCovers(have, need position) bool { return have.lsn >= need.lsn }

func parseLSNPosition(text string) (position, bool) {
	v, ok := parseLSN(text)
	return position{lsn: v}, ok
}

func formatLSN(v uint64) string {
	return strconv.FormatUint(v>>32, 16) + "/" + strconv.FormatUint(v&0xffffffff, 16)
}

// parseLSN parses PostgreSQL's "XXXXXXXX/XXXXXXXX" text form of an LSN.
func parseLSN(s string) (uint64, bool) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, false
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return h<<32 | l, true
}

// MariaDB GTID positions are lists of domain-server-sequence triples, one
// per replication domain ("0-1-42,1-2-7"). Sequence numbers grow within a
// domain whatever server wrote them, so position p covers q when every
// domain of q is in p with a sequence number at least as high.

func parseMariaPosition(text string) (position, bool) {
	g, ok := parseMariaGTIDList(text)
	return position{gtid: text, maria: g}, ok
}

// mariaProgressCovers reports whether a node at have has got as far as
// need in every domain of need, whichever server wrote its transactions.
func mariaProgressCovers(have, need []mariaGTID) bool {
	j := 0
	for _, g := range need {
		for j < len(have) && have[j].domain < g.domain {
			j++
		}
		seq := uint64(0)
		if j < len(have) && have[j].domain == g.domain {
			seq = have[j].seq
		}
		if seq < g.seq {
			return false
		}
	}
	return true
}

// mergeMaria returns the position that holds, per domain, the later of a's
// and b's transactions.
func mergeMaria(a, b position) position {
	out := make([]mariaGTID, 0, len(a.maria)+len(b.maria))
	i, j := 0, 0
	for i < len(a.maria) || j < len(b.maria) {
		switch {
		case j == len(b.maria) || (i < len(a.maria) && a.maria[i].domain < b.maria[j].domain):
			out = append(out, a.maria[i])
			i++
		case i == len(a.maria) || b.maria[j].domain < a.maria[i].domain:
			out = append(out, b.maria[j])
			j++
		default:
			g := b.maria[j] // the newer, on a tie of servers
			if a.maria[i].seq > g.seq {
				g = a.maria[i]
			}
			out = append(out, g)
			i++
			j++
		}
	}
	parts := make([]string, len(out))
	for k, g := range out {
		parts[k] = fmt.Sprintf("%d-%d-%d", g.domain, g.server, g.seq)
	}
	return position{gtid: strings.Join(parts, ","), maria: out}
}

// MySQL GTID sets name, per source UUID, the transaction numbers executed
// as intervals: "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:11,...". Set p
// covers q when q is a subset of p (GTID_SUBSET(q, p)).

type gtidInterval struct{ lo, hi uint64 }

func parseMySQLPosition(text string) (position, bool) {
	set, ok := parseMySQLGTIDSet(text)
	return position{gtid: text, mysql: set}, ok
}

// mysqlCovers reports whether need's GTID set is a subset of have's
// (GTID_SUBSET(need, have)).
func mysqlCovers(have, need position) bool { return mysqlSetCovers(have.mysql, need.mysql) }

// mergeMySQL returns the union of two GTID sets.
func mergeMySQL(a, b position) position {
	if mysqlSetCovers(a.mysql, b.mysql) {
		return a
	}
	if mysqlSetCovers(b.mysql, a.mysql) {
		return b
	}
	union := make(map[string][]gtidInterval, len(a.mysql)+len(b.mysql))
	for _, set := range []map[string][]gtidInterval{a.mysql, b.mysql} {
		for source, ivs := range set {
			union[source] = append(union[source], ivs...)
		}
	}
	for source, ivs := range union {
		union[source] = mergeIntervals(ivs)
	}
	return position{gtid: formatMySQLGTIDSet(union), mysql: union}
}

// intervalsContain reports whether the union of ivs (sorted, merged)
// contains iv.
func intervalsContain(ivs []gtidInterval, iv gtidInterval) bool {
	for _, x := range ivs {
		if x.lo <= iv.lo && iv.hi <= x.hi {
			return true
		}
	}
	return false
}

// parseMySQLGTIDSet parses a GTID set into sorted, merged intervals per
// lower-cased source UUID (or UUID:tag, MySQL 8.3+).
func parseMySQLGTIDSet(s string) (map[string][]gtidInterval, bool) {
	out := map[string][]gtidInterval{}
	s = strings.TrimSpace(s)
	if s == "" {
		return out, true
	}
	for _, part := range strings.Split(s, ",") {
		fields := strings.Split(strings.TrimSpace(part), ":")
		if len(fields) < 2 || !validUUID(fields[0]) {
			return nil, false
		}
		source := strings.ToLower(fields[0])
		for _, f := range fields[1:] {
			if f == "" {
				return nil, false
			}
			if !isDigitByte(f[0]) { // a tag (MySQL 8.3+): uuid:tag:1-5
				source = strings.ToLower(fields[0]) + ":" + strings.ToLower(f)
				continue
			}
			lo, hi, isRange := strings.Cut(f, "-")
			a, err := strconv.ParseUint(lo, 10, 64)
			if err != nil || a == 0 {
				return nil, false
			}
			b := a
			if isRange {
				if b, err = strconv.ParseUint(hi, 10, 64); err != nil || b < a {
					return nil, false
				}
			}
			out[source] = append(out[source], gtidInterval{a, b})
		}
	}
	for k, ivs := range out {
		out[k] = mergeIntervals(ivs)
	}
	return out, true
}

func mergeIntervals(ivs []gtidInterval) []gtidInterval {
	// Insertion sort: sets have few intervals.
	for i := 1; i < len(ivs); i++ {
		for j := i; j > 0 && ivs[j].lo < ivs[j-1].lo; j-- {
			ivs[j], ivs[j-1] = ivs[j-1], ivs[j]
		}
	}
	merged := ivs[:0]
	for _, iv := range ivs {
		if n := len(merged); n > 0 && iv.lo <= merged[n-1].hi+1 {
			if iv.hi > merged[n-1].hi {
				merged[n-1].hi = iv.hi
			}
			continue
		}
		merged = append(merged, iv)
	}
	return merged
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isDigitByte(c) && !('a' <= c|0x20 && c|0x20 <= 'f') {
				return false
			}
		}
	}
	return true
}

func isDigitByte(c byte) bool { return '0' <= c && c <= '9' }

// mariaGTID is the last transaction of one MariaDB replication domain.
type mariaGTID struct {
	domain, server uint32
	seq            uint64
}

// parseMariaGTIDList parses a MariaDB GTID position into one entry per
// domain (the highest sequence number where a domain repeats), sorted by
// domain.
func parseMariaGTIDList(s string) ([]mariaGTID, bool) {
	out := []mariaGTID{}
	s = strings.TrimSpace(s)
	if s == "" {
		return out, true
	}
	for _, part := range strings.Split(s, ",") {
		f := strings.Split(strings.TrimSpace(part), "-")
		if len(f) != 3 {
			return nil, false
		}
		domain, err1 := strconv.ParseUint(f[0], 10, 32)
		server, err2 := strconv.ParseUint(f[1], 10, 32)
		seq, err3 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, false
		}
		g := mariaGTID{uint32(domain), uint32(server), seq}
		i := 0
		for i < len(out) && out[i].domain < g.domain {
			i++
		}
		switch {
		case i < len(out) && out[i].domain == g.domain:
			if g.seq > out[i].seq {
				out[i] = g
			}
		default:
			out = append(out, mariaGTID{})
			copy(out[i+1:], out[i:])
			out[i] = g
		}
	}
	return out, true
}

// mariaHistoryCovers reports whether a node at have has applied need, for
// read-your-writes: in every domain of need, have holds a transaction of
// the same server with a sequence number at least as high. Sequence
// numbers alone are not enough: a node that applied a transaction the
// current primary never had (lost in a failover) can show a higher number
// in the same domain from another server, and has not seen need's write.
func mariaHistoryCovers(have, need []mariaGTID) bool {
	j := 0
	for _, n := range need {
		for j < len(have) && have[j].domain < n.domain {
			j++
		}
		if j == len(have) || have[j].domain != n.domain || have[j].server != n.server || have[j].seq < n.seq {
			return false
		}
	}
	return true
}

// mysqlSetCovers reports whether GTID set need is a subset of have.
func mysqlSetCovers(have, need map[string][]gtidInterval) bool {
	for source, ivs := range need {
		for _, iv := range ivs {
			if !intervalsContain(have[source], iv) {
				return false
			}
		}
	}
	return true
}

// formatMySQLGTIDSet writes a parsed GTID set in MySQL's text form, sources
// sorted.
func formatMySQLGTIDSet(set map[string][]gtidInterval) string {
	sources := make([]string, 0, len(set))
	for s := range set {
		sources = append(sources, s)
	}
	slices.Sort(sources)
	var b strings.Builder
	for i, s := range sources {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s)
		for _, iv := range set[s] {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(iv.lo, 10))
			if iv.hi != iv.lo {
				b.WriteByte('-')
				b.WriteString(strconv.FormatUint(iv.hi, 10))
			}
		}
	}
	return b.String()
}
