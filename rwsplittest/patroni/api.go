package patroni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/rwsplit/rwsplit/rwsplittest/internal/localos"
)

// Status is Patroni's GET /cluster body (the fields the harness uses).
type Status struct {
	Members []MemberStatus `json:"members"`
	Pause   bool           `json:"pause,omitempty"`
}

// MemberStatus is one entry of GET /cluster's members.
type MemberStatus struct {
	Name string `json:"name"`
	// Role is "leader", "sync_standby", "replica" or "standby_leader".
	// (Patroni 3.0's /patroni, /primary and /replica say "master" for the
	// leader; /cluster says "leader".)
	Role string `json:"role"`
	// State is the member's last reported state: "running", "stopped",
	// "starting", "creating replica", "start failed", ... Patroni 3.0.2
	// reports a streaming replica as "running" (later versions say
	// "streaming"), and a killed member keeps its last state until its
	// key expires.
	State    string `json:"state"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	APIURL   string `json:"api_url"`
	Timeline int    `json:"timeline,omitempty"`
	// Lag is the replication lag in bytes, or "unknown"; absent for the
	// leader.
	Lag any `json:"lag,omitempty"`
}

// Member returns the entry named name, or nil.
func (s *Status) Member(name string) *MemberStatus {
	for i := range s.Members {
		if s.Members[i].Name == name {
			return &s.Members[i]
		}
	}
	return nil
}

// Leader returns the leader's entry, or nil.
func (s *Status) Leader() *MemberStatus {
	for i := range s.Members {
		if r := s.Members[i].Role; r == "leader" || r == "standby_leader" {
			return &s.Members[i]
		}
	}
	return nil
}

// get fetches url and returns the body of a 2xx or 503 answer (Patroni
// answers health endpoints with 503 and a JSON body).
func (c *Cluster) get(ctx context.Context, url string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

// ClusterJSON returns the raw body of GET /cluster from the first running
// member that answers. It asks Patroni's REST listeners directly, not the
// endpoints StopAPI cuts.
func (c *Cluster) ClusterJSON(ctx context.Context) ([]byte, error) {
	var errs []error
	for _, m := range c.running() {
		b, code, err := c.get(ctx, m.apiDirect()+"/cluster")
		if err == nil && code == http.StatusOK {
			return b, nil
		}
		if err == nil {
			err = fmt.Errorf("HTTP %d", code)
		}
		errs = append(errs, fmt.Errorf("%s: %w", m.name, err))
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("patroni: GET /cluster: no member is running")
	}
	return nil, fmt.Errorf("patroni: GET /cluster: %w", errors.Join(errs...))
}

// Status returns GET /cluster parsed (see [Cluster.ClusterJSON]).
func (c *Cluster) Status(ctx context.Context) (*Status, error) {
	b, err := c.ClusterJSON(ctx)
	if err != nil {
		return nil, err
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("patroni: GET /cluster: %w", err)
	}
	return &s, nil
}

// Leader returns the member number of the member GET /cluster names
// leader. Right after the leader is killed that is still the dead member,
// until its lease expires (TTL).
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	s, err := c.Status(ctx)
	if err != nil {
		return -1, err
	}
	l := s.Leader()
	if l == nil {
		return -1, ErrNoLeader
	}
	i := c.MemberIndex(l.Name)
	if i < 0 {
		return -1, fmt.Errorf("patroni: leader %q is not a member the harness started", l.Name)
	}
	return i, nil
}

// SyncStandby returns the member number of the synchronous standby in GET
// /cluster, or -1 when there is none.
func (c *Cluster) SyncStandby(ctx context.Context) (int, error) {
	s, err := c.Status(ctx)
	if err != nil {
		return -1, err
	}
	for _, m := range s.Members {
		if m.Role == "sync_standby" {
			return c.MemberIndex(m.Name), nil
		}
	}
	return -1, nil
}

// replication is an entry of the leader's GET /patroni "replication" list
// (pg_stat_replication).
type replication struct {
	ApplicationName string `json:"application_name"`
	State           string `json:"state"`
	SyncState       string `json:"sync_state"`
}

// streamingFrom returns the replication entries the member behind api
// (a leader) reports, by application_name (= member name).
func (c *Cluster) streamingFrom(ctx context.Context, api string) (map[string]replication, error) {
	b, _, err := c.get(ctx, api+"/patroni")
	if err != nil {
		return nil, err
	}
	var body struct {
		Role        string        `json:"role"`
		Replication []replication `json:"replication"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, err
	}
	out := map[string]replication{}
	for _, r := range body.Replication {
		out[r.ApplicationName] = r
	}
	return out, nil
}

