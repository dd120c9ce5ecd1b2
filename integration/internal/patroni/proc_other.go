//go:build !linux

package patroni

import (
	"errors"
	"syscall"
)

func platformSupported() error {
	return errors.New("patroni: the Patroni harness runs on Linux only")
}

func sysProcAttr(*credential) *syscall.SysProcAttr { return nil }
func kill(int, syscall.Signal) error               { return nil }
func killTree(int)                                 {}
func processAlive(int) bool                        { return false }
func processesMatching(string) map[int]string      { return nil }
func procStartTime(int) (string, bool)             { return "", false }
func cleanupShm(string)                            {}
