package rwsplit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Patroni is a [Discoverer] that reads a Patroni cluster's members from
// its REST API (GET /cluster), asking one endpoint and falling over to the
// next when it fails, and builds each member's DSN from a template. It
// lists the members that Patroni reports running, its leader as
// RolePrimary; the leader takes writes only once its own probe says it
// does. Patroni promotes replicas itself: Patroni is a [FailoverManager],
// and [WithAutoFailover] with it is an error. Make one with [NewPatroni].
type Patroni struct {
	endpoints []*url.URL
	template  string
	client    *http.Client
	next      atomic.Int32 // the endpoint to ask first: the last that answered
}

var (
	_ Discoverer      = (*Patroni)(nil)
	_ FailoverManager = (*Patroni)(nil)
)

// NewPatroni returns a [Patroni] discoverer asking the Patroni REST API at
// endpoints (base URLs such as http://10.0.0.1:8008, one per member or a
// load balancer; it starts at a random one, then keeps to the last that
// answered), with dsn as the template of every member's DSN: the
// user's DSN with {host} and {port} where the member's go, e.g.
// "postgres://app:secret@{host}:{port}/app?sslmode=verify-full" or
// "host={host} port={port} user=app dbname=app". client makes the
// requests; nil means one with a 2s timeout per request. It returns an
// error for no endpoint, an endpoint that is not an http or https URL,
// or a template without {host} or {port}; the error never contains the
// template.
func NewPatroni(dsn string, client *http.Client, endpoints ...string) (*Patroni, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("rwsplit: NewPatroni: no endpoint")
	}
	if !strings.Contains(dsn, "{host}") || !strings.Contains(dsn, "{port}") {
		return nil, errors.New("rwsplit: NewPatroni: the DSN template needs {host} and {port} placeholders")
	}
	p := &Patroni{template: dsn, client: client}
	if p.client == nil {
		// A transport of its own, whose idle connections the DB closes
		// when it closes (see CloseIdleConnections).
		p.client = &http.Client{Timeout: 2 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	for i, e := range endpoints {
		u, err := url.Parse(strings.TrimSuffix(e, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("rwsplit: NewPatroni: endpoint %d is not an http(s) URL", i+1)
		}
		p.endpoints = append(p.endpoints, u)
	}
	// Processes given the same list spread over the endpoints.
	p.next.Store(int32(rand.IntN(len(endpoints))))
	return p, nil
}

// CloseIdleConnections closes the idle connections of its HTTP client; a
// DB calls it when it closes, so that no connection outlives it.
func (p *Patroni) CloseIdleConnections() { p.client.CloseIdleConnections() }

// ManagesFailover reports true: Patroni promotes replicas itself.
func (p *Patroni) ManagesFailover() bool { return true }

// Discover lists the cluster's members from the first endpoint that
// answers with a readable topology.
func (p *Patroni) Discover(ctx context.Context) ([]DiscoveredNode, error) {
	n := len(p.endpoints)
	first := int(p.next.Load())
	var errs []error
	for k := range n {
		i := (first + k) % n
		// A hung endpoint gets its share of the time left, not all of it.
		actx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok {
			actx, cancel = context.WithTimeout(ctx, time.Until(dl)/time.Duration(n-k))
		}
		nodes, err := p.ask(actx, p.endpoints[i])
		cancel()
		if err == nil {
			p.next.Store(int32(i))
			return nodes, nil
		}
		errs = append(errs, fmt.Errorf("endpoint %s: %w", redactURL(p.endpoints[i]), err))
		if actx.Err() != nil {
			// Out of time on this endpoint (a hung host): ask the next
			// one first next time.
			p.next.Store(int32((i + 1) % n))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("patroni: no endpoint answered: %w", errors.Join(errs...))
}

// patroniCluster is the part of Patroni's GET /cluster answer that
// discovery reads.
type patroniCluster struct {
	Members []struct {
		Name  string `json:"name"`
		Role  string `json:"role"`
		State string `json:"state"`
		Host  string `json:"host"`
		Port  int    `json:"port"`
	} `json:"members"`
}

// ask reads the topology from one endpoint.
func (p *Patroni) ask(ctx context.Context, base *url.URL) ([]DiscoveredNode, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base.String()+"/cluster", nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL, credentials included
		}
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var c patroniCluster
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, errors.New("not a Patroni /cluster answer")
	}
	if len(c.Members) == 0 {
		return nil, errors.New("no member listed")
	}
	var nodes []DiscoveredNode
	for _, m := range c.Members {
		if m.Host == "" || m.Port <= 0 || m.Port > 65535 || strings.ContainsAny(m.Host, "/@ ?#'\\") {
			return nil, fmt.Errorf("member %q without a usable host and port", m.Name)
		}
		if !patroniServes(m.State) {
			continue
		}
		role := RoleReplica
		if m.Role == "leader" || m.Role == "master" || m.Role == "primary" {
			role = RolePrimary
		}
		port := strconv.Itoa(m.Port)
		host := m.Host
		if strings.Contains(host, ":") && strings.Contains(p.template, "{host}:{port}") {
			host = "[" + host + "]" // an IPv6 address in a URL
		}
		nodes = append(nodes, DiscoveredNode{
			Name: net.JoinHostPort(m.Host, port),
			DSN:  strings.NewReplacer("{host}", host, "{port}", port).Replace(p.template),
			Role: role,
		})
	}
	if len(nodes) == 0 {
		return nil, errors.New("no member running")
	}
	return nodes, nil
}

// patroniServes says whether a member in a Patroni state may serve: not
// stopped or failed. (A member killed without warning stays "running"
// until its lease expires: the DB's probes find it dead sooner.)
func patroniServes(state string) bool {
	switch state {
	case "stopped", "stopping", "crashed", "start failed", "stop failed":
		return false
	}
	return true
}

// redactURL returns u without its user information.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}
