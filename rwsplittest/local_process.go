package rwsplittest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rwsplit/rwsplit/rwsplittest/internal/localos"
)

// cleanEnv returns the environment for child processes: the current one
// without variables that would redirect or reconfigure the clients and
// servers (PG*, MYSQL*, MARIADB*, locale), with the C locale (so messages
// such as "Address already in use" are not translated) plus extra. When
// home is set, HOME and TMPDIR point to it.
func cleanEnv(home string, extra ...string) []string {
	return localos.CleanEnv(home, []string{"PG", "MYSQL", "MARIADB"}, append([]string{"LC_ALL=C", "LANG=C"}, extra...))
}

// serverCommand returns the program and arguments that run the node's
// server in the foreground.
func (n *LocalNode) serverCommand() (string, []string) {
	port := n.Port()
	if n.c.kind == MariaDB {
		return n.c.maria.server, n.mariaServerArgs(port)
	}
	return n.c.pg.postgres, n.pgServerArgs(port)
}

// spawn starts the server process with stdout and stderr appended to the
// node's log file.
func (n *LocalNode) spawn() (*server, error) {
	bin, args := n.serverCommand()
	f, err := os.OpenFile(n.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open server log: %w", err)
	}
	if err := n.c.chown(n.logPath); err != nil {
		f.Close()
		return nil, err
	}
	fmt.Fprintf(f, "\n==== rwsplittest: %s starting %s %s ====\n", time.Now().Format(time.RFC3339Nano), filepath.Base(bin), strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Dir = n.dir
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = cleanEnv(n.dir)
	cmd.SysProcAttr = localos.SysProcAttr(n.c.cred)
	err = cmd.Start()
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	s := &server{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// runTool runs a helper program (initdb, pg_basebackup, psql, mariadb, ...)
// to completion and returns its stdout. With asServer it runs as the server
// user inside the node directory. The error carries the tail of stderr (or
// of stdout when stderr is empty).
func (c *LocalCluster) runTool(ctx context.Context, n *LocalNode, asServer bool, stdin string, extraEnv []string, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var cred *credential
	home := ""
	if asServer {
		cred = c.cred
		cmd.Dir = n.dir
		home = n.dir
	}
	cmd.Env = cleanEnv(home, extraEnv...)
	cmd.SysProcAttr = localos.SysProcAttr(cred)
	cmd.Cancel = func() error { return signalPID(-cmd.Process.Pid, sigKill) }
	cmd.WaitDelay = 5 * time.Second
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		if len(msg) > 4000 {
			msg = "..." + msg[len(msg)-4000:]
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		if msg != "" {
			return stdout.String(), fmt.Errorf("%s: %w: %s", filepath.Base(bin), err, msg)
		}
		return stdout.String(), fmt.Errorf("%s: %w", filepath.Base(bin), err)
	}
	return stdout.String(), nil
}

// copyTree copies the directory tree src to dst (which must not exist),
// keeping permission bits, and gives it to the server user.
func (c *LocalCluster) copyTree(src, dst string) error {
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(target, info.Mode().Perm())
		case info.Mode().IsRegular():
			return copyFile(p, target, info.Mode().Perm())
		default:
			return nil // sockets, pipes: not part of a fresh install
		}
	})
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return c.chownTree(dst)
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
