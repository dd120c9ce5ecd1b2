//go:build !linux

package rwsplittest

import (
	"errors"
	"runtime"
	"syscall"
)

var errUnsupported = errors.New("rwsplittest: only supported on Linux (running on " + runtime.GOOS + ")")

func platformSupported() error { return errUnsupported }

func sysProcAttr(*credential) *syscall.SysProcAttr { return nil }

func signalPID(int, signal) error { return errUnsupported }

func signalTree(int, signal) error { return errUnsupported }

func childPIDs(int) []int { return nil }

func processAlive(int) bool { return false }

func removeSysVShm(int) error { return nil }

func procStartTime(int) (string, bool) { return "", false }
