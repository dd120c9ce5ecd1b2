// Package localos holds what the kit's local backends share about the
// machine they start servers on: where server binaries are, which
// directory and ports to use, the account servers run as, and the
// ownership marks that let a later run remove what a killed test process
// left behind. The process helpers are in proc_linux.go.
package localos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PGBinGlob is where PostgreSQL server binaries are searched after PATH.
var PGBinGlob = "/usr/lib/postgresql/*/bin"

// IsExecutable reports whether path is a regular file someone may run.
func IsExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// PGVersionDirs returns the directories PGBinGlob matches, highest
// PostgreSQL version first.
func PGVersionDirs() []string {
	matches, _ := filepath.Glob(PGBinGlob)
	version := func(p string) float64 {
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(p)), 64)
		if err != nil {
			return -1
		}
		return v
	}
	sort.SliceStable(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	return matches
}

// BaseTempDir returns the directory server directories are created in:
// os.TempDir() unless its path is too long for Unix sockets or, when
// servers run as another user, it is not searchable by others; then /tmp.
func BaseTempDir() string {
	d := os.TempDir()
	if len(d) > 60 {
		return "/tmp"
	}
	if os.Geteuid() == 0 {
		for p := d; ; p = filepath.Dir(p) {
			fi, err := os.Stat(p)
			if err != nil || fi.Mode().Perm()&0o001 == 0 {
				return "/tmp"
			}
			if p == filepath.Dir(p) {
				break
			}
		}
	}
	return d
}

var (
	portMu    sync.Mutex
	usedPorts = map[int]bool{}
)

// PickPort returns a currently free TCP port on 127.0.0.1 that this
// process has not handed out before (to either backend). Another process
// may still take it before the server binds it; the window is small.
func PickPort() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("pick a free port on 127.0.0.1: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portMu.Lock()
		if !usedPorts[port] {
			usedPorts[port] = true
			portMu.Unlock()
			return port, nil
		}
		portMu.Unlock()
	}
	return 0, errors.New("pick a free port on 127.0.0.1: no unused port found")
}

// ReleasePort lets PickPort hand out port again.
func ReleasePort(port int) {
	portMu.Lock()
	delete(usedPorts, port)
	portMu.Unlock()
}

// Credential is the account servers run as.
type Credential struct {
	UID, GID uint32
	Groups   []uint32 // supplementary groups
	Name     string
}

// LookupUser returns the credential of the system user name.
func LookupUser(name string) (*Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %q has a non-numeric uid/gid %q/%q", name, u.Uid, u.Gid)
	}
	c := &Credential{UID: uint32(uid), GID: uint32(gid), Name: name}
	gids, _ := u.GroupIds()
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			c.Groups = append(c.Groups, uint32(n))
		}
	}
	return c, nil
}

// CleanEnv returns the environment for child processes: the current one
// without the variables whose names start with one of drop or that set
// the locale, with HOME and TMPDIR pointing to home when it is set (a
// server running as another user may not write to the caller's), then
// set.
func CleanEnv(home string, drop, set []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		dropped := strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" ||
			((k == "HOME" || k == "TMPDIR") && home != "")
		for _, p := range drop {
			dropped = dropped || strings.HasPrefix(k, p)
		}
		if !dropped {
			env = append(env, kv)
		}
	}
	if home != "" {
		env = append(env, "HOME="+home, "TMPDIR="+home)
	}
	return append(env, set...)
}

// WriteOwner records the current process in the file name of dir, as
// the owner of the servers started there.
func WriteOwner(dir, name string) error {
	pid := os.Getpid()
	start, _ := ProcStartTime(pid)
	return os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf("%d %s\n", pid, start)), 0o600)
}

// OwnerAlive reports whether the process recorded in dir's owner file
// name still runs. Directories without a readable owner file count as
// alive (not ours, or still being set up).
func OwnerAlive(dir, name string) bool {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return true
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		return true
	}
	if !ProcessAlive(pid) {
		return false
	}
	start, ok := ProcStartTime(pid)
	return !ok || start == f[1]
}

// SleepCtx waits d, or until ctx is done and returns its error.
func SleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
