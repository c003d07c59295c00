// Package faultproxy is a TCP proxy that injects network faults between a
// client (an AMQP publisher, a Web-STOMP tab) and the broker.
//
// Killing the broker tests only one kind of failure; connection resets,
// half-open connections (a peer that silently stops answering), slow links
// and an unreachable broker exercise different code paths (heartbeats,
// confirm timeouts, reconnect loops) and need no broker restart, so they
// are cheap enough to run against the shared broker.
package faultproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DialTimeout bounds the proxy's connection attempt to the target.
const DialTimeout = 5 * time.Second

const chunkSize = 32 << 10

// Stats are cumulative counters since New, except Active.
type Stats struct {
	Accepted      int64 // connections accepted by the listener, including refused ones
	Refused       int64 // connections reset at once because of SetRefuse(true)
	DialErrors    int64 // connections reset because the target was unreachable
	Cut           int64 // connections reset by CutAll
	Active        int   // connections currently open through the proxy
	BytesToTarget int64 // bytes forwarded client -> target
	BytesToClient int64 // bytes forwarded target -> client
}

// Proxy forwards TCP connections from a local listener to a target address.
// All methods are safe for concurrent use.
type Proxy struct {
	ln   net.Listener
	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	latency       atomic.Int64 // time.Duration
	bytesToTarget atomic.Int64
	bytesToClient atomic.Int64

	mu     sync.Mutex
	target string
	links  map[*link]struct{}
	refuse bool
	resume chan struct{} // non-nil while stalled; closed when the stall ends
	closed bool
	stats  Stats // counters guarded by mu (not Active/Bytes*)
}

// New starts a proxy listening on 127.0.0.1 on a free port and forwarding
// to target (host:port).
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		ln:     ln,
		done:   make(chan struct{}),
		target: target,
		links:  map[*link]struct{}{},
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the proxy's listening address (127.0.0.1:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the current target address.
func (p *Proxy) Target() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// SetTarget changes the target for new connections; open connections keep
// their target.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// CutAll resets every open connection on both sides (as if the network
// dropped them: the client and the target both see ECONNRESET or EOF) and
// returns how many were cut. New connections are still accepted.
func (p *Proxy) CutAll() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.stats.Cut += int64(len(links))
	p.mu.Unlock()
	for _, l := range links {
		l.abort()
	}
	return len(links)
}

// SetRefuse makes the proxy reset every new connection immediately after
// accepting it (TCP RST, no byte forwarded, the target is never dialled):
// clients see "connection reset by peer" or EOF on their first read or
// write, i.e. an unreachable broker. The listener stays up, so the port
// cannot be taken by another process. Open connections are not affected;
// combine with CutAll to simulate a broker that goes away.
func (p *Proxy) SetRefuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// Stall stops (on) or resumes (off) forwarding in both directions on all
// connections, including ones opened during the stall, while keeping them
// open: a half-open connection or network partition. Neither side sees an
// error; data sent during the stall waits in socket buffers (senders block
// once they fill) and is delivered in order on resume. Connections accepted
// during a stall dial the target only on resume.
func (p *Proxy) Stall(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && p.resume == nil:
		p.resume = make(chan struct{})
	case !on && p.resume != nil:
		close(p.resume)
		p.resume = nil
	}
}

// SetLatency delays every forwarded chunk by d in each direction (a round
// trip gains 2d). Chunks are pipelined, so throughput is not limited to one
// chunk per d. Zero disables it. A chunk already waiting keeps the latency
// it was scheduled with.
func (p *Proxy) SetLatency(d time.Duration) {
	if d < 0 {
		d = 0
	}
	p.latency.Store(int64(d))
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	s := p.stats
	s.Active = len(p.links)
	p.mu.Unlock()
	s.BytesToTarget = p.bytesToTarget.Load()
	s.BytesToClient = p.bytesToClient.Load()
	return s
}