// health describes how far the cluster is from healthy ("" when healthy):
// a leader that accepts writes, every running member listed "running" in
// /cluster and streaming from the leader, and (with Synchronous and at
// least one replica) a synchronous standby.
func (c *Cluster) health(ctx context.Context, need []*member) (leader int, problem string) {
	s, err := c.Status(ctx)
	if err != nil {
		return -1, err.Error()
	}
	l := s.Leader()
	if l == nil {
		return -1, "no leader"
	}
	leader = c.MemberIndex(l.Name)
	if leader < 0 {
		return -1, "unknown leader " + l.Name
	}
	if l.State != "running" {
		return leader, "leader " + l.Name + " is " + l.State
	}
	lm, err := c.member(leader)
	if err != nil {
		return leader, err.Error()
	}
	if c.stateOf(lm) != memberRunning {
		return leader, "leader " + l.Name + " is not running (lease not expired yet)"
	}
	repl, err := c.streamingFrom(ctx, lm.apiDirect())
	if err != nil {
		return leader, "leader's /patroni: " + err.Error()
	}
	sync := false
	for _, m := range need {
		if m == lm {
			continue
		}
		ms := s.Member(m.name)
		if ms == nil {
			return leader, m.name + " not in /cluster"
		}
		if ms.State != "running" {
			return leader, m.name + " is " + ms.State
		}
		r, ok := repl[m.name]
		if !ok || r.State != "streaming" {
			return leader, m.name + " is not streaming from the leader"
		}
		if ms.Role == "sync_standby" {
			sync = true
		}
	}
	if c.opts.Synchronous && len(need) > 1 && !sync {
		return leader, "no synchronous standby yet"
	}
	return leader, ""
}

// WaitHealthy waits until a leader accepts writes, every member the
// harness runs is "running" in GET /cluster and streams from the leader
// and, with Options.Synchronous, a synchronous standby is chosen.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	last := ""
	for {
		leader, problem := c.health(ctx, c.running())
		if problem == "" {
			problem = c.canWrite(ctx, leader)
			if problem == "" {
				return nil
			}
		}
		if problem != last {
			c.log("waiting: %s", problem)
			last = problem
		}
		if err := localos.SleepCtx(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("patroni: cluster not healthy: %s: %w", problem, err)
		}
	}
}

// waitStreaming waits until m is "running" in /cluster and streams from
// the leader.
func (c *Cluster) waitStreaming(ctx context.Context, m *member) error {
	last := ""
	for {
		_, problem := c.health(ctx, []*member{m})
		if problem == "" {
			c.log("%s: streaming", m.name)
			return nil
		}
		if problem != last {
			c.log("waiting: %s", problem)
			last = problem
		}
		if err := localos.SleepCtx(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("patroni: %s does not stream: %s: %w", m.name, problem, err)
		}
	}
}

// WaitWritable waits until GET /cluster names a leader that runs and a
// commit on it succeeds (with synchronous_mode, one a synchronous standby
// confirmed), and returns its member number. After KillLeader this is the
// failover time.
func (c *Cluster) WaitWritable(ctx context.Context) (int, error) {
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	last := ""
	for {
		problem := ""
		leader, err := c.Leader(ctx)
		if err != nil {
			problem = err.Error()
		} else if m, err := c.member(leader); err != nil {
			problem = err.Error()
		} else if c.stateOf(m) != memberRunning {
			problem = m.name + " (dead) still holds the leader key"
		} else {
			problem = c.canWrite(ctx, leader)
		}
		if problem == "" {
			return leader, nil
		}
		if problem != last {
			c.log("waiting for a writable leader: %s", problem)
			last = problem
		}
		if err := localos.SleepCtx(ctx, 50*time.Millisecond); err != nil {
			return -1, fmt.Errorf("patroni: no writable leader: %s: %w", problem, err)
		}
	}
}

