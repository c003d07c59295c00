// Package brokerversion says which RabbitMQ the tests, the benchmark and the
// private test nodes run on: one setting, DURABLEWS_RABBITMQ, names a version
// of the matrix ("4.0", "3.10", "4.3"; default DefaultName), and this package
// knows where that version is installed and where its shared node listens.
//
// The versions and their ports are those of scripts/rabbitmq-versions.sh,
// which installs and starts them (TestMatchesScript checks the two agree):
// 3.10 is the machine's own broker (Debian 12's package, scripts/rabbitmq.sh);
// 4.0 (Debian 13) and 4.3 (Debian unstable) live in debootstrapped roots
// under DURABLEWS_RABBITMQ_ROOTS and run there with chroot.
package brokerversion

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultName is the version used when DURABLEWS_RABBITMQ is unset: the
// newest RabbitMQ that installs reliably on a fresh Debian 12 (Debian 13's
// package, kept up by Debian's security team; unstable's 4.3 moves daily and
// its mirror's Release file is past its validity date).
const DefaultName = "4.0"

// EnvVersion names the version; EnvRoots is where the roots are kept.
const (
	EnvVersion = "DURABLEWS_RABBITMQ"
	EnvRoots   = "DURABLEWS_RABBITMQ_ROOTS"
	// DefaultRoots is the scripts' default for EnvRoots.
	DefaultRoots = "/var/cache/durablews/rabbitmq"
)

// Version is one RabbitMQ of the matrix.
type Version struct {
	// Name is the series, e.g. "4.0".
	Name string
	// Root is the directory its files live in: "/" for the machine's own
	// broker, else a debootstrapped root that its processes are chroot'ed
	// into.
	Root string
	// Shared node's ports (scripts/rabbitmq-versions.sh start VER).
	AMQPPort, ManagementPort, STOMPPort, WebSTOMPPort int
}

// Names lists the supported versions, the default first.
func Names() []string { return []string{"4.0", "3.10", "4.3"} }

// Lookup returns the named version.
func Lookup(name string) (Version, error) {
	roots := os.Getenv(EnvRoots)
	if roots == "" {
		roots = DefaultRoots
	}
	v, ok := table[name]
	if !ok {
		return Version{}, fmt.Errorf("%s=%q: unknown RabbitMQ version (supported: %s)", EnvVersion, name, strings.Join(Names(), ", "))
	}
	v.Name = name
	if v.Root == "" {
		v.Root = filepath.Join(roots, name)
	}
	return v, nil
}

// table: the ports of scripts/rabbitmq-versions.sh (see its header).
var table = map[string]Version{
	"3.10": {Root: "/", AMQPPort: 5672, ManagementPort: 15672, STOMPPort: 61613, WebSTOMPPort: 15674},
	"4.0":  {AMQPPort: 5640, ManagementPort: 15640, STOMPPort: 61640, WebSTOMPPort: 15740},
	"4.3":  {AMQPPort: 5643, ManagementPort: 15643, STOMPPort: 61643, WebSTOMPPort: 15743},
}

// Selected is the version DURABLEWS_RABBITMQ names, DefaultName when unset.
func Selected() (Version, error) {
	name := os.Getenv(EnvVersion)
	if name == "" {
		name = DefaultName
	}
	return Lookup(name)
}

// MustSelected is Selected for callers that cannot go on without it; it
// panics with the reason (tests call it from TestMain or helpers).
func MustSelected() Version {
	v, err := Selected()
	if err != nil {
		panic(err)
	}
	return v
}

// Chrooted reports whether the version runs in a root of its own.
func (v Version) Chrooted() bool { return v.Root != "/" }

// Path is the host path of p, a path inside the version's root.
func (v Version) Path(p string) string { return filepath.Join(v.Root, p) }

// CheckInstalled says whether the version's RabbitMQ is there and its root
// is usable (/proc and /dev mounted), with the command that fixes it.
func (v Version) CheckInstalled() error {
	fix := "run: bash scripts/rabbitmq-versions.sh install " + v.Name + "   (or: make broker RABBITMQ=" + v.Name + ")"
	if !v.Chrooted() {
		fix = "run: make broker RABBITMQ=3.10   (scripts/rabbitmq.sh installs it)"
	}
	if _, err := os.Stat(v.Path("/usr/lib/rabbitmq/bin/rabbitmq-server")); err != nil {
		return fmt.Errorf("RabbitMQ %s is not installed (%w): %s", v.Name, err, fix)
	}
	if v.Chrooted() {
		if _, err := os.Stat(v.Path("/proc/self/stat")); err != nil {
			return fmt.Errorf("RabbitMQ %s's root %s has no /proc mounted (after a reboot?): %s", v.Name, v.Root, fix)
		}
		if _, err := os.Stat(v.Path("/dev/urandom")); err != nil {
			return fmt.Errorf("RabbitMQ %s's root %s has no /dev: %s", v.Name, v.Root, fix)
		}
		if os.Geteuid() != 0 {
			return errors.New("RabbitMQ " + v.Name + " runs in a root with chroot, which needs root: run the tests as root, or with DURABLEWS_RABBITMQ=3.10")
		}
	}
	return nil
}

// AMQPURL is guest's URL of the version's shared node.
func (v Version) AMQPURL() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", v.AMQPPort) }

// WebSTOMPURL is the shared node's Web-STOMP endpoint.
func (v Version) WebSTOMPURL() string { return fmt.Sprintf("ws://127.0.0.1:%d/ws", v.WebSTOMPPort) }

// ManagementURL is the shared node's management API, without credentials
// and without a trailing slash.
func (v Version) ManagementURL() string { return fmt.Sprintf("http://127.0.0.1:%d", v.ManagementPort) }

// STOMPAddr is host:port of the shared node's plain STOMP listener.
func (v Version) STOMPAddr() string { return fmt.Sprintf("127.0.0.1:%d", v.STOMPPort) }

// The shared test broker, as every test, the benchmark and the web tests
// find it: DURABLEWS_AMQP_URL, DURABLEWS_WEB_STOMP_URL and
// DURABLEWS_MANAGEMENT_URL when set (`make` exports them for the version it
// runs), else the shared node of the selected version.
const (
	EnvAMQPURL       = "DURABLEWS_AMQP_URL"
	EnvWebSTOMPURL   = "DURABLEWS_WEB_STOMP_URL"
	EnvManagementURL = "DURABLEWS_MANAGEMENT_URL"
)

// SharedAMQPURL is the shared test broker's AMQP URL (guest).
func SharedAMQPURL() string { return envOr(EnvAMQPURL, MustSelected().AMQPURL) }

// SharedWebSTOMPURL is the shared test broker's Web-STOMP endpoint.
func SharedWebSTOMPURL() string { return envOr(EnvWebSTOMPURL, MustSelected().WebSTOMPURL) }

// SharedManagementURL is the shared test broker's management API, without
// credentials (guest/guest) and without a trailing slash.
func SharedManagementURL() string {
	return strings.TrimSuffix(envOr(EnvManagementURL, MustSelected().ManagementURL), "/")
}

func envOr(key string, def func() string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def()
}
