package rwsplit

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
)

// DNS is a [Discoverer] of replicas from a DNS name: its A and AAAA
// records (a Kubernetes headless service, a Consul service) or its SRV
// records, asked again at every [Discovery] interval. Every node it lists
// is a replica; the primary stays the node given to [New] or [Open] (or
// the one that takes over), which DNS discovery never removes. A listed
// node that says it takes writes while the primary does is taken for the
// primary under another name (a record of every pod), not a second
// writer: it gets neither writes nor reads. Make one with [NewDNS].
type DNS struct {
	name     string
	srv      bool
	port     int
	template string
	resolver *net.Resolver
}

var _ Discoverer = (*DNS)(nil)

// NewDNS returns a [DNS] discoverer of the replicas behind name. With a
// port above zero it reads the name's A and AAAA records and lists
// address:port; with port 0 it reads its SRV records (name is then the
// full SRV name, such as _postgresql._tcp.replicas.example.internal) and
// lists target:port. dsn is the template of every replica's DSN, with
// {host} and {port} where the replica's go (see [NewPatroni]). resolver
// asks the DNS; nil means net.DefaultResolver. It returns an error for an
// empty name, a port out of range, or a template without {host}.
func NewDNS(name string, port int, dsn string, resolver *net.Resolver) (*DNS, error) {
	switch {
	case name == "":
		return nil, errors.New("rwsplit: NewDNS: empty name")
	case port < 0 || port > 65535:
		return nil, errors.New("rwsplit: NewDNS: port out of range")
	case !strings.Contains(dsn, "{host}"):
		return nil, errors.New("rwsplit: NewDNS: the DSN template needs a {host} placeholder")
	}
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	return &DNS{name: name, srv: port == 0, port: port, template: dsn, resolver: resolver}, nil
}

// Discover resolves the name.
func (d *DNS) Discover(ctx context.Context) ([]DiscoveredNode, error) {
	var nodes []DiscoveredNode
	add := func(host string, port int) {
		p := strconv.Itoa(port)
		h := host
		if strings.Contains(h, ":") && strings.Contains(d.template, "{host}:{port}") {
			h = "[" + h + "]"
		}
		nodes = append(nodes, DiscoveredNode{
			Name: net.JoinHostPort(host, p),
			DSN:  strings.NewReplacer("{host}", h, "{port}", p).Replace(d.template),
			Role: RoleReplica,
		})
	}
	if d.srv {
		_, srvs, err := d.resolver.LookupSRV(ctx, "", "", d.name)
		if err != nil {
			return nil, err
		}
		for _, s := range srvs {
			add(strings.TrimSuffix(s.Target, "."), int(s.Port))
		}
		return nodes, nil
	}
	addrs, err := d.resolver.LookupIPAddr(ctx, d.name)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		add(a.IP.String(), d.port)
	}
	return nodes, nil
}