// Switchover asks the leader (POST /switchover on its REST listener) to
// hand over to candidate, then waits until GET /cluster names candidate
// leader and a commit on it succeeds. A negative candidate lets Patroni
// choose. With synchronous_mode, Patroni accepts only the synchronous
// standby as candidate (HTTP 412 otherwise); see [Cluster.SyncStandby].
func (c *Cluster) Switchover(ctx context.Context, candidate int) error {
	c.ops.Lock()
	defer c.ops.Unlock()
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	old, err := c.Leader(ctx)
	if err != nil {
		return err
	}
	lm, err := c.member(old)
	if err != nil {
		return err
	}
	body := map[string]string{"leader": lm.name}
	if candidate >= 0 {
		cm, err := c.member(candidate)
		if err != nil {
			return err
		}
		if candidate == old {
			return fmt.Errorf("patroni: Switchover(%d): member is already the leader", candidate)
		}
		body["candidate"] = cm.name
	}
	c.log("switchover from %s to %s", lm.name, body["candidate"])
	b, _ := json.Marshal(body)
	// Patroni answers the POST once it sees the new leader, polling once
	// a second (for up to 20s, then "Switchover status unknown"). The
	// harness watches the cluster meanwhile and returns as soon as the new
	// leader takes a write; the answer then arrives in the background
	// (Close waits for it, or cancels it).
	type answer struct {
		code int
		msg  string
		err  error
	}
	answered := make(chan answer, 1)
	c.bg.Go(func() {
		req, err := http.NewRequestWithContext(c.bgCtx, http.MethodPost, lm.apiDirect()+"/switchover", bytes.NewReader(b))
		if err != nil {
			answered <- answer{err: err}
			return
		}
		req.Header.Set("Content-Type", "application/json")
		client := *c.client
		client.Timeout = 30 * time.Second
		resp, err := client.Do(req)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answered <- answer{code: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
	})
	last := ""
	for {
		select {
		case a := <-answered:
			switch {
			case a.err != nil:
				return fmt.Errorf("patroni: POST /switchover to %s: %w", lm.name, a.err)
			case a.code != http.StatusOK && !strings.Contains(a.msg, "status unknown"):
				return fmt.Errorf("patroni: POST /switchover to %s: HTTP %d: %s", lm.name, a.code, a.msg)
			}
			answered = nil
		default:
		}
		problem := ""
		leader, err := c.Leader(ctx)
		switch {
		case err != nil:
			problem = err.Error()
		case leader == old || (candidate >= 0 && leader != candidate):
			problem = "leader is still " + c.Members()[leader].Name
		default:
			problem = c.canWrite(ctx, leader)
		}
		if problem == "" {
			c.log("switchover done: %s is leader and takes writes", c.Members()[leader].Name)
			return nil
		}
		if problem != last {
			c.log("switchover: %s", problem)
			last = problem
		}
		if err := localos.SleepCtx(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("patroni: switchover: %s: %w", problem, err)
		}
	}
}

// canWrite commits a transaction that writes (it gets a transaction id)
// on member i as the application user, with psql; "" means success.
func (c *Cluster) canWrite(ctx context.Context, i int) string {
	m, err := c.member(i)
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bins.psql, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
		"-c", "SELECT pg_catalog.txid_current()",
		"host=127.0.0.1 port="+strconv.Itoa(m.pgPort)+" user="+AppUser+" dbname="+AppDatabase+" sslmode=disable connect_timeout=2")
	cmd.Env = cleanEnv("", "PGPASSWORD="+AppPassword)
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if ctx.Err() != nil {
			msg = "commit did not return within 3s " + msg
		}
		return m.name + " does not accept writes: " + msg
	}
	return ""
}

// Patronictl runs patronictl with the configuration of a running member
// (so it finds etcd and the scope) and returns its combined output, e.g.
// Patronictl(ctx, "list") or Patronictl(ctx, "switchover", "--leader",
// "m0", "--candidate", "m1", "--force").
func (c *Cluster) Patronictl(ctx context.Context, args ...string) (string, error) {
	ms := c.running()
	if len(ms) == 0 {
		return "", errors.New("patroni: patronictl: no member is running")
	}
	cmd := exec.CommandContext(ctx, c.bins.patronictl, append([]string{"-c", ms[0].confPath}, args...)...)
	cmd.Env = cleanEnv(ms[0].dir)
	cmd.SysProcAttr = localos.SysProcAttr(c.cred) // the configuration is the server user's
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("patroni: patronictl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
