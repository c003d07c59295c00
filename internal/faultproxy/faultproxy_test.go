package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer echoes every connection and counts the bytes it received.
type echoServer struct {
	ln       net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	received atomic.Int64
	closedBy atomic.Int64 // connections that ended with an error or EOF
}

func newEchoServer(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &echoServer{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						s.received.Add(int64(n))
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				s.closedBy.Add(1)
				_ = c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

func (s *echoServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

func dialProxy(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, msg, string(buf))
	require.NoError(t, c.SetDeadline(time.Time{}))
}

// readFails expects a read on c to fail (EOF or reset) within d.
func readFails(t *testing.T, c net.Conn, d time.Duration) error {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(d)))
	_, err := c.Read(make([]byte, 1))
	require.Error(t, err)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "read timed out instead of failing: %v", err)
	return err
}

// requireUnreachable dials addr and expects the connection to fail: on
// loopback the proxy's RST can arrive before connect(2) returns, so either the
// dial or the first read fails.
func requireUnreachable(t *testing.T, addr string) error {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "dial timed out: %v", err)
		return err
	}
	defer c.Close()
	return readFails(t, c, 2*time.Second)
}

func waitFor(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestForwardsBothWays(t *testing.T) {
	t.Parallel()
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	require.Equal(t, s.addr(), p.Target())

	c1, c2 := dialProxy(t, p), dialProxy(t, p)
	roundTrip(t, c1, "hello")
	roundTrip(t, c2, "world!")
	big := bytes.Repeat([]byte("0123456789"), 100_000) // 1 MB, several chunks
	go func() { _, _ = c1.Write(big) }()
	got := make([]byte, len(big))
	require.NoError(t, c1.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err := io.ReadFull(c1, got)
	require.NoError(t, err)
	require.Equal(t, big, got)

	// Counters are bumped after each write returns, possibly after the
	// client has read the bytes.
	want := int64(11 + len(big))
	waitFor(t, func() bool {
		st := p.Stats()
		return st.BytesToTarget == want && st.BytesToClient == want
	}, "byte counters")
	st := p.Stats()
	require.EqualValues(t, 2, st.Accepted)
	require.Equal(t, 2, st.Active)

	// A clean close from the client propagates (FIN) and the link goes away.
	require.NoError(t, c2.(*net.TCPConn).CloseWrite())
	_, err = c2.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF)
	waitFor(t, func() bool { return p.Stats().Active == 1 }, "link not removed after close")
}

func TestCutAll(t *testing.T) {
	t.Parallel()
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	c1, c2 := dialProxy(t, p), dialProxy(t, p)
	roundTrip(t, c1, "a")
	roundTrip(t, c2, "b")

	require.Equal(t, 2, p.CutAll())
	t.Logf("client sees: %v", readFails(t, c1, 2*time.Second))
	readFails(t, c2, 2*time.Second)
	waitFor(t, func() bool { return s.closedBy.Load() == 2 }, "server side not closed by CutAll")
	waitFor(t, func() bool { return p.Stats().Active == 0 }, "links not removed")

	// Still accepting.
	c3 := dialProxy(t, p)
	roundTrip(t, c3, "again")
	st := p.Stats()
	require.EqualValues(t, 2, st.Cut)
	require.EqualValues(t, 3, st.Accepted)
}

func TestStall(t *testing.T) {
	t.Parallel()
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	c := dialProxy(t, p)
	roundTrip(t, c, "before")
	before := s.received.Load()

	p.Stall(true)
	p.Stall(true) // idempotent
	_, err := c.Write([]byte("during"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "expected a timeout while stalled, got %v", err)
	require.Equal(t, before, s.received.Load(), "bytes reached the server during a stall")

	// A connection opened during the stall is accepted but silent, and the
	// target is not dialled yet.
	c2 := dialProxy(t, p)
	_, err = c2.Write([]byte("new"))
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, before, s.received.Load())
	require.Equal(t, 2, p.Stats().Active)

	p.Stall(false)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 6)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "during", string(buf))
	require.NoError(t, c2.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf = make([]byte, 3)
	_, err = io.ReadFull(c2, buf)
	require.NoError(t, err)
	require.Equal(t, "new", string(buf))
}

