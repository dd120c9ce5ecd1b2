package rwsplittest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Where binaries are searched after PATH (variables so tests can hide
// them).
var (
	pgBinGlob      = "/usr/lib/postgresql/*/bin"
	mariaDBBinDirs = []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"}
)

type pgBins struct {
	initdb, postgres, basebackup, psql string
}

type mariaBins struct {
	server, install, client string
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
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
	dirs = append(dirs, pgVersionDirs()...)
	for _, d := range dirs {
		b := pgBins{
			initdb:     filepath.Join(d, "initdb"),
			postgres:   filepath.Join(d, "postgres"),
			basebackup: filepath.Join(d, "pg_basebackup"),
			psql:       filepath.Join(d, "psql"),
		}
		if !isExecutable(b.initdb) || !isExecutable(b.postgres) || !isExecutable(b.basebackup) {
			continue
		}
		if !isExecutable(b.psql) {
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

func findFirst(names []string, dirs []string) string {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	for _, d := range dirs {
		for _, n := range names {
			p := filepath.Join(d, n)
			if isExecutable(p) {
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
