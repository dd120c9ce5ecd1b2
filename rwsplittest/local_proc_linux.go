//go:build linux

package rwsplittest

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func platformSupported() error { return nil }

// sysProcAttr puts the child in its own process group, kills it when the
// test process dies and, when cred is not nil, runs it as that user.
func sysProcAttr(cred *credential) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cred != nil {
		a.Credential = &syscall.Credential{Uid: cred.uid, Gid: cred.gid}
	}
	return a
}

func toSyscall(s signal) syscall.Signal {
	switch s {
	case sigInt:
		return syscall.SIGINT
	case sigTerm:
		return syscall.SIGTERM
	case sigQuit:
		return syscall.SIGQUIT
	case sigStop:
		return syscall.SIGSTOP
	case sigCont:
		return syscall.SIGCONT
	default:
		return syscall.SIGKILL
	}
}

// signalPID sends s to one process. A process that is already gone is not
// an error.
func signalPID(pid int, s signal) error {
	err := syscall.Kill(pid, toSyscall(s))
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// signalTree sends s to the process group led by leader and to every direct
// child of leader together with the child's own process group. PostgreSQL
// backends call setsid(), so they are not in the postmaster's process group
// and have to be found through /proc.
//
// For sigStop and sigKill the leader is stopped first and the children are
// listed only once it is stopped, so it cannot fork new children that would
// be missed.
func signalTree(leader int, s signal) error {
	switch s {
	case sigStop, sigKill:
		if err := syscall.Kill(leader, syscall.SIGSTOP); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				return nil
			}
			return err
		}
		waitStopped(leader, 2*time.Second)
	}
	children := childPIDs(leader)
	sig := toSyscall(s)
	if s == sigCont {
		// Children first, the leader (which may fork new ones) last.
		for _, pid := range children {
			_ = syscall.Kill(-pid, sig)
			_ = syscall.Kill(pid, sig)
		}
		if err := syscall.Kill(-leader, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		return nil
	}
	err := syscall.Kill(-leader, sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	for _, pid := range children {
		_ = syscall.Kill(-pid, sig)
		_ = syscall.Kill(pid, sig)
	}
	return nil
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

// childPIDs lists the live direct children of ppid.
func childPIDs(ppid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
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

// removeSysVShm marks a System V shared memory segment for removal
// (shmctl(id, IPC_RMID, NULL)). PostgreSQL keeps a small interlock segment
// that is only removed on a clean postmaster exit; after SIGKILL it would
// leak once the data directory is deleted.
func removeSysVShm(id int) error {
	const ipcRMID = 0
	_, _, errno := syscall.Syscall(syscall.SYS_SHMCTL, uintptr(id), ipcRMID, 0)
	if errno != 0 && errno != syscall.EINVAL && errno != syscall.EIDRM {
		return errno
	}
	return nil
}

// procStartTime returns the start time of pid (clock ticks since boot,
// field 22 of /proc/<pid>/stat), used to tell a process from a later one
// that reuses its pid.
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