// Close stops the listener, resets all connections and waits for every
// goroutine of the proxy to finish. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	close(p.done)
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range links {
		l.abort()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (e.g. EMFILE): back off briefly.
			select {
			case <-p.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		p.mu.Lock()
		p.stats.Accepted++
		if p.closed {
			p.mu.Unlock()
			reset(c)
			return
		}
		if p.refuse {
			p.stats.Refused++
			p.mu.Unlock()
			reset(c)
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		l := &link{p: p, client: c, ctx: ctx, cancel: cancel, done: ctx.Done()}
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go l.run()
	}
}

// waitUnstalled blocks while the proxy is stalled. It returns false if done
// is closed first.
func (p *Proxy) waitUnstalled(done <-chan struct{}) bool {
	for {
		p.mu.Lock()
		r := p.resume
		p.mu.Unlock()
		if r == nil {
			return true
		}
		select {
		case <-r:
		case <-done:
			return false
		}
	}
}

func (p *Proxy) remove(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// reset closes c with an RST instead of a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// link is one proxied connection.
type link struct {
	p      *Proxy
	client net.Conn
	ctx    context.Context // cancelled when the link is torn down
	cancel context.CancelFunc
	done   <-chan struct{} // ctx.Done()

	mu     sync.Mutex
	server net.Conn
	ended  bool
}

func (l *link) run() {
	defer l.p.wg.Done()
	defer l.p.remove(l)

	if !l.p.waitUnstalled(l.done) {
		return
	}
	// The dial is abandoned if the link is cut or the proxy closed meanwhile.
	ctx, cancel := context.WithTimeout(l.ctx, DialTimeout)
	var d net.Dialer
	server, err := d.DialContext(ctx, "tcp", l.p.Target())
	cancel()
	if err != nil {
		l.p.mu.Lock()
		l.p.stats.DialErrors++
		l.p.mu.Unlock()
		l.abort()
		return
	}
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		reset(server)
		return
	}
	l.server = server
	l.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pipe(l.client, server, &l.p.bytesToTarget) }()
	go func() { defer wg.Done(); l.pipe(server, l.client, &l.p.bytesToClient) }()
	wg.Wait()
	l.end(false)
}

// abort tears the link down with RSTs on both sides.
func (l *link) abort() { l.end(true) }

func (l *link) end(rst bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return
	}
	l.ended = true
	l.cancel()
	for _, c := range []net.Conn{l.client, l.server} {
		if c == nil {
			continue
		}
		if rst {
			reset(c)
		} else {
			_ = c.Close()
		}
	}
}

type chunk struct {
	data []byte
	at   time.Time
	err  error // final read error (io.EOF for a clean half-close)
}

// pipe forwards src to dst until src ends or the link is torn down. A reader
// goroutine stamps chunks with their arrival time; this goroutine applies
// stalls and latency and writes them.
func (l *link) pipe(src, dst net.Conn, counter *atomic.Int64) {
	chunks := make(chan chunk, 16)
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		defer close(chunks)
		for {
			buf := make([]byte, chunkSize)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case chunks <- chunk{data: buf[:n], at: time.Now()}:
				case <-l.done:
					return
				}
			}
			if err != nil {
				select {
				case chunks <- chunk{err: err, at: time.Now()}:
				case <-l.done:
				}
				return
			}
		}
	}()
	defer rwg.Wait()

	for {
		var c chunk
		var ok bool
		select {
		case c, ok = <-chunks:
			if !ok {
				return
			}
		case <-l.done:
			return
		}
		if !l.hold(c.at) {
			return
		}
		if c.err != nil {
			if errors.Is(c.err, io.EOF) {
				// Propagate the half-close; the link ends when both
				// directions are done.
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
					return
				}
			}
			l.abort()
			return
		}
		if _, err := dst.Write(c.data); err != nil {
			l.abort()
			return
		}
		counter.Add(int64(len(c.data)))
	}
}

// hold waits until the chunk that arrived at "at" may be delivered: not
// stalled and at+latency reached. It returns false if the link ended.
func (l *link) hold(at time.Time) bool {
	for {
		if !l.p.waitUnstalled(l.done) {
			return false
		}
		wait := time.Until(at.Add(time.Duration(l.p.latency.Load())))
		if wait <= 0 {
			// A stall may have begun while we waited for the latency.
			l.p.mu.Lock()
			stalled := l.p.resume != nil
			l.p.mu.Unlock()
			if !stalled {
				return true
			}
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return false
		}
	}
}
