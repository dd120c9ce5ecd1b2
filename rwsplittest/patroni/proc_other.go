//go:build !linux

package patroni

import "syscall"

func kill(int, syscall.Signal) error          { return nil }
func killTree(int)                            {}
func processesMatching(string) map[int]string { return nil }
