package rwsplittest

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

//go:embed postgres.sh
var postgresScript string

//go:embed mariadb.sh
var mariadbScript string

// flavor is what differs between the servers in containers.
type flavor struct {
	name   string
	script string // the kit's start script
	port   string // the server's port in the container
	driver string // the database/sql driver of the DSNs
	dsn    func(hostPort int) string
}

var (
	postgresFlavor = flavor{
		name: "PostgreSQL", script: postgresScript, port: "5432/tcp", driver: "pgx",
		dsn: func(p int) string {
			return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", AppUser, AppPassword, p, AppUser)
		},
	}
	mariadbFlavor = flavor{
		name: "MariaDB", script: mariadbScript, port: "3306/tcp", driver: "mysql",
		dsn: func(p int) string {
			return fmt.Sprintf("%s:%s@tcp(127.0.0.1:%d)/%s", AppUser, AppPassword, p, AppUser)
		},
	}
)

// The accounts of a container cluster besides the application user's
// (AppUser, AppPassword), who owns the database of its name.
const (
	superPassword = "super-secret"
	replPassword  = "repl-secret"
)

// RunPostgres starts a PostgreSQL primary and its streaming replicas, one
// container each, from image (the official postgres images, 15 and
// later, as published: the kit brings its own start script and runs the
// image's initdb and pg_basebackup), on a Docker network of the cluster's
// own. Each node's port 5432 is mapped on 127.0.0.1 only, to a port that
// stays the same across restarts.
func RunPostgres(ctx context.Context, image string, opts ...Option) (*Cluster, error) {
	return runContainers(ctx, postgresFlavor, image, opts)
}

// RunMariaDB starts a MariaDB primary and its replicas, one container each,
// from image (the official mariadb images, 10.11 and 11, as published: the
// kit brings its own start script and runs the image's mariadb-install-db),
// on a Docker network of the cluster's own. Replication uses GTIDs
// (MASTER_USE_GTID=slave_pos); replicas are read_only with log_bin and
// log_slave_updates; the application user has no READ_ONLY ADMIN, and the
// replicas create no accounts (they get the primary's). Each node's port
// 3306 is mapped on 127.0.0.1 only, to a port that stays the same across
// restarts. [WithReplicaDelay] is MASTER_DELAY, in whole seconds.
func RunMariaDB(ctx context.Context, image string, opts ...Option) (*Cluster, error) {
	return runContainers(ctx, mariadbFlavor, image, opts)
}

func runContainers(ctx context.Context, fl flavor, image string, opts []Option) (*Cluster, error) {
	cfg := newConfig(opts)
	if cfg.replicas < 0 {
		return nil, errors.New("rwsplittest: WithReplicas: negative")
	}
	start := time.Now()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, fmt.Errorf("rwsplittest: docker: %w", err)
	}
	nw, err := tcnetwork.New(ctx)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("rwsplittest: network: %w", err)
	}
	b := &containers{fl: fl, cli: cli, net: nw, image: image, cfg: cfg, former: map[int]bool{}}
	fail := func(err error) (*Cluster, error) {
		if cerr := b.close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	for i := 0; i <= cfg.replicas; i++ {
		port, err := freePort()
		if err != nil {
			return fail(err)
		}
		b.nodes = append(b.nodes, &ctrNode{alias: "node" + strconv.Itoa(i), port: port})
	}
	if err := b.startNode(ctx, 0, "primary"); err != nil {
		return fail(err)
	}
	errs := make([]error, len(b.nodes))
	var wg sync.WaitGroup
	for i := 1; i < len(b.nodes); i++ {
		wg.Go(func() { errs[i] = b.startNode(ctx, i, "replica") })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}
	cfg.logf("rwsplittest: %s cluster (%s, 1 primary, %d replicas) ready in %v", fl.name, image, cfg.replicas, time.Since(start).Round(time.Millisecond))
	return &Cluster{be: b, n: cfg.replicas}, nil
}

// containers is the container backend.
type containers struct {
	fl    flavor
	cli   *testcontainers.DockerClient
	net   *testcontainers.DockerNetwork
	image string
	cfg   config
	nodes []*ctrNode

	mu      sync.Mutex
	primary int          // guarded by mu
	former  map[int]bool // nodes that lost the primary role (guarded by mu)
}

type ctrNode struct {
	alias string
	port  int // on 127.0.0.1, fixed for the cluster's life
	ctr   testcontainers.Container
}

