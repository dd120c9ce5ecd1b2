package patroni

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit/rwsplittest/internal/localos"

	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestPatroniCluster runs the harness through what the fleet tests need:
// bootstrap, reads on replicas and writes on the leader, a switchover, a
// leader crash under synchronous_mode with no acknowledged write lost, the
// old leader rejoining, a member added and one removed, REST endpoints
// cut, and a Close that leaves no process behind. It logs the timings.
func TestPatroniCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	begin := time.Now()
	c, err := Start(ctx, Options{Synchronous: true, Logf: t.Logf})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	bootstrap := time.Since(begin)
	scope := c.Scope()
	closed := false
	defer func() {
		if !closed {
			c.Close()
		}
	}()
	timings := map[string]time.Duration{"bootstrap": bootstrap}

	// GET /cluster: one leader, two streaming replicas, one of them the
	// synchronous standby.
	st := mustStatus(t, ctx, c)
	if len(st.Members) != 3 {
		t.Fatalf("/cluster lists %d members, want 3", len(st.Members))
	}
	roles := map[string]int{}
	for _, m := range st.Members {
		roles[m.Role]++
		if m.State != "running" {
			t.Errorf("%s is %q, want running", m.Name, m.State)
		}
		if want := c.Members()[c.MemberIndex(m.Name)].API + "/patroni"; m.APIURL != want {
			t.Errorf("%s api_url = %s, want the harness endpoint %s", m.Name, m.APIURL, want)
		}
	}
	if roles["leader"] != 1 || roles["sync_standby"] != 1 || roles["replica"] != 1 {
		t.Fatalf("roles = %v, want 1 leader, 1 sync_standby, 1 replica", roles)
	}
	leader := mustLeader(t, ctx, c)
	dbs := map[int]*sql.DB{}
	db := func(i int) *sql.DB {
		if dbs[i] == nil {
			d, err := sql.Open("pgx", c.DSN(i))
			if err != nil {
				t.Fatal(err)
			}
			d.SetMaxOpenConns(4)
			dbs[i] = d
		}
		return dbs[i]
	}
	defer func() {
		for _, d := range dbs {
			d.Close()
		}
	}()
	admin, err := sql.Open("pgx", c.AdminDSN(leader))
	if err != nil {
		t.Fatal(err)
	}
	n := queryInt(t, ctx, admin, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
	admin.Close()
	if n != 2 {
		t.Fatalf("leader streams to %d replicas, want 2", n)
	}

	// Every endpoint answers.
	for i, ep := range c.Endpoints() {
		if code, err := httpGet(ctx, ep+"/cluster"); err != nil || code != 200 {
			t.Fatalf("endpoint %d %s: %d, %v", i, ep, code, err)
		}
	}

	// Writes on the leader, reads on the replicas.
	mustExec(t, ctx, db(leader), "CREATE TABLE kv (k int PRIMARY KEY, v text)")
	mustExec(t, ctx, db(leader), "INSERT INTO kv VALUES (1, 'one')")
	if queryBool(t, ctx, db(leader), "SELECT pg_is_in_recovery()") {
		t.Fatal("leader is in recovery")
	}
	for i := range c.Members() {
		if i == leader {
			continue
		}
		if !queryBool(t, ctx, db(i), "SELECT pg_is_in_recovery()") {
			t.Fatalf("member %d is not in recovery", i)
		}
		waitRows(t, ctx, db(i), 1)
		if _, err := db(i).ExecContext(ctx, "INSERT INTO kv VALUES (100, 'x')"); err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Fatalf("write on replica %d: err = %v, want read-only", i, err)
		}
	}

	// patronictl works with the harness's configuration.
	if out, err := c.Patronictl(ctx, "list"); err != nil || !strings.Contains(out, scope) {
		t.Fatalf("patronictl list: %v\n%s", err, out)
	}

	// Switchover to the synchronous standby (the only candidate Patroni
	// accepts in synchronous_mode).
	cand, err := c.SyncStandby(ctx)
	if err != nil || cand < 0 {
		t.Fatalf("SyncStandby = %d, %v", cand, err)
	}
	t0 := time.Now()
	if err := c.Switchover(ctx, cand); err != nil {
		t.Fatalf("Switchover: %v", err)
	}
	timings["switchover (writes on candidate)"] = time.Since(t0)
	mustExec(t, ctx, db(cand), "INSERT INTO kv VALUES (2, 'two')")
	if l := mustLeader(t, ctx, c); l != cand {
		t.Fatalf("leader after switchover = %d, want %d", l, cand)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	timings["switchover (old leader streams again)"] = time.Since(t0)
	if !queryBool(t, ctx, db(leader), "SELECT pg_is_in_recovery()") {
		t.Fatal("old leader is not a replica after the switchover")
	}
	leader = cand

	// Crash the leader while a client writes to it; every acknowledged
	// write must be on the new leader.
	syncIdx, err := c.SyncStandby(ctx)
	if err != nil || syncIdx < 0 {
		t.Fatalf("SyncStandby = %d, %v", syncIdx, err)
	}
	var (
		ackMu sync.Mutex
		acked []int
	)
	writer := db(leader)
	writerCtx, stopWriter := context.WithCancel(ctx)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for k := 1000; writerCtx.Err() == nil; k++ {
			wctx, wcancel := context.WithTimeout(writerCtx, 2*time.Second)
			_, err := writer.ExecContext(wctx, "INSERT INTO kv VALUES ($1, 'w')", k)
			wcancel()
			if err != nil {
				return
			}
			ackMu.Lock()
			acked = append(acked, k)
			ackMu.Unlock()
		}
	}()
	waitAcked := time.Now().Add(5 * time.Second)
	for {
		ackMu.Lock()
		n := len(acked)
		ackMu.Unlock()
		if n >= 20 || time.Now().After(waitAcked) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	watch := watchMember(ctx, c, c.Members()[leader].Name)
	t0 = time.Now()
	old, err := c.KillLeader(ctx)
	if err != nil {
		t.Fatalf("KillLeader: %v", err)
	}
	if old != leader {
		t.Fatalf("KillLeader killed %d, want %d", old, leader)
	}
	newLeader, err := c.WaitWritable(ctx)
	if err != nil {
		t.Fatalf("WaitWritable after KillLeader: %v", err)
	}
	timings["failover (new leader accepts writes)"] = time.Since(t0)
	stopWriter()
	<-writerDone
	if newLeader == old {
		t.Fatalf("leader is still %d", old)
	}
	if newLeader != syncIdx {
		t.Errorf("new leader %d is not the former synchronous standby %d", newLeader, syncIdx)
	}
	mustExec(t, ctx, db(newLeader), "INSERT INTO kv VALUES (3, 'three')")
	ackMu.Lock()
	ackedCopy := append([]int(nil), acked...)
	ackMu.Unlock()
	if len(ackedCopy) == 0 {
		t.Fatal("the writer got no acknowledgement before the crash")
	}
	lost := 0
	for _, k := range ackedCopy {
		if queryInt(t, ctx, db(newLeader), fmt.Sprintf("SELECT count(*) FROM kv WHERE k = %d", k)) != 1 {
			lost++
		}
	}
	t.Logf("synchronous_mode: %d writes acknowledged by the old leader, %d lost", len(ackedCopy), lost)
	if lost > 0 {
		t.Errorf("%d acknowledged writes lost in the failover", lost)
	}
	// How /cluster shows the killed member.
	t.Logf("killed leader in /cluster: %s", watch(15*time.Second, func(s string) bool { return s == "absent" }))

	// The old leader comes back (pg_rewind) and streams from the new one.
	t0 = time.Now()
	if err := c.StartMember(ctx, old); err != nil {
		t.Fatalf("StartMember(old leader): %v", err)
	}
	timings["killed leader rejoins and streams"] = time.Since(t0)
	waitRows(t, ctx, db(old), queryInt(t, ctx, db(newLeader), "SELECT count(*) FROM kv"))
	leader = newLeader

	// patronictl switchover (through the leader's REST endpoint).
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	if syncIdx, err = c.SyncStandby(ctx); err != nil || syncIdx < 0 {
		t.Fatalf("SyncStandby = %d, %v", syncIdx, err)
	}
	t0 = time.Now()
	out, err := c.Patronictl(ctx, "switchover", "--leader", c.Members()[leader].Name, "--candidate", c.Members()[syncIdx].Name, "--force")
	if err != nil {
		t.Fatal(err)
	}
	for {
		l, err := c.WaitWritable(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if l == syncIdx {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("leader is still %d after patronictl switchover:\n%s", l, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	timings["patronictl switchover (writes on candidate)"] = time.Since(t0)
	leader = syncIdx

	// A fourth member: it clones the leader and streams.
	t0 = time.Now()
	added, err := c.AddMember(ctx)
	if err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	timings["new member streams"] = time.Since(t0)
	if added != 3 || len(c.Endpoints()) != 4 {
		t.Fatalf("AddMember = %d with %d endpoints, want member 3 of 4", added, len(c.Endpoints()))
	}
	if ms := mustStatus(t, ctx, c).Member(c.Members()[added].Name); ms == nil || ms.State != "running" || ms.Port != c.Members()[added].Port {
		t.Fatalf("new member in /cluster: %+v", ms)
	}
	if !queryBool(t, ctx, db(added), "SELECT pg_is_in_recovery()") {
		t.Fatal("new member is not in recovery")
	}
	mustExec(t, ctx, db(leader), "INSERT INTO kv VALUES (4, 'four')")
	waitRows(t, ctx, db(added), queryInt(t, ctx, db(leader), "SELECT count(*) FROM kv"))

	// Remove a replica that is not the synchronous standby.
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	syncIdx, _ = c.SyncStandby(ctx)
	victim := -1
	for i, m := range c.Members() {
		if m.Running && i != leader && i != syncIdx {
			victim = i
			break
		}
	}
	watch = watchMember(ctx, c, c.Members()[victim].Name)
	t0 = time.Now()
	if err := c.RemoveMember(ctx, victim); err != nil {
		t.Fatalf("RemoveMember(%d): %v", victim, err)
	}
	timings["removed member leaves /cluster"] = time.Since(t0)
	t.Logf("removed member in /cluster: %s", watch(time.Second, func(s string) bool { return s == "absent" }))
	if m := c.Members()[victim]; m.Running || !m.Removed {
		t.Fatalf("removed member: %+v", m)
	}
	if _, err := httpGet(ctx, c.Endpoints()[victim]+"/cluster"); err == nil {
		t.Fatal("removed member's endpoint still answers")
	}
	if n := len(mustStatus(t, ctx, c).Members); n != 3 {
		t.Fatalf("/cluster lists %d members after the removal, want 3", n)
	}

	// Cut one REST endpoint: the others still answer, PostgreSQL behind
	// it still serves.
	var live []int
	for i, m := range c.Members() {
		if m.Running {
			live = append(live, i)
		}
	}
	cut := live[0]
	if err := c.StopAPI(ctx, cut); err != nil {
		t.Fatal(err)
	}
	for _, i := range live {
		code, err := httpGet(ctx, c.Endpoints()[i]+"/cluster")
		if i == cut {
			if err == nil {
				t.Fatalf("cut endpoint %d answered %d", i, code)
			}
			continue
		}
		if err != nil || code != 200 {
			t.Fatalf("endpoint %d with %d cut: %d, %v", i, cut, code, err)
		}
	}
	queryInt(t, ctx, db(cut), "SELECT count(*) FROM kv")
	// All endpoints down, then back.
	for _, i := range live {
		if err := c.StopAPI(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	for _, ep := range c.Endpoints() {
		if _, err := httpGet(ctx, ep+"/cluster"); err == nil {
			t.Fatalf("%s answers with every endpoint cut", ep)
		}
	}
	if _, err := c.Leader(ctx); err != nil {
		t.Fatalf("the harness lost the cluster with the endpoints cut: %v", err)
	}
	for _, i := range live {
		if err := c.StartAPI(ctx, i); err != nil {
			t.Fatal(err)
		}
		if code, err := httpGet(ctx, c.Endpoints()[i]+"/cluster"); err != nil || code != 200 {
			t.Fatalf("endpoint %d after StartAPI: %d, %v", i, code, err)
		}
	}

	for _, name := range []string{"bootstrap", "switchover (writes on candidate)", "switchover (old leader streams again)",
		"failover (new leader accepts writes)", "killed leader rejoins and streams", "patronictl switchover (writes on candidate)",
		"new member streams", "removed member leaves /cluster"} {
		t.Logf("timing: %-44s %v", name, timings[name].Round(time.Millisecond))
	}

	// Close leaves nothing behind.
	for _, d := range dbs {
		d.Close()
	}
	dbs = nil
	dir := c.Dir()
	closed = true
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	assertNothingLeft(t, scope, dir)
}

// TestPatroniStartInterrupted cancels Start half-way and checks that
// nothing is left behind.
func TestPatroniStartInterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	before, _ := os.ReadDir(localos.BaseTempDir())
	c, err := Start(ctx, Options{Synchronous: true, Logf: t.Logf})
	if err == nil {
		c.Close()
		t.Skip("Start finished before the deadline; nothing was interrupted")
	}
	t.Logf("interrupted Start: %.300s", err)
	after, _ := os.ReadDir(localos.BaseTempDir())
	known := map[string]bool{}
	for _, e := range before {
		known[e.Name()] = true
	}
	for _, e := range after {
		// Another test process (go test runs packages at once) may have
		// started a cluster meanwhile: only this process's count.
		owner, _ := os.ReadFile(filepath.Join(localos.BaseTempDir(), e.Name(), ownerFile))
		if mine := strings.HasPrefix(string(owner), strconv.Itoa(os.Getpid())+" "); len(owner) > 0 && !mine {
			continue
		}
		if strings.HasPrefix(e.Name(), dirPrefix) && !known[e.Name()] {
			t.Errorf("left behind: %s", e.Name())
			assertNothingLeft(t, e.Name(), "")
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	if _, err := Start(context.Background(), Options{Members: -1}); err == nil {
		t.Fatal("negative Members accepted")
	}
}

// assertNothingLeft checks that no process carries the cluster's token in
// its command line (pgrep -f) and that its directory is gone.
func assertNothingLeft(t *testing.T, token, dir string) {
	t.Helper()
	if left := processesMatching(token); len(left) > 0 {
		t.Errorf("processes left: %s", describe(left))
	}
	out, err := exec.Command("pgrep", "-a", "-f", token).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("pgrep -f %s: %v\n%s", token, err, out)
	}
	if dir != "" {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s still exists (%v)", dir, err)
		}
	}
}

// watchMember polls GET /cluster for the named member's state ("absent"
// when it is not listed) and returns a function that waits up to max for
// done and then describes the states seen and when each began.
func watchMember(ctx context.Context, c *Cluster, name string) func(max time.Duration, done func(state string) bool) string {
	type change struct {
		at    time.Duration
		state string
	}
	var mu sync.Mutex
	var seen []change
	start := time.Now()
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		last := ""
		for {
			state := "absent"
			if s, err := c.Status(ctx); err != nil {
				state = "error"
			} else if m := s.Member(name); m != nil {
				state = m.State + "/" + m.Role
			}
			if state != last {
				mu.Lock()
				seen = append(seen, change{time.Since(start), state})
				mu.Unlock()
				last = state
			}
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func(max time.Duration, done func(string) bool) string {
		deadline := time.Now().Add(max)
		for time.Now().Before(deadline) {
			mu.Lock()
			fin := len(seen) > 0 && done(seen[len(seen)-1].state)
			mu.Unlock()
			if fin {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		close(stop)
		<-finished
		var parts []string
		for _, ch := range seen {
			parts = append(parts, fmt.Sprintf("%s from +%.1fs", ch.state, ch.at.Seconds()))
		}
		return strings.Join(parts, ", ")
	}
}

func httpGet(ctx context.Context, url string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func mustStatus(t *testing.T, ctx context.Context, c *Cluster) *Status {
	t.Helper()
	s, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	return s
}

func mustLeader(t *testing.T, ctx context.Context, c *Cluster) int {
	t.Helper()
	l, err := c.Leader(ctx)
	if err != nil {
		t.Fatalf("Leader: %v", err)
	}
	return l
}

func mustExec(t *testing.T, ctx context.Context, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(ctx, q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func queryInt(t *testing.T, ctx context.Context, db *sql.DB, q string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func queryBool(t *testing.T, ctx context.Context, db *sql.DB, q string) bool {
	t.Helper()
	var b bool
	if err := db.QueryRowContext(ctx, q).Scan(&b); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return b
}

// waitRows waits until kv has at least n rows on db (a replica catching
// up).
func waitRows(t *testing.T, ctx context.Context, db *sql.DB, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var got int
		err := db.QueryRowContext(ctx, "SELECT count(*) FROM kv").Scan(&got)
		if err == nil && got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kv has %d rows (%v), want %d", got, err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
