package rwsplittest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// ownerFile is written into every node directory; it names the process that
// created the directory so that directories left behind by a test binary
// that was killed (and could not run Close) can be removed by a later run.
const ownerFile = "rwsplittest-owner"

var sweepOnce sync.Once

// writeOwner records the current process as the owner of dir.
func writeOwner(dir string) error {
	pid := os.Getpid()
	start, _ := procStartTime(pid)
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(fmt.Sprintf("%d %s\n", pid, start)), 0o600)
}

// ownerAlive reports whether the process recorded in dir's owner file still
// runs. Directories without a readable owner file count as alive (they are
// not ours or are still being set up).
func ownerAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return true
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		return true
	}
	if !processAlive(pid) {
		return false
	}
	start, ok := procStartTime(pid)
	return !ok || start == f[1]
}

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
			if ownerAlive(d) || serverAlive(d) {
				continue
			}
			pgCleanupShm(filepath.Join(d, "data"))
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
		if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && processAlive(pid) {
			return true
		}
	}
	return false
}
