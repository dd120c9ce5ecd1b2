//go:build linux

package patroni

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func platformSupported() error { return nil }

// sysProcAttr puts the child in its own process group, kills it when the
// test process dies and, when cred is not nil, runs it as that user. The
// child stays a child of the test process (unlike runuser or su), so its
// pid is the one we wait for and signal.
func sysProcAttr(cred *credential) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cred != nil {
		a.Credential = &syscall.Credential{Uid: cred.uid, Gid: cred.gid, Groups: cred.groups}
	}
	return a
}

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
		waitStopped(p, time.Second)
		all = append(all, p)
		queue = append(queue, childPIDs(p)...)
	}
	_ = kill(-pid, syscall.SIGKILL)
	for _, p := range all {
		_ = kill(p, syscall.SIGKILL)
	}
}

// procStat returns the state letter and the parent pid of a process.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || len(f[0]) == 0 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], ppid, true
}

func waitStopped(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		st, _, ok := procStat(pid)
		if !ok || st == 'T' || st == 't' || st == 'Z' || st == 'X' {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// pids lists the numeric entries of /proc.
func pids() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// childPIDs lists the live direct children of ppid.
func childPIDs(ppid int) []int {
	var out []int
	for _, pid := range pids() {
		st, pp, ok := procStat(pid)
		if ok && pp == ppid && st != 'Z' && st != 'X' {
			out = append(out, pid)
		}
	}
	return out
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	st, _, ok := procStat(pid)
	return ok && st != 'Z' && st != 'X'
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
	for _, pid := range pids() {
		if pid == self || !processAlive(pid) {
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

// procStartTime returns the start time of pid (field 22 of
// /proc/<pid>/stat), which tells a process from a later one reusing its
// pid.
func procStartTime(pid int) (string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", false
	}
	return f[19], true
}

// cleanupShm releases the System V shared memory interlock segment a
// SIGKILLed postmaster leaves behind (a clean or immediate shutdown
// removes it). It does nothing while the postmaster named in
// postmaster.pid runs or while the segment is attached.
func cleanupShm(dataDir string) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 {
		return
	}
	f := strings.Fields(lines[6])
	if len(f) != 2 {
		return
	}
	key, err1 := strconv.ParseInt(f[0], 10, 64)
	id, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(lines[0])); err == nil && processAlive(pid) {
		return
	}
	if !shmUnattached(key, id) {
		return
	}
	const ipcRMID = 0
	_, _, _ = syscall.Syscall(syscall.SYS_SHMCTL, uintptr(id), ipcRMID, 0)
}

// shmUnattached reports whether /proc/sysvipc/shm lists a segment with the
// given key and id and no attached process.
func shmUnattached(key int64, id int) bool {
	f, err := os.Open("/proc/sysvipc/shm")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return false
	}
	col := map[string]int{}
	for i, h := range strings.Fields(sc.Text()) {
		col[h] = i
	}
	ki, ok1 := col["key"]
	si, ok2 := col["shmid"]
	ni, ok3 := col["nattch"]
	if !ok1 || !ok2 || !ok3 {
		return false
	}
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) <= ki || len(fs) <= si || len(fs) <= ni {
			continue
		}
		k, _ := strconv.ParseInt(fs[ki], 10, 64)
		s, _ := strconv.Atoi(fs[si])
		if k == key && s == id {
			return fs[ni] == "0"
		}
	}
	return false
}
