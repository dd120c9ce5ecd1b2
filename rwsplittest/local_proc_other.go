//go:build !linux

package rwsplittest

import "github.com/rwsplit/rwsplit/rwsplittest/internal/localos"

func signalPID(int, signal) error { return localos.Supported() }

func signalTree(int, signal) error { return localos.Supported() }
