package main

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestDemo runs the demo on a local cluster and checks what it scraped
// while the replica was frozen, and every answer against the server's
// word.
func TestDemo(t *testing.T) {
	defer goleak.VerifyNone(t)
	t.Setenv("RWSPLIT_PRIMARY", "")
	t.Setenv("RWSPLIT_REPLICAS", "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rep, err := run(ctx, &out, options{})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the demo's output:\n%s", out.String())
		}
	})
	require.NoError(t, err)
	require.NotNil(t, rep)
	require.NotEmpty(t, rep.Frozen)

	// The scrape during the freeze: the frozen replica down and ejected,
	// the other nodes up; OpenTelemetry says the same.
	up, ok := value(rep.Scrape, "rwsplit_node_up", rep.Frozen)
	require.True(t, ok, "no rwsplit_node_up for %s in:\n%s", rep.Frozen, rep.Scrape)
	assert.Equal(t, 0.0, up, "rwsplit_node_up of the frozen replica")
	ejections, ok := value(rep.Scrape, "rwsplit_node_ejections_total", rep.Frozen)
	require.True(t, ok)
	assert.GreaterOrEqual(t, ejections, 1.0)
	others := map[string]bool{}
	for _, a := range rep.Answers {
		if a.Node != rep.Frozen {
			others[a.Node] = true
		}
	}
	assert.Len(t, others, 2, "the primary and the other replica answered")
	for n := range others {
		up, ok := value(rep.Scrape, "rwsplit_node_up", n)
		assert.True(t, ok && up == 1, "rwsplit_node_up of %s", n)
	}
	assert.Contains(t, rep.OTel, "rwsplit.node.up{db.system.name=postgresql,rwsplit.node.name="+rep.Frozen+",rwsplit.node.role=replica} 0")

	// Every answer: its node, as CallInfo names it, is the server that
	// says it ran the statement.
	require.NotEmpty(t, rep.Answers)
	assert.Zero(t, rep.Failed, "requests not answered")
	during := 0
	for _, a := range rep.Answers {
		assert.Equal(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(a.ServerPort)), a.Node, "%+v", a)
		if a.at.After(rep.FrozenAt) && a.at.Before(rep.ThawedAt) {
			during++
			// (An answer sent just before the freeze may arrive just
			// after it.)
			if a.at.After(rep.FrozenAt.Add(200 * time.Millisecond)) {
				assert.NotEqual(t, rep.Frozen, a.Node, "answered by the frozen replica during the freeze")
			}
		}
	}
	assert.Positive(t, during, "requests answered during the freeze")
}
