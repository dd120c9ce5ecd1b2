package rwsplit

import (
	"slices"
	"strconv"
	"strings"
)

// MariaDB GTID positions are lists of domain-server-sequence triples, one
// per replication domain ("0-1-42,1-2-7"). Sequence numbers grow within a
// domain whatever server wrote them, so position p covers q when every
// domain of q is in p with a sequence number at least as high.

// mariaGTIDCovers reports whether p covers q, and whether both parsed.
func mariaGTIDCovers(p, q string) (covers, ok bool) {
	pl, ok1 := parseMariaGTIDList(p)
	ql, ok2 := parseMariaGTIDList(q)
	if !ok1 || !ok2 {
		return false, false
	}
	j := 0
	for _, g := range ql {
		for j < len(pl) && pl[j].domain < g.domain {
			j++
		}
		have := uint64(0)
		if j < len(pl) && pl[j].domain == g.domain {
			have = pl[j].seq
		}
		if have < g.seq {
			return false, true
		}
	}
	return true, true
}

// MySQL GTID sets name, per source UUID, the transaction numbers executed
// as intervals: "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:11,...". Set p
// covers q when q is a subset of p (GTID_SUBSET(q, p)).

type gtidInterval struct{ lo, hi uint64 }

// mysqlGTIDCovers reports whether GTID set q is a subset of p, and whether
// both parsed.
func mysqlGTIDCovers(p, q string) (covers, ok bool) {
	ps, ok1 := parseMySQLGTIDSet(p)
	qs, ok2 := parseMySQLGTIDSet(q)
	if !ok1 || !ok2 {
		return false, false
	}
	for uuid, qiv := range qs {
		piv := ps[uuid]
		for _, iv := range qiv {
			if !intervalsContain(piv, iv) {
				return false, true
			}
		}
	}
	return true, true
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
