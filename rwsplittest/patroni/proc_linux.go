//go:build linux

package patroni

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rwsplit/rwsplit/rwsplittest/internal/localos"
)

// kill sends sig to pid; a process that is already gone is not an error.
func kill(pid int, sig syscall.Signal) error {
	if pid <= 0 && pid > -2 {
		return nil
	}
	err := syscall.Kill(pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// killTree SIGKILLs pid, its process group and every descendant.
// PostgreSQL backends are children of the postmaster but not in its
// process group, so they are found through /proc. Each process is stopped
// before its children are listed, so none can fork a child that would be
// missed.
func killTree(pid int) {
	if pid <= 0 {
		return
	}
	stopped := map[int]bool{}
	queue := []int{pid}
	var all []int
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if stopped[p] {
			continue
		}
		stopped[p] = true
		if syscall.Kill(p, syscall.SIGSTOP) != nil {
			continue
		}
		localos.WaitStopped(p, time.Second)
		all = append(all, p)
		queue = append(queue, localos.ChildPIDs(p)...)
	}
	_ = kill(-pid, syscall.SIGKILL)
	for _, p := range all {
		_ = kill(p, syscall.SIGKILL)
	}
}

// processesMatching returns the live processes whose command line
// contains token. Every process a cluster starts has its token in its
// command line: etcd and Patroni through their data and configuration
// paths, the postmaster through -D, and PostgreSQL's other processes
// through their title, which starts with cluster_name (the scope).
func processesMatching(token string) map[int]string {
	out := map[int]string{}
	if token == "" {
		return out
	}
	self := os.Getpid()
	for _, pid := range localos.PIDs() {
		if pid == self || !localos.ProcessAlive(pid) {
			continue
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil || !bytes.Contains(b, []byte(token)) {
			continue
		}
		out[pid] = strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
	}
	return out
}
