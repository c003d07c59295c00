package durablews_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeBroker is a minimal AMQP 0-9-1 server on loopback for the faults the
// shared broker cannot be made to show on demand: a broker that stops
// reading, a return and acks in an order of our choosing, a channel error
// of any code. It speaks just enough of the protocol for amqp091-go and
// the Publisher: the handshake, channel.open, confirm.select,
// exchange.declare, basic.publish with its content, channel.close and
// connection.close. What it does with a publish is up to the test
// (onPublish); without one it acks each publish at once.
type fakeBroker struct {
	t  testing.TB
	ln net.Listener

	// onPublishMethod, when set, runs in the connection's reader as soon
	// as a basic.publish method frame arrived, before its content is
	// read: a hook that blocks stops the broker from reading.
	onPublishMethod func(c *fakeConn)
	// onPublish runs in the connection's reader for each complete
	// publish; nil acks it at once.
	onPublish func(c *fakeConn, p fakePublish)

	mu    sync.Mutex
	conns []*fakeConn
	wg    sync.WaitGroup
}

// fakePublish is one basic.publish the fake broker received.
type fakePublish struct {
	Channel  uint16
	Tag      uint64 // delivery tag, counted per channel in confirm mode
	Exchange string
	Key      string
	header   []byte // the content header frame's payload, as received
	Body     []byte
}

// fakeConn is one client connection to the fake broker. Its send methods
// may be called from any goroutine.
type fakeConn struct {
	nc  net.Conn
	wmu sync.Mutex

	mu   sync.Mutex
	tags map[uint16]uint64 // last delivery tag per channel
}

func newFakeBroker(t testing.TB) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{t: t, ln: ln}
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(b.close)
	return b
}

// URL is the amqp:// URL of the fake broker.
func (b *fakeBroker) URL() string { return "amqp://guest:guest@" + b.ln.Addr().String() + "/" }

func (b *fakeBroker) accept() {
	defer b.wg.Done()
	for {
		nc, err := b.ln.Accept()
		if err != nil {
			return
		}
		c := &fakeConn{nc: nc, tags: map[uint16]uint64{}}
		b.mu.Lock()
		b.conns = append(b.conns, c)
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer nc.Close()
			_ = b.serve(c)
		}()
	}
}

// close stops listening, drops every connection and waits for the
// broker's goroutines. A test whose hook blocks must unblock it first
// (register that cleanup after newFakeBroker, so it runs before this).
func (b *fakeBroker) close() {
	_ = b.ln.Close()
	b.mu.Lock()
	for _, c := range b.conns {
		_ = c.nc.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// AMQP class and method ids used here.
const (
	fkConnection = 10
	fkChannel    = 20
	fkExchange   = 40
	fkBasic      = 60
	fkConfirm    = 85

	fkFrameMethod    = 1
	fkFrameHeader    = 2
	fkFrameBody      = 3
	fkFrameHeartbeat = 8
	fkFrameEnd       = 0xCE
	fkFrameMax       = 131072
)

type fkFrame struct {
	typ     byte
	channel uint16
	payload []byte
}

func readFrame(r *bufio.Reader) (fkFrame, error) {
	var h [7]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return fkFrame{}, err
	}
	f := fkFrame{typ: h[0], channel: binary.BigEndian.Uint16(h[1:3])}
	f.payload = make([]byte, binary.BigEndian.Uint32(h[3:7]))
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return fkFrame{}, err
	}
	end, err := r.ReadByte()
	if err != nil {
		return fkFrame{}, err
	}
	if end != fkFrameEnd {
		return fkFrame{}, fmt.Errorf("bad frame end %#x", end)
	}
	return f, nil
}

func (c *fakeConn) writeFrame(typ byte, channel uint16, payload []byte) error {
	buf := make([]byte, 0, 8+len(payload))
	buf = append(buf, typ)
	buf = binary.BigEndian.AppendUint16(buf, channel)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(payload)))
	buf = append(buf, payload...)
	buf = append(buf, fkFrameEnd)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(buf)
	return err
}

// method sends a method frame; args are its encoded arguments.
func (c *fakeConn) method(channel, class, method uint16, args ...[]byte) error {
	p := binary.BigEndian.AppendUint16(nil, class)
	p = binary.BigEndian.AppendUint16(p, method)
	for _, a := range args {
		p = append(p, a...)
	}
	return c.writeFrame(fkFrameMethod, channel, p)
}