func TestStallServerToClient(t *testing.T) {
	t.Parallel()
	// The target talks first; a stall must hold that direction too.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	send := make(chan string)
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for m := range send {
			if _, err := c.Write([]byte(m)); err != nil {
				return
			}
		}
	}()
	p := newProxy(t, ln.Addr().String())
	c := dialProxy(t, p)
	send <- "1"
	buf := make([]byte, 1)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)

	p.Stall(true)
	send <- "2"
	require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = c.Read(buf)
	require.Error(t, err)
	p.Stall(false)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "2", string(buf))
	close(send)
	<-srvDone
}

func TestLatency(t *testing.T) {
	t.Parallel()
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	c := dialProxy(t, p)
	roundTrip(t, c, "warm")

	// Bounds are wide so a loaded CI machine cannot fail them, yet far from
	// what a broken proxy would take (no latency: ~0; not pipelined: 20d).
	const d = 250 * time.Millisecond
	p.SetLatency(d)
	start := time.Now()
	roundTrip(t, c, "x")
	rtt := time.Since(start)
	require.GreaterOrEqual(t, rtt, 2*d)
	require.Less(t, rtt, 2*d+time.Second)

	// Pipelined: 10 messages sent 10 ms apart take ~2d + 90 ms, not 20d (5 s).
	start = time.Now()
	go func() {
		for i := 0; i < 10; i++ {
			_, _ = c.Write([]byte{byte('0' + i)})
			time.Sleep(10 * time.Millisecond)
		}
	}()
	buf := make([]byte, 10)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "0123456789", string(buf))
	el := time.Since(start)
	require.GreaterOrEqual(t, el, 2*d)
	require.Less(t, el, 2*d+1500*time.Millisecond, "latency is not pipelined")

	p.SetLatency(0)
	start = time.Now()
	roundTrip(t, c, "fast")
	require.Less(t, time.Since(start), d, "latency not removed")
}

func TestRefuse(t *testing.T) {
	t.Parallel()
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	old := dialProxy(t, p)
	roundTrip(t, old, "x")

	p.SetRefuse(true)
	t.Logf("refused client sees: %v", requireUnreachable(t, p.Addr()))
	roundTrip(t, old, "open connections keep working")

	p.SetRefuse(false)
	c2 := dialProxy(t, p)
	roundTrip(t, c2, "back")
	st := p.Stats()
	require.EqualValues(t, 3, st.Accepted)
	require.EqualValues(t, 1, st.Refused)
}

func TestDialError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())

	p := newProxy(t, dead)
	requireUnreachable(t, p.Addr())
	waitFor(t, func() bool { return p.Stats().DialErrors == 1 }, "dial error not counted")

	// SetTarget redirects new connections.
	s := newEchoServer(t)
	p.SetTarget(s.addr())
	roundTrip(t, dialProxy(t, p), "redirected")
}

func TestCloseTearsDownEverything(t *testing.T) {
	t.Parallel()
	s := newEchoServer(t)
	p, err := New(s.addr())
	require.NoError(t, err)
	busy := dialProxy(t, p)
	roundTrip(t, busy, "x")
	p.SetLatency(time.Hour) // a chunk waiting on latency
	_, err = busy.Write([]byte("held"))
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)
	p.SetLatency(0)
	p.Stall(true) // plus a connection accepted during a stall (not dialled)
	stalled := dialProxy(t, p)
	waitFor(t, func() bool { return p.Stats().Active == 2 }, "links not registered")

	done := make(chan error)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs")
	}
	readFails(t, busy, 2*time.Second)
	readFails(t, stalled, 2*time.Second)
	_, err = net.DialTimeout("tcp", p.Addr(), time.Second)
	require.Error(t, err, "listener still up after Close")
	require.NoError(t, p.Close(), "Close is idempotent")
	require.Equal(t, 0, p.Stats().Active)
}