// freePort returns a TCP port free on 127.0.0.1 now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (b *containers) startNode(ctx context.Context, i int, role string) error {
	n := b.nodes[i]
	env := map[string]string{
		"RWS_ROLE":           role,
		"RWS_NODE":           strconv.Itoa(i),
		"RWS_PRIMARY":        b.nodes[0].alias,
		"RWS_APP_USER":       AppUser,
		"RWS_APP_PASSWORD":   AppPassword,
		"RWS_SUPER_PASSWORD": superPassword,
		"RWS_REPL_PASSWORD":  replPassword,
		"RWS_SETTINGS":       strings.Join(b.cfg.settings, "\n"),
	}
	if role == "replica" && b.cfg.delay > 0 {
		env["RWS_DELAY_MS"] = strconv.FormatInt(b.cfg.delay.Milliseconds(), 10)
	}
	port := strconv.Itoa(n.port)
	req := testcontainers.ContainerRequest{
		Image:      b.image,
		Entrypoint: []string{"/bin/sh", "/rwsplittest/start.sh"},
		Cmd:        []string{"start"},
		Env:        env,
		Files: []testcontainers.ContainerFile{{
			Reader:            strings.NewReader(b.fl.script),
			ContainerFilePath: "/rwsplittest/start.sh",
			FileMode:          0o755,
		}},
		Networks:       []string{b.net.Name},
		NetworkAliases: map[string][]string{b.net.Name: {n.alias}},
		ExposedPorts:   []string{b.fl.port},
		ConfigModifier: func(c *container.Config) {
			c.Hostname = n.alias
		},
		HostConfigModifier: func(hc *container.HostConfig) {
			// Published on 127.0.0.1 only, on a port of the kit's choosing
			// that a restart keeps.
			hc.PortBindings = network.PortMap{
				network.MustParsePort(b.fl.port): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: port}},
			}
		},
		WaitingFor: wait.ForExec([]string{"/bin/sh", "/rwsplittest/start.sh", "ready"}).
			WithPollInterval(200 * time.Millisecond).
			WithStartupTimeout(2 * time.Minute),
	}
	ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	if ctr != nil {
		n.ctr = ctr
	}
	if err != nil {
		return fmt.Errorf("rwsplittest: node %d (%s): %w", i, role, err)
	}
	return nil
}

func (b *containers) driverName() string { return b.fl.driver }

func (b *containers) dsn(i int) string { return b.fl.dsn(b.nodes[i].port) }

func (b *containers) addr(i int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.nodes[i].port))
}

func (b *containers) id(i int) (string, error) {
	if b.nodes[i].ctr == nil {
		return "", fmt.Errorf("rwsplittest: node %d has no container", i)
	}
	return b.nodes[i].ctr.GetContainerID(), nil
}

