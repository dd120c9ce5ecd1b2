//go:build !linux

package localos

import (
	"errors"
	"runtime"
	"syscall"
	"time"
)

// Supported says that the local backends run on Linux only.
func Supported() error {
	return errors.New("only supported on Linux (running on " + runtime.GOOS + ")")
}

func SysProcAttr(*Credential) *syscall.SysProcAttr { return nil }
func ProcStat(int) (byte, int, bool)               { return 0, 0, false }
func ProcStartTime(int) (string, bool)             { return "", false }
func WaitStopped(int, time.Duration)               {}
func PIDs() []int                                  { return nil }
func ChildPIDs(int) []int                          { return nil }
func ProcessAlive(int) bool                        { return false }
func CleanupShm(string)                            {}
