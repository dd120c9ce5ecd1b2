package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

// report is what the demo saw.
type report struct {
	Frozen   string    // the frozen replica's node name; empty without a local cluster
	Scrape   string    // GET /metrics while it was out
	OTel     string    // GET /otel then
	FrozenAt time.Time // when it was frozen
	ThawedAt time.Time // when it was thawed
	Answers  []answer  // every request answered, in order
	Failed   int       // requests not answered
}

// demo drives traffic through the service at base, freezes a replica of
// c (when c is not nil), scrapes the service while the replica is out,
// thaws it and waits until it is back.
func demo(ctx context.Context, out io.Writer, base string, svc *service, c *rwsplittest.Cluster) (*report, error) {
	client := &http.Client{Timeout: 2 * requestTimeout}
	defer client.CloseIdleConnections()
	rep := &report{}

	// Both replicas in rotation before the traffic starts.
	replicas := 0
	for _, n := range svc.db.Stats().Nodes {
		if n.Role == rwsplit.RoleReplica {
			replicas++
		}
	}
	if err := waitFor(ctx, 20*time.Second, func() bool { return svc.db.Stats().Eligible == replicas }); err != nil {
		return nil, fmt.Errorf("waiting for the replicas: %w", err)
	}

	const clients = 4
	fmt.Fprintf(out, "\n1. %d clients call POST /visits (a write) and GET /visits (a read), 1 for 4, for 2s\n", clients)
	tr := startTraffic(ctx, client, base, clients)
	defer tr.halt()
	if err := sleep(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	for _, role := range []string{"primary", "replica"} {
		if a, ok := tr.find(func(a answer) bool { return a.Role == role }); ok {
			fmt.Fprintf(out, "   %s\n", show(a))
		}
	}

	if c == nil {
		fmt.Fprintln(out, "\n2. RWSPLIT_PRIMARY is set: no local replica to freeze. GET /metrics (excerpt):")
		scrape, err := get(ctx, client, base+"/metrics")
		if err != nil {
			return nil, err
		}
		rep.Scrape = scrape
		printLines(out, promExcerpt(scrape, ""))
		tr.halt()
		return rep, summarize(out, rep, tr)
	}

	frozen := c.Addr(frozenNode)
	rep.Frozen = frozen
	fmt.Fprintf(out, "\n2. Freeze replica %s: every process of it stopped, its connections open and silent\n", frozen)
	if err := c.Freeze(ctx, frozenNode); err != nil {
		return nil, err
	}
	rep.FrozenAt = time.Now()
	thawed := false
	thaw := func() error {
		if thawed {
			return nil
		}
		thawed = true
		rep.ThawedAt = time.Now()
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return c.Thaw(tctx, frozenNode)
	}
	defer thaw()

	// Scrape until the replica shows as out, as a Prometheus server would
	// (only more often).
	up := func(want float64) func() bool {
		return func() bool {
			s, err := get(ctx, client, base+"/metrics")
			if err != nil {
				return false
			}
			v, ok := value(s, "rwsplit_node_up", frozen)
			return ok && v == want
		}
	}
	if err := waitFor(ctx, 20*time.Second, up(0)); err != nil {
		return nil, fmt.Errorf("waiting for rwsplit_node_up 0 on the frozen replica: %w", err)
	}
	fmt.Fprintf(out, "   out of rotation %s after the freeze (rwsplit_node_up 0); traffic goes on for 1s\n",
		time.Since(rep.FrozenAt).Round(10*time.Millisecond))
	if err := sleep(ctx, time.Second); err != nil {
		return nil, err
	}
	var err error
	if rep.Scrape, err = get(ctx, client, base+"/metrics"); err != nil {
		return nil, err
	}
	if rep.OTel, err = get(ctx, client, base+"/otel"); err != nil {
		return nil, err
	}
	fmt.Fprintln(out, "   GET /metrics during the freeze (excerpt):")
	printLines(out, promExcerpt(rep.Scrape, frozen))
	fmt.Fprintln(out, "   GET /otel during the freeze (excerpt):")
	printLines(out, otelExcerpt(rep.OTel, frozen))
	if a, ok := tr.find(func(a answer) bool { return a.Attempts > 1 }); ok {
		fmt.Fprintln(out, "   A read caught on the frozen replica, retried elsewhere when it was taken out:")
		fmt.Fprintf(out, "   %s\n", show(a))
	}

	fmt.Fprintf(out, "\n3. Thaw %s\n", frozen)
	if err := thaw(); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 20*time.Second, up(1)); err != nil {
		return nil, fmt.Errorf("waiting for rwsplit_node_up 1 on the thawed replica: %w", err)
	}
	fmt.Fprintf(out, "   back in rotation %s after the thaw (rwsplit_node_up 1)\n",
		time.Since(rep.ThawedAt).Round(10*time.Millisecond))
	tr.halt()
	return rep, summarize(out, rep, tr)
}

