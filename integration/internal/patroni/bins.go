package patroni

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// pgBinGlob is where PostgreSQL server binaries are searched after PATH.
var pgBinGlob = "/usr/lib/postgresql/*/bin"

// binaries are the programs a cluster runs.
type binaries struct {
	etcd, patroni, patronictl string
	pgBinDir                  string // postgres, initdb, pg_ctl, pg_basebackup, pg_rewind
	psql                      string
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

func lookPath(name string, dirs ...string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range dirs {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p
		}
	}
	return ""
}

// findBinaries locates etcd, patroni, patronictl and one PostgreSQL
// server directory (the directory of "postgres" in PATH if any, otherwise
// the highest /usr/lib/postgresql/<version>/bin).
func findBinaries() (binaries, error) {
	b := binaries{
		etcd:       lookPath("etcd", "/usr/bin", "/usr/local/bin"),
		patroni:    lookPath("patroni", "/usr/bin", "/usr/local/bin"),
		patronictl: lookPath("patronictl", "/usr/bin", "/usr/local/bin"),
	}
	var missing []string
	for name, p := range map[string]string{"etcd": b.etcd, "patroni": b.patroni, "patronictl": b.patronictl} {
		if p == "" {
			missing = append(missing, name)
		}
	}
	var dirs []string
	if p, err := exec.LookPath("postgres"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	dirs = append(dirs, pgVersionDirs()...)
	for _, d := range dirs {
		ok := true
		for _, tool := range []string{"postgres", "initdb", "pg_ctl", "pg_basebackup", "pg_rewind", "pg_controldata"} {
			if !isExecutable(filepath.Join(d, tool)) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		b.pgBinDir = d
		if b.psql = filepath.Join(d, "psql"); !isExecutable(b.psql) {
			b.psql = lookPath("psql")
		}
		break
	}
	if b.pgBinDir == "" || b.psql == "" {
		missing = append(missing, "PostgreSQL server binaries (postgres, initdb, pg_ctl, pg_basebackup, pg_rewind, psql)")
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return binaries{}, fmt.Errorf("patroni: %s not found in PATH, /usr/bin or /usr/lib/postgresql/<version>/bin; run \"make deps\" (scripts/deps.sh) to install them", strings.Join(missing, ", "))
	}
	return b, nil
}

// pgVersionDirs returns /usr/lib/postgresql/*/bin, highest version first.
func pgVersionDirs() []string {
	matches, _ := filepath.Glob(pgBinGlob)
	version := func(p string) float64 {
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(p)), 64)
		if err != nil {
			return -1
		}
		return v
	}
	sort.SliceStable(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	return matches
}

// credential is the account etcd, Patroni and PostgreSQL run as.
type credential struct {
	uid, gid uint32
	groups   []uint32
	name     string
}

// serverCredential returns the postgres system user when running as root
// (Patroni refuses to run as root), nil (the current user) otherwise.
func serverCredential() (*credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	const name = "postgres"
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("patroni: running as root, but the %q system user Patroni must run as does not exist (%v); run \"make deps\" or run the tests as a non-root user", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("patroni: user %q has a non-numeric uid/gid %q/%q", name, u.Uid, u.Gid)
	}
	c := &credential{uid: uint32(uid), gid: uint32(gid), name: name}
	gids, _ := u.GroupIds()
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			c.groups = append(c.groups, uint32(n))
		}
	}
	return c, nil
}

// baseTempDir returns the directory cluster directories are created in:
// os.TempDir() unless its path is too long for Unix sockets or, when the
// servers run as another user, it is not searchable by others; then /tmp.
func baseTempDir() string {
	d := os.TempDir()
	if len(d) > 60 {
		return "/tmp"
	}
	if os.Geteuid() == 0 {
		for p := d; ; p = filepath.Dir(p) {
			fi, err := os.Stat(p)
			if err != nil || fi.Mode().Perm()&0o001 == 0 {
				return "/tmp"
			}
			if p == filepath.Dir(p) {
				break
			}
		}
	}
	return d
}

// cleanEnv returns the environment for child processes: the current one
// without variables that would reconfigure PostgreSQL clients, etcd or
// Patroni (PG*, ETCD*, PATRONI_*, locale), with the C locale, HOME and
// TMPDIR set to home when given, plus extra.
func cleanEnv(home string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "PG"), strings.HasPrefix(k, "ETCD"), strings.HasPrefix(k, "PATRONI"),
			strings.HasPrefix(k, "LC_"), k == "LANG", k == "LANGUAGE", k == "PYTHONPATH", k == "PYTHONHOME":
			continue
		case (k == "HOME" || k == "TMPDIR") && home != "":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C.UTF-8", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1")
	if home != "" {
		env = append(env, "HOME="+home, "TMPDIR="+home)
	}
	return append(env, extra...)
}
