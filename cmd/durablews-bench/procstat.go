package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSnap is a point-in-time reading of CPU time: this process, the broker
// process (when it runs on this machine and could be found), and the whole
// machine (to spot other load sharing the cores).
type cpuSnap struct {
	at       time.Time
	self     time.Duration
	broker   time.Duration
	brokerOK bool
	busy     time.Duration // all CPUs, non-idle
	busyOK   bool
}

// cpuUse is CPU cores used over a window: 1.0 = one core fully busy.
type cpuUse struct {
	Client, Broker, Other float64
	BrokerKnown           bool
}

const clockTick = 100 // USER_HZ; Linux has used 100 on every mainstream architecture

type cpuMeter struct {
	brokerPID int
}

// newCPUMeter finds the broker process by the TCP port it listens on (the
// AMQP URL's), when the broker runs on this machine.
func newCPUMeter(amqpURL string) *cpuMeter {
	m := &cpuMeter{}
	u, err := url.Parse(amqpURL)
	if err != nil {
		return m
	}
	port := u.Port()
	if port == "" {
		port = "5672"
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return m
	}
	m.brokerPID = pidListeningOn(p)
	return m
}

func (m *cpuMeter) snap() cpuSnap {
	s := cpuSnap{at: time.Now()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if m.brokerPID > 0 {
		s.broker, s.brokerOK = procCPU(m.brokerPID)
	}
	s.busy, s.busyOK = machineBusy()
	return s
}

func (a cpuSnap) to(b cpuSnap) cpuUse {
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return cpuUse{}
	}
	u := cpuUse{Client: (b.self - a.self).Seconds() / wall}
	if a.brokerOK && b.brokerOK {
		u.Broker = (b.broker - a.broker).Seconds() / wall
		u.BrokerKnown = true
	}
	if a.busyOK && b.busyOK {
		u.Other = (b.busy-a.busy).Seconds()/wall - u.Client - u.Broker
		if u.Other < 0 {
			u.Other = 0
		}
	}
	return u
}

// procCPU reads utime+stime of pid from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command may contain spaces; fields resume after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * time.Second / clockTick, true
}

// machineBusy is the non-idle CPU time of all CPUs from /proc/stat.
func machineBusy() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, false
	}
	var total, idle int64
	for i, v := range f[1:] {
		if i >= 8 { // guest time is already in user
			break
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false
		}
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return time.Duration(total-idle) * time.Second / clockTick, true
}

// pidListeningOn finds the process with a listening TCP socket on port
// (IPv4 or IPv6) by matching the socket inode from /proc/net/tcp* against
// /proc/*/fd. It returns 0 when not found (other user without privileges,
// broker on another machine).
func pidListeningOn(port int) int {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A = LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fs[1], ":")
			if !ok {
				continue
			}
			p, err := strconv.ParseInt(hexPort, 16, 32)
			if err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name()))
			if err == nil && inodes[target] {
				return pid
			}
		}
	}
	return 0
}

// hostInfo reads the CPU model, total memory and kernel release.
func hostInfo() (cpuModel, memory, kernel string) {
	cpuModel, memory, kernel = "unknown CPU", "unknown", "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				f := strings.Fields(rest)
				if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
					memory = fmt.Sprintf("%.1f GiB", kb/(1<<20))
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return cpuModel, memory, kernel
}
