package patroni

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rwsplit/rwsplit/rwsplittest/internal/localos"
)

// binaries are the programs a cluster runs.
type binaries struct {
	etcd, patroni, patronictl string
	pgBinDir                  string // postgres, initdb, pg_ctl, pg_basebackup, pg_rewind
	psql                      string
}

func lookPath(name string, dirs ...string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range dirs {
		if p := filepath.Join(d, name); localos.IsExecutable(p) {
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
	dirs = append(dirs, localos.PGVersionDirs()...)
	for _, d := range dirs {
		ok := true
		for _, tool := range []string{"postgres", "initdb", "pg_ctl", "pg_basebackup", "pg_rewind", "pg_controldata"} {
			if !localos.IsExecutable(filepath.Join(d, tool)) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		b.pgBinDir = d
		if b.psql = filepath.Join(d, "psql"); !localos.IsExecutable(b.psql) {
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

// credential is the account etcd, Patroni and PostgreSQL run as.
type credential = localos.Credential

// serverCredential returns the postgres system user when running as root
// (Patroni refuses to run as root), nil (the current user) otherwise.
func serverCredential() (*credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	const name = "postgres"
	c, err := localos.LookupUser(name)
	if err != nil {
		return nil, fmt.Errorf("patroni: running as root, but the %q system user Patroni must run as is not usable (%v); run \"make deps\" or run the tests as a non-root user", name, err)
	}
	return c, nil
}

// cleanEnv returns the environment for child processes: the current one
// without variables that would reconfigure PostgreSQL clients, etcd or
// Patroni (PG*, ETCD*, PATRONI*, Python's paths, locale), with a UTF-8 C
// locale, HOME and TMPDIR set to home when given, plus extra.
func cleanEnv(home string, extra ...string) []string {
	drop := []string{"PG", "ETCD", "PATRONI", "PYTHONPATH", "PYTHONHOME"}
	return localos.CleanEnv(home, drop, append([]string{"LC_ALL=C.UTF-8", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1"}, extra...))
}