// summarize prints the requests' outcome and fails when an answer's node
// is not the server that answered.
func summarize(out io.Writer, rep *report, tr *traffic) error {
	tr.mu.Lock()
	rep.Answers = append([]answer(nil), tr.answers...)
	rep.Failed = tr.failed
	firstErr := tr.firstErr
	tr.mu.Unlock()

	during, wrong := 0, 0
	byNode := map[string]int{}
	var nodes []string
	for _, a := range rep.Answers {
		if !rep.FrozenAt.IsZero() && a.at.After(rep.FrozenAt) && a.at.Before(rep.ThawedAt) {
			during++
		}
		if !a.servedBy() {
			wrong++
		}
		k := a.Node + " (" + a.Role + ")"
		if byNode[k] == 0 {
			nodes = append(nodes, k)
		}
		byNode[k]++
	}
	fmt.Fprintf(out, "\n4. %d requests answered (%d during the freeze), %d failed\n", len(rep.Answers), during, rep.Failed)
	if firstErr != nil {
		fmt.Fprintf(out, "   first failure: %v\n", firstErr)
	}
	for _, n := range nodes {
		fmt.Fprintf(out, "   %-28s %d\n", n, byNode[n])
	}
	fmt.Fprintf(out, "   %d of %d answers name as their node (CallInfo) the server that says it ran the statement (inet_server_port())\n",
		len(rep.Answers)-wrong, len(rep.Answers))
	if wrong > 0 {
		return fmt.Errorf("%d answers name a node other than the server that ran the statement", wrong)
	}
	return nil
}

// servedBy says whether a's node, as CallInfo names it (host:port), is
// the server that ran the statement, by its own word.
func (a answer) servedBy() bool {
	_, port, err := net.SplitHostPort(a.Node)
	return err == nil && port == strconv.Itoa(a.ServerPort)
}

// show formats an answer as its JSON.
func show(a answer) string {
	b, _ := json.Marshal(a)
	return string(b)
}

// traffic is clients calling the app until halted.
type traffic struct {
	stop     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
	mu       sync.Mutex
	answers  []answer // guarded by mu
	failed   int      // guarded by mu
	firstErr error    // guarded by mu
}

// startTraffic starts clients that each send a write for four reads,
// pausing 10ms between requests.
func startTraffic(ctx context.Context, client *http.Client, base string, clients int) *traffic {
	t := &traffic{stop: make(chan struct{})}
	for i := range clients {
		t.wg.Go(func() {
			for n := i; ; n++ {
				select {
				case <-t.stop:
					return
				case <-ctx.Done():
					return
				case <-time.After(10 * time.Millisecond):
				}
				method := http.MethodGet
				if n%5 == 0 {
					method = http.MethodPost
				}
				a, err := request(ctx, client, method, base+"/visits")
				t.mu.Lock()
				if err != nil {
					t.failed++
					if t.firstErr == nil {
						t.firstErr = err
					}
				} else {
					a.at = time.Now()
					t.answers = append(t.answers, a)
				}
				t.mu.Unlock()
			}
		})
	}
	return t
}

// halt stops the clients and waits for them; it may be called again.
func (t *traffic) halt() {
	t.once.Do(func() { close(t.stop) })
	t.wg.Wait()
}

// find returns the latest answer that ok accepts.
func (t *traffic) find(ok func(answer) bool) (answer, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(t.answers) - 1; i >= 0; i-- {
		if ok(t.answers[i]) {
			return t.answers[i], true
		}
	}
	return answer{}, false
}

func request(ctx context.Context, client *http.Client, method, url string) (answer, error) {
	var a answer
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return a, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return a, fmt.Errorf("%s %s: %s: %s", method, req.URL.Path, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return a, fmt.Errorf("%s %s: %w", method, req.URL.Path, err)
	}
	return a, nil
}

// get returns the body of a GET of url.
func get(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", req.URL.Path, resp.Status)
	}
	return string(b), nil
}

// value returns the value of the series of metric whose node label is
// node, in a Prometheus text scrape.
func value(scrape, metric, node string) (float64, bool) {
	for l := range strings.Lines(scrape) {
		if strings.HasPrefix(l, metric+"{") && strings.Contains(l, `node="`+node+`"`) {
			f := strings.Fields(l)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// promExcerpt returns the lines of a scrape that show a node out: every
// node's up and ejections, the calls and retries of node (every node's
// when node is empty), and every node's count of call latencies.
func promExcerpt(scrape, node string) []string {
	of := func(l string) bool { return node == "" || strings.Contains(l, `node="`+node+`"`) }
	return excerpt(scrape, []filter{
		{"rwsplit_node_up{", nil},
		{"rwsplit_node_ejections_total{", nil},
		{"rwsplit_calls_total{", of},
		{"rwsplit_node_retries_total{", of},
		{"rwsplit_call_duration_seconds_count{", nil},
	})
}

// otelExcerpt returns the lines of GET /otel about node: up, ejections,
// state changes, and the count of its call latencies.
func otelExcerpt(text, node string) []string {
	of := func(l string) bool {
		return strings.Contains(l, "rwsplit.node.name="+node+",") || strings.Contains(l, "rwsplit.node.name="+node+"}")
	}
	return excerpt(text, []filter{
		{"rwsplit.node.up{", of},
		{"rwsplit.node.ejections{", of},
		{"rwsplit.node.state_changes{", of},
		{"db.client.operation.duration_count{", of},
	})
}

type filter struct {
	prefix string
	keep   func(string) bool // nil keeps every line with the prefix
}

// excerpt returns text's lines that pass a filter, grouped by filter.
func excerpt(text string, filters []filter) []string {
	var out []string
	for _, f := range filters {
		for l := range strings.Lines(text) {
			l = strings.TrimRight(l, "\n")
			if strings.HasPrefix(l, f.prefix) && (f.keep == nil || f.keep(l)) {
				out = append(out, l)
			}
		}
	}
	return out
}

func printLines(out io.Writer, lines []string) {
	for _, l := range lines {
		fmt.Fprintf(out, "     %s\n", l)
	}
}

// waitFor polls cond every 50ms until it holds, for at most limit.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for !cond() {
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("not within %s", limit)
			}
			return err
		}
	}
	return nil
}

// sleep waits for d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
