package testbroker

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Ports are picked at random from [portMin, portMax): below the kernel's
// ephemeral range (32768-60999 on Linux) so that outgoing client connections
// and ":0" listeners never take a node's port while it is down between Kill
// and StartAgain, and away from the shared broker's well-known ports.
const (
	portMin = 20000
	portMax = 32000
)

var reservedPorts = map[int]bool{
	25672: true, // shared broker's Erlang distribution port
	// scripts/rabbitmq-cluster.sh's Erlang distribution ports (dws1-3)
	25681: true, 25682: true, 25683: true,
}

// portLock is a cross-process reservation of one TCP port: an flock(2) on
// <tmp>/durablews-testbroker-ports/<port>.lock. The kernel drops the lock when
// the holding process dies, so crashed test binaries never leak reservations.
type portLock struct {
	port int
	f    *os.File
}

func (l *portLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}

func portLockDir() string {
	return filepath.Join(os.TempDir(), "durablews-testbroker-ports")
}

// reservePorts reserves n distinct free ports. A port is taken only if this
// process wins its lock file and the port can currently be bound on all
// interfaces.
func reservePorts(n int) ([]*portLock, error) {
	dir := portLockDir()
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("testbroker: port lock dir: %w", err)
	}
	var locks []*portLock
	seen := map[int]bool{}
	for attempts := 0; len(locks) < n; attempts++ {
		if attempts > 2000 {
			for _, l := range locks {
				l.release()
			}
			return nil, errors.New("testbroker: could not find free ports")
		}
		port := portMin + rand.IntN(portMax-portMin)
		if seen[port] || reservedPorts[port] {
			continue
		}
		seen[port] = true
		l, ok := tryLockPort(dir, port)
		if !ok {
			continue
		}
		if !portBindable(port) {
			l.release()
			continue
		}
		locks = append(locks, l)
	}
	return locks, nil
}

func tryLockPort(dir string, port int) (*portLock, bool) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)+".lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, false
	}
	return &portLock{port: port, f: f}, true
}

func portBindable(port int) bool {
	// Binding the wildcard address fails if anything listens on the port on
	// any interface (including 127.0.0.1).
	ln, err := net.Listen("tcp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}
