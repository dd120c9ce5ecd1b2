package rwsplittest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/rwsplit/rwsplit/rwsplittest/internal/localos"
)

// ownerFile is written into every node directory; it names the process that
// created the directory so that directories left behind by a test binary
// that was killed (and could not run Close) can be removed by a later run.
const ownerFile = "rwsplittest-owner"

var sweepOnce sync.Once

// sweepStale removes node directories in base whose owning process is gone,
// after making sure their servers are gone too, and releases the shared
// memory a killed postmaster leaves behind. It runs once per process.
func (c *LocalCluster) sweepStale(base string) {
	sweepOnce.Do(func() {
		var dirs []string
		for _, pattern := range []string{"rwsplit-pg-*", "rwsplit-maria-*"} {
			m, _ := filepath.Glob(filepath.Join(base, pattern))
			dirs = append(dirs, m...)
		}
		for _, d := range dirs {
			if localos.OwnerAlive(d, ownerFile) || serverAlive(d) {
				continue
			}
			localos.CleanupShm(filepath.Join(d, "data"))
			if err := os.RemoveAll(d); err == nil {
				c.log("removed %s left behind by a killed test process", d)
			}
		}
	})
}

// serverAlive reports whether the pid file of a PostgreSQL or MariaDB
// server in node directory d names a live process.
func serverAlive(d string) bool {
	for _, pf := range []string{filepath.Join(d, "data", "postmaster.pid"), filepath.Join(d, "mysqld.pid")} {
		b, err := os.ReadFile(pf)
		if err != nil {
			continue
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && localos.ProcessAlive(pid) {
			return true
		}
	}
	return false
}