// crash kills the node's container at once and waits until it is down.
func (b *containers) crash(ctx context.Context, i int) error {
	id, err := b.id(i)
	if err != nil {
		return err
	}
	if _, err := b.cli.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		return fmt.Errorf("rwsplittest: crash node %d: %w", i, err)
	}
	for {
		st, err := b.nodes[i].ctr.State(ctx)
		if err != nil {
			return fmt.Errorf("rwsplittest: crash node %d: %w", i, err)
		}
		if !st.Running {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (b *containers) freeze(ctx context.Context, i int) error {
	id, err := b.id(i)
	if err != nil {
		return err
	}
	_, err = b.cli.ContainerPause(ctx, id, client.ContainerPauseOptions{})
	return err
}

func (b *containers) thaw(ctx context.Context, i int) error {
	id, err := b.id(i)
	if err != nil {
		return err
	}
	_, err = b.cli.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
	return err
}

// restart starts the node's container again and waits until it answers.
// A node that lost the primary role comes back as a fresh replica of the
// current primary.
func (b *containers) restart(ctx context.Context, i int) error {
	n := b.nodes[i]
	b.mu.Lock()
	lost, primary := b.former[i], b.primary
	b.mu.Unlock()
	if lost {
		err := n.ctr.CopyToContainer(ctx, []byte(b.nodes[primary].alias), "/rwsplittest/follow", 0o644)
		if err != nil {
			return fmt.Errorf("rwsplittest: restart node %d: %w", i, err)
		}
	}
	if err := n.ctr.Start(ctx); err != nil {
		return fmt.Errorf("rwsplittest: restart node %d: %w", i, err)
	}
	if lost {
		b.mu.Lock()
		delete(b.former, i)
		b.mu.Unlock()
	}
	return nil
}

// exec runs the start script with args in node i.
func (b *containers) exec(ctx context.Context, i int, args ...string) error {
	_, err := b.execOut(ctx, i, args...)
	return err
}

// execOut runs the start script with args in node i and returns what it
// printed.
func (b *containers) execOut(ctx context.Context, i int, args ...string) (string, error) {
	code, out, err := b.nodes[i].ctr.Exec(ctx, append([]string{"/bin/sh", "/rwsplittest/start.sh"}, args...), tcexec.Multiplexed())
	if err != nil {
		return "", err
	}
	msg, _ := io.ReadAll(out)
	if code != 0 {
		return "", fmt.Errorf("%s: exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(string(msg)))
	}
	return strings.TrimSpace(string(msg)), nil
}

// running reports whether node i's container runs (and is not paused).
func (b *containers) running(ctx context.Context, i int) (bool, error) {
	st, err := b.nodes[i].ctr.State(ctx)
	if err != nil {
		return false, err
	}
	return st.Running && !st.Paused, nil
}

func (b *containers) promote(ctx context.Context, i int) error {
	b.mu.Lock()
	old := b.primary
	b.mu.Unlock()
	if i == old {
		return nil
	}
	st, err := b.nodes[old].ctr.State(ctx)
	if err != nil {
		return err
	}
	if st.Paused {
		if err := b.thaw(ctx, old); err != nil {
			return err
		}
	}
	if st.Running {
		// Fencing: the old primary takes no write once another is promoted.
		if err := b.crash(ctx, old); err != nil {
			return fmt.Errorf("rwsplittest: fencing node %d: %w", old, err)
		}
	}
	if err := b.exec(ctx, i, "promote"); err != nil {
		return fmt.Errorf("rwsplittest: promote node %d: %w", i, err)
	}
	b.mu.Lock()
	b.primary = i
	b.former[old] = true
	b.mu.Unlock()
	var errs []error
	for j := range b.nodes {
		if j == i || j == old {
			continue
		}
		if ok, err := b.running(ctx, j); err != nil || !ok {
			continue
		}
		if err := b.follow(ctx, j, i); err != nil {
			errs = append(errs, fmt.Errorf("node %d: %w", j, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rwsplittest: repointing replicas: %w", err)
	}
	return nil
}

// follow repoints replica j to the primary i and waits until it
// replicates from it. A PostgreSQL standby that does not within followWait
// (it received more than the new primary had, and cannot follow its
// timeline) is rebuilt from a base backup of i.
func (b *containers) follow(ctx context.Context, j, i int) error {
	alias := b.nodes[i].alias
	if err := b.exec(ctx, j, "follow", alias); err != nil {
		return err
	}
	check := []string{"streaming", alias}
	if b.fl.driver == "pgx" {
		// Streaming on the new primary's timeline: a standby that cannot
		// follow it may still stream the old one's history for a while.
		tli, err := b.execOut(ctx, i, "timeline")
		if err != nil {
			return err
		}
		check = append(check, tli)
	}
	deadline := time.Now().Add(followWait)
	for b.exec(ctx, j, check...) != nil {
		if time.Now().After(deadline) {
			if b.fl.driver != "pgx" {
				return fmt.Errorf("rwsplittest: node %d does not replicate from node %d", j, i)
			}
			b.cfg.logf("rwsplittest: node %d cannot follow node %d; cloning it again", j, i)
			if err := b.crash(ctx, j); err != nil {
				return err
			}
			b.mu.Lock()
			b.former[j] = true
			b.mu.Unlock()
			return b.restart(ctx, j)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

func (b *containers) logs(ctx context.Context, i int) (string, error) {
	if b.nodes[i].ctr == nil {
		return "", fmt.Errorf("rwsplittest: node %d has no container", i)
	}
	r, err := b.nodes[i].ctr.Logs(ctx)
	if err != nil {
		return "", err
	}
	defer r.Close()
	out, err := io.ReadAll(r)
	return string(out), err
}

// close removes every container (with its volumes) and the network.
func (b *containers) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	for i, n := range b.nodes {
		if n.ctr == nil {
			continue
		}
		if st, err := n.ctr.State(ctx); err == nil && st.Paused {
			b.thaw(ctx, i)
		}
		if err := n.ctr.Terminate(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node %d: %w", i, err))
		}
	}
	if b.net != nil {
		if err := b.net.Remove(ctx); err != nil {
			errs = append(errs, fmt.Errorf("network: %w", err))
		}
	}
	if b.cli != nil {
		b.cli.Close()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rwsplittest: close: %w", err)
	}
	return nil
}
