package rwsplit

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// dsnAddr returns host:port from a DSN in the forms the tested drivers
// accept (PostgreSQL URL or key=value, go-sql-driver/mysql), or "" when it
// finds none. It never returns credentials.
func dsnAddr(dsn string) string {
	if i := strings.Index(dsn, "://"); i > 0 {
		u, err := url.Parse(dsn)
		if err != nil || u.Host == "" {
			return ""
		}
		host := u.Host
		if i := strings.IndexByte(host, ','); i >= 0 { // multi-host URL: name the first
			host = host[:i]
		}
		if u.Port() == "" && !strings.Contains(host, ":") {
			host = net.JoinHostPort(host, "5432")
		}
		return host
	}
	if kv := keyValues(dsn); kv != nil {
		host := kv["host"]
		if host == "" || strings.HasPrefix(host, "/") {
			return ""
		}
		host, _, _ = strings.Cut(host, ",")
		port := kv["port"]
		if port == "" {
			port = "5432"
		}
		port, _, _ = strings.Cut(port, ",")
		return net.JoinHostPort(host, port)
	}
	// go-sql-driver/mysql: [user[:password]@][net[(addr)]]/dbname[?params]
	at := strings.LastIndexByte(dsn, '@')
	rest := dsn[at+1:]
	open, close := strings.IndexByte(rest, '('), strings.IndexByte(rest, ')')
	if open >= 0 && close > open {
		return rest[open+1 : close]
	}
	return ""
}

// keyValues parses a PostgreSQL key=value connection string, or returns nil
// when dsn is not one.
func keyValues(dsn string) map[string]string {
	s := strings.TrimSpace(dsn)
	if s == "" || !strings.Contains(s, "=") || strings.ContainsAny(strings.SplitN(s, "=", 2)[0], "@/(") {
		return nil
	}
	kv := map[string]string{}
	for s != "" {
		key, rest, ok := strings.Cut(s, "=")
		if !ok {
			return nil
		}
		key = strings.TrimSpace(key)
		rest = strings.TrimLeft(rest, " \t")
		var val string
		if strings.HasPrefix(rest, "'") {
			var b strings.Builder
			i := 1
			for ; i < len(rest); i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
					b.WriteByte(rest[i])
					continue
				}
				if rest[i] == '\'' {
					break
				}
				b.WriteByte(rest[i])
			}
			val, rest = b.String(), rest[min(i+1, len(rest)):]
		} else {
			end := strings.IndexAny(rest, " \t\n")
			if end < 0 {
				end = len(rest)
			}
			val, rest = rest[:end], rest[end:]
		}
		kv[key] = val
		s = strings.TrimSpace(rest)
	}
	return kv
}

// dsnPassword returns the password a DSN carries, or "".
func dsnPassword(dsn string) string {
	if strings.Contains(dsn, "://") {
		if u, err := url.Parse(dsn); err == nil && u.User != nil {
			p, _ := u.User.Password()
			return p
		}
		// An unparsable URL: take what stands between "user:" and "@".
		rest := dsn[strings.Index(dsn, "://")+3:]
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			if _, p, ok := strings.Cut(rest[:at], ":"); ok {
				return p
			}
		}
		return ""
	}
	if kv := keyValues(dsn); kv != nil {
		return kv["password"]
	}
	if at := strings.LastIndexByte(dsn, '@'); at >= 0 {
		if _, p, ok := strings.Cut(dsn[:at], ":"); ok {
			return p
		}
	}
	return ""
}

// redact returns err unchanged when its text holds neither the DSN nor its
// password, and otherwise a new error with both masked. The masked error
// does not unwrap to the original, whose text would leak them.
func redact(err error, dsn string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	masked := msg
	if dsn != "" {
		masked = strings.ReplaceAll(masked, dsn, "[dsn]")
	}
	if p := dsnPassword(dsn); p != "" {
		masked = strings.ReplaceAll(masked, p, "xxxxx")
		if e := url.QueryEscape(p); e != p {
			masked = strings.ReplaceAll(masked, e, "xxxxx")
		}
	}
	if masked == msg {
		return err
	}
	return errors.New(masked)
}

// checkPostgresDSN reports what is structurally wrong with a PostgreSQL
// connection string, for drivers (pgx) that parse it only when they first
// connect. It checks the form, the ports and sslmode; the message names
// the problem and never repeats the DSN. It accepts what it does not know.
func checkPostgresDSN(dsn string) error {
	var hosts, ports []string
	var params map[string]string
	if i := strings.Index(dsn, "://"); i >= 0 {
		scheme := dsn[:i]
		if scheme != "postgres" && scheme != "postgresql" {
			return errors.New("URL scheme is not postgres or postgresql")
		}
		rest := dsn[i+3:]
		authority, tail, _ := strings.Cut(rest, "/")
		if j := strings.IndexByte(authority, '?'); j >= 0 {
			authority, tail = authority[:j], authority[j:]
		}
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			authority = authority[at+1:]
		}
		for _, hp := range strings.Split(authority, ",") {
			if hp == "" {
				continue
			}
			if strings.HasPrefix(hp, "[") { // [v6]:port
				end := strings.IndexByte(hp, ']')
				if end < 0 {
					return errors.New("unterminated [ in the host")
				}
				hp = "h" + hp[end+1:]
			}
			if _, port, ok := strings.Cut(hp, ":"); ok {
				ports = append(ports, port)
			}
			hosts = append(hosts, hp)
		}
		_, query, _ := strings.Cut(tail, "?")
		values, err := url.ParseQuery(query)
		if err != nil {
			return errors.New("malformed URL query parameters")
		}
		params = map[string]string{}
		for k, v := range values {
			params[k] = v[len(v)-1]
		}
	} else {
		params = keyValues(dsn)
		if params == nil {
			return errors.New("not a PostgreSQL URL or key=value connection string")
		}
		if p := params["port"]; p != "" {
			ports = strings.Split(p, ",")
		}
	}
	if p := params["port"]; p != "" && len(ports) == 0 {
		ports = strings.Split(p, ",")
	}
	for _, p := range ports {
		if p == "" {
			continue
		}
		n := 0
		for _, c := range p {
			if c < '0' || c > '9' {
				return errors.New("port is not a number")
			}
			n = n*10 + int(c-'0')
			if n > 65535 {
				return errors.New("port is out of range")
			}
		}
	}
	switch params["sslmode"] {
	case "", "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
	default:
		return errors.New("sslmode is not one of disable, allow, prefer, require, verify-ca, verify-full")
	}
	return nil
}

// nodeNames names the nodes opened from DSNs by their host:port, addrs,
// in order: "primary" or "replicaN" where a DSN has none, and a suffix for
// nodes on one host:port (different databases).
func nodeNames(addrs []string) []string {
	names := make([]string, len(addrs))
	for i, name := range addrs {
		if name == "" {
			name = "primary"
			if i > 0 {
				name = fmt.Sprintf("replica%d", i)
			}
		}
		for j := 0; j < i; j++ {
			if names[j] == name {
				name = fmt.Sprintf("%s#%d", name, i)
				break
			}
		}
		names[i] = name
	}
	return names
}
