package rwsplittest

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/rwsplit/rwsplit/rwsplittest/internal/localos"
)

// Where binaries are searched after PATH (variables so tests can hide
// them).
var (
	mariaDBBinDirs = []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"}
)

type pgBins struct {
	initdb, postgres, basebackup, psql string
}

type mariaBins struct {
	server, install, client string
}

// findPostgres locates the PostgreSQL server tools. The server-side tools
// (postgres, initdb, pg_basebackup) are taken from one directory so that
// their versions match: the directory of "postgres" in PATH if there is one,
// otherwise the highest /usr/lib/postgresql/<version>/bin.
func findPostgres() (pgBins, error) {
	var dirs []string
	if p, err := exec.LookPath("postgres"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	dirs = append(dirs, localos.PGVersionDirs()...)
	for _, d := range dirs {
		b := pgBins{
			initdb:     filepath.Join(d, "initdb"),
			postgres:   filepath.Join(d, "postgres"),
			basebackup: filepath.Join(d, "pg_basebackup"),
			psql:       filepath.Join(d, "psql"),
		}
		if !localos.IsExecutable(b.initdb) || !localos.IsExecutable(b.postgres) || !localos.IsExecutable(b.basebackup) {
			continue
		}
		if !localos.IsExecutable(b.psql) {
			p, err := exec.LookPath("psql")
			if err != nil {
				continue
			}
			b.psql = p
		}
		return b, nil
	}
	return pgBins{}, fmt.Errorf("rwsplittest: PostgreSQL binaries not found (need postgres, initdb, pg_basebackup and psql in PATH or in /usr/lib/postgresql/<version>/bin); run \"make deps\" to install them")
}

func findFirst(names []string, dirs []string) string {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	for _, d := range dirs {
		for _, n := range names {
			p := filepath.Join(d, n)
			if localos.IsExecutable(p) {
				return p
			}
		}
	}
	return ""
}

func findMariaDB() (mariaBins, error) {
	dirs := mariaDBBinDirs
	b := mariaBins{
		server:  findFirst([]string{"mariadbd", "mysqld"}, dirs),
		install: findFirst([]string{"mariadb-install-db", "mysql_install_db"}, dirs),
		client:  findFirst([]string{"mariadb", "mysql"}, dirs),
	}
	var missing []string
	if b.server == "" {
		missing = append(missing, "mariadbd/mysqld")
	}
	if b.install == "" {
		missing = append(missing, "mariadb-install-db/mysql_install_db")
	}
	if b.client == "" {
		missing = append(missing, "mariadb/mysql client")
	}
	if len(missing) > 0 {
		return mariaBins{}, fmt.Errorf("rwsplittest: MariaDB binaries not found (%s; looked in PATH, /usr/sbin and /usr/bin); run \"make deps\" to install them", strings.Join(missing, ", "))
	}
	return b, nil
}
