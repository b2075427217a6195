// Package tcpproxy is a TCP proxy that can misbehave on request: forward, stop forwarding
// (a network partition: connections stay open, bytes go nowhere until it heals, as TCP
// behaves when packets are dropped for seconds), or forward everything late (a slow link).
// The fault suite puts one between a service and each NATS server.
package tcpproxy

import (
	"net"
	"sync"
	"time"
)

// Proxy forwards connections accepted on its listener to a target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	cond   *sync.Cond
	paused bool
	delay  time.Duration
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// New listens on listen (host:0 for any port) and forwards to target.
func New(listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is where clients connect.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Partition stops forwarding in both directions until Heal; open connections stay open.
func (p *Proxy) Partition() { p.set(true, p.delay) }

// Heal forwards again, with no added delay.
func (p *Proxy) Heal() { p.set(false, 0) }

// Delay forwards every chunk d after it arrived.
func (p *Proxy) Delay(d time.Duration) { p.set(false, d) }

func (p *Proxy) set(paused bool, delay time.Duration) {
	p.mu.Lock()
	p.paused, p.delay = paused, delay
	p.mu.Unlock()
	p.cond.Broadcast()
}

// Close stops the proxy and drops every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.cond.Broadcast()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(in, out) {
			return
		}
		p.wg.Add(2)
		go p.pump(out, in)
		go p.pump(in, out)
	}
}

func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

type chunk struct {
	data []byte
	at   time.Time
}

// pump copies src to dst through a small queue, so that a chunk can be held (partition) or
// released late (delay) while reading goes on until the queue is full: then TCP's own
// back-pressure reaches the sender, as on a real link.
func (p *Proxy) pump(dst, src net.Conn) {
	defer p.wg.Done()
	q := make(chan chunk, 64)
	done := make(chan struct{})
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case q <- chunk{buf[:n], time.Now()}:
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		close(done)
		src.Close()
		dst.Close()
		p.mu.Lock()
		delete(p.conns, src)
		delete(p.conns, dst)
		p.mu.Unlock()
	}()
	for c := range q {
		if !p.hold(c.at) {
			return
		}
		if _, err := dst.Write(c.data); err != nil {
			return
		}
	}
}

// hold waits while the proxy is partitioned and until the chunk's delay has passed; false
// means the proxy closed.
func (p *Proxy) hold(arrived time.Time) bool {
	p.mu.Lock()
	for p.paused && !p.closed {
		p.cond.Wait()
	}
	closed, delay := p.closed, p.delay
	p.mu.Unlock()
	if closed {
		return false
	}
	if wait := time.Until(arrived.Add(delay)); wait > 0 {
		time.Sleep(wait)
	}
	return true
}