func fkShort(v uint16) []byte    { return binary.BigEndian.AppendUint16(nil, v) }
func fkLong(v uint32) []byte     { return binary.BigEndian.AppendUint32(nil, v) }
func fkLongLong(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func fkShortStr(s string) []byte { return append([]byte{byte(len(s))}, s...) }
func fkLongStr(s string) []byte  { return append(fkLong(uint32(len(s))), s...) }

// Ack confirms delivery tag tag on channel.
func (c *fakeConn) Ack(channel uint16, tag uint64) error {
	return c.method(channel, fkBasic, 80, fkLongLong(tag), []byte{0})
}

// Return sends p back as unroutable (basic.return 312 NO_ROUTE, with p's
// properties and body), as RabbitMQ does before acking it.
func (c *fakeConn) Return(p fakePublish) error {
	if err := c.method(p.Channel, fkBasic, 50, fkShort(312), fkShortStr("NO_ROUTE"), fkShortStr(p.Exchange), fkShortStr(p.Key)); err != nil {
		return err
	}
	if err := c.writeFrame(fkFrameHeader, p.Channel, p.header); err != nil {
		return err
	}
	return c.writeFrame(fkFrameBody, p.Channel, p.Body)
}

// CloseChannel closes channel with a channel error, e.g. 403
// ACCESS_REFUSED, naming basic.publish as the method that caused it.
func (c *fakeConn) CloseChannel(channel uint16, code uint16, text string) error {
	return c.method(channel, fkChannel, 40, fkShort(code), fkShortStr(text), fkShort(fkBasic), fkShort(40))
}

// shortStrAt reads the short string at p[i:] and returns it with the
// index after it.
func shortStrAt(p []byte, i int) (string, int) {
	n := int(p[i])
	return string(p[i+1 : i+1+n]), i + 1 + n
}

func (b *fakeBroker) serve(c *fakeConn) error {
	r := bufio.NewReader(c.nc)
	proto := make([]byte, 8)
	if _, err := io.ReadFull(r, proto); err != nil {
		return err
	}
	// connection.start: version 0-9, no server properties, PLAIN.
	if err := c.method(0, fkConnection, 10, []byte{0, 9}, fkLong(0), fkLongStr("PLAIN"), fkLongStr("en_US")); err != nil {
		return err
	}
	confirming := map[uint16]bool{}
	var pub *fakePublish // the publish whose content is being read
	for {
		f, err := readFrame(r)
		if err != nil {
			return err
		}
		switch f.typ {
		case fkFrameHeartbeat:
			continue
		case fkFrameHeader:
			if pub == nil {
				return errors.New("content header without basic.publish")
			}
			pub.header = f.payload
			size := binary.BigEndian.Uint64(f.payload[4:12])
			if size > 0 {
				continue
			}
		case fkFrameBody:
			if pub == nil {
				return errors.New("content body without basic.publish")
			}
			pub.Body = append(pub.Body, f.payload...)
			if uint64(len(pub.Body)) < binary.BigEndian.Uint64(pub.header[4:12]) {
				continue
			}
		case fkFrameMethod:
		default:
			return fmt.Errorf("unexpected frame type %d", f.typ)
		}
		if f.typ != fkFrameMethod {
			// A publish is complete.
			p := *pub
			pub = nil
			if b.onPublish != nil {
				b.onPublish(c, p)
			} else if confirming[p.Channel] {
				_ = c.Ack(p.Channel, p.Tag)
			}
			continue
		}
		class, method := binary.BigEndian.Uint16(f.payload[0:2]), binary.BigEndian.Uint16(f.payload[2:4])
		args := f.payload[4:]
		ch := f.channel
		switch {
		case class == fkConnection && method == 11: // start-ok
			err = c.method(0, fkConnection, 30, fkShort(0), fkLong(fkFrameMax), fkShort(0)) // tune: no heartbeats
		case class == fkConnection && method == 31: // tune-ok
		case class == fkConnection && method == 40: // open
			err = c.method(0, fkConnection, 41, fkShortStr(""))
		case class == fkConnection && method == 50: // close
			_ = c.method(0, fkConnection, 51)
			return nil
		case class == fkConnection && method == 51: // close-ok
			return nil
		case class == fkChannel && method == 10: // open
			err = c.method(ch, fkChannel, 11, fkLongStr(""))
		case class == fkChannel && method == 40: // close
			delete(confirming, ch)
			c.mu.Lock()
			delete(c.tags, ch)
			c.mu.Unlock()
			err = c.method(ch, fkChannel, 41)
		case class == fkChannel && method == 41: // close-ok (after our CloseChannel)
			delete(confirming, ch)
			c.mu.Lock()
			delete(c.tags, ch)
			c.mu.Unlock()
		case class == fkConfirm && method == 10: // select
			confirming[ch] = true
			if args[0]&1 == 0 {
				err = c.method(ch, fkConfirm, 11)
			}
		case class == fkExchange && method == 10: // declare
			if args[len(args)-5]&(1<<4) == 0 { // no-wait unset (bits: passive, durable, auto-delete, internal, no-wait)
				err = c.method(ch, fkExchange, 11)
			}
		case class == fkBasic && method == 40: // publish
			p := fakePublish{Channel: ch}
			i := 2 // reserved short
			p.Exchange, i = shortStrAt(args, i)
			p.Key, _ = shortStrAt(args, i)
			if confirming[ch] {
				c.mu.Lock()
				c.tags[ch]++
				p.Tag = c.tags[ch]
				c.mu.Unlock()
			}
			pub = &p
			if b.onPublishMethod != nil {
				b.onPublishMethod(c)
			}
		default:
			return fmt.Errorf("fake broker: unexpected method %d.%d", class, method)
		}
		if err != nil {
			return err
		}
	}
}

// waitFor waits up to d for cond, polling.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
