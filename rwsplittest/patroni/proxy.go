package patroni

import (
	"fmt"
	"io"
	"net"
	"sync"
)

// proxy is a TCP forwarder in front of one member's REST API. It is what
// Endpoints returns and what the member advertises as its api_url, so
// cutting it makes the endpoint unreachable for everyone (clients, the
// other members, patronictl) while Patroni and PostgreSQL keep running.
// A cut or stopped endpoint refuses connections; connections open at the
// time are closed.
type proxy struct {
	addr     string // 127.0.0.1:port, fixed for the cluster's life
	upstream string // Patroni's own REST listener

	mu     sync.Mutex // guards ln and conns
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool

	wg sync.WaitGroup // accept loops and forwarding goroutines
}

// newProxy listens on a free loopback port.
func newProxy(upstream string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on 127.0.0.1: %w", err)
	}
	p := &proxy{addr: ln.Addr().String(), upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.serveLocked(ln)
	return p, nil
}

// up makes the proxy accept connections again (same port).
func (p *proxy) up() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("proxy %s is closed", p.addr)
	}
	if p.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("listen on %s again: %w", p.addr, err)
	}
	p.serveLocked(ln)
	return nil
}

// down closes the listener and every open connection.
func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// isUp reports whether the proxy accepts connections.
func (p *proxy) isUp() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ln != nil
}

// close stops the proxy for good and waits for its goroutines.
func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.down()
	p.wg.Wait()
}

func (p *proxy) serveLocked(ln net.Listener) {
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !p.track(c, ln) {
				c.Close()
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.forward(c)
			}()
		}
	}()
}

// track registers c unless the listener it came from was closed since.
func (p *proxy) track(c net.Conn, from net.Listener) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != from {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

func (p *proxy) forward(client net.Conn) {
	up, err := net.Dial("tcp", p.upstream)
	if err != nil {
		p.untrack(client)
		return
	}
	p.mu.Lock()
	if p.ln == nil { // cut while dialing
		p.mu.Unlock()
		up.Close()
		p.untrack(client)
		return
	}
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, client)
	go pipe(client, up)
	<-done
	<-done
	p.untrack(client, up)
}
