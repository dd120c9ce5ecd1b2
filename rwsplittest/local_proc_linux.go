//go:build linux

package rwsplittest

import (
	"errors"
	"syscall"
	"time"

	"github.com/rwsplit/rwsplit/rwsplittest/internal/localos"
)

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
		localos.WaitStopped(leader, 2*time.Second)
	}
	children := localos.ChildPIDs(leader)
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
