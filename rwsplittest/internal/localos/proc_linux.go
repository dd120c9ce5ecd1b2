//go:build linux

package localos

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Supported is nil where the local backends run: Linux.
func Supported() error { return nil }

// SysProcAttr puts the child in its own process group, kills it when the
// test process dies and, when cred is not nil, runs it as that user. The
// child stays a child of the test process (unlike runuser or su), so its
// pid is the one to wait for and signal.
func SysProcAttr(cred *Credential) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cred != nil {
		a.Credential = &syscall.Credential{Uid: cred.UID, Gid: cred.GID, Groups: cred.Groups}
	}
	return a
}

// ProcStat returns the state letter and the parent pid of a process.
func ProcStat(pid int) (state byte, ppid int, ok bool) {
	f, ok := statFields(pid)
	if !ok || len(f) < 2 || len(f[0]) == 0 {
		return 0, 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], ppid, true
}

// ProcStartTime returns the start time of pid (clock ticks since boot,
// field 22 of /proc/<pid>/stat), which tells a process from a later one
// that reuses its pid.
func ProcStartTime(pid int) (string, bool) {
	f, ok := statFields(pid)
	if !ok || len(f) < 20 {
		return "", false
	}
	return f[19], true
}

// statFields returns the fields of /proc/<pid>/stat after the command
// name (which may contain spaces and parentheses).
func statFields(pid int) ([]string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, false
	}
	return strings.Fields(s[i+1:]), true
}

// WaitStopped waits up to timeout for pid to be stopped or gone.
func WaitStopped(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		st, _, ok := ProcStat(pid)
		if !ok || st == 'T' || st == 't' || st == 'Z' || st == 'X' {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// PIDs lists the numeric entries of /proc.
func PIDs() []int {
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

// ChildPIDs lists the live direct children of ppid.
func ChildPIDs(ppid int) []int {
	var out []int
	for _, pid := range PIDs() {
		st, pp, ok := ProcStat(pid)
		if ok && pp == ppid && st != 'Z' && st != 'X' {
			out = append(out, pid)
		}
	}
	return out
}

// ProcessAlive reports whether pid exists and is not a zombie.
func ProcessAlive(pid int) bool {
	st, _, ok := ProcStat(pid)
	return ok && st != 'Z' && st != 'X'
}

// CleanupShm removes the System V shared memory interlock segment that a
// SIGKILLed postmaster leaves behind (a clean or immediate shutdown
// removes it), as its postmaster.pid in dataDir records it. It does
// nothing while that postmaster runs or while the segment is attached.
func CleanupShm(dataDir string) {
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
	if pid, err := strconv.Atoi(strings.TrimSpace(lines[0])); err == nil && ProcessAlive(pid) {
		return
	}
	if shmUnattached(key, id) {
		const ipcRMID = 0
		_, _, _ = syscall.Syscall(syscall.SYS_SHMCTL, uintptr(id), ipcRMID, 0)
	}
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
	ii, ok2 := col["shmid"]
	ni, ok3 := col["nattch"]
	if !ok1 || !ok2 || !ok3 {
		return false
	}
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) <= max(ki, ii, ni) {
			continue
		}
		k, _ := strconv.ParseInt(fs[ki], 10, 64)
		i, _ := strconv.Atoi(fs[ii])
		if k == key && i == id {
			return fs[ni] == "0"
		}
	}
	return false
}
