package testbroker

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a live (non-zombie) process that belongs to a node.
type Proc struct {
	PID  int
	Comm string // e.g. beam.smp, erl_child_setup, inet_gethost, sh
}

// nodeProcs scans /proc for processes whose environment carries
// RABBITMQ_NODENAME=<node>. Every process of a node inherits that variable:
// the rabbitmq-server shell, beam.smp, and erl_child_setup/inet_gethost (which
// call setsid and so leave the node's process group). Zombies are skipped:
// their environment is no longer readable and they hold no resources.
func nodeProcs(node string) []Proc {
	want := []byte("RABBITMQ_NODENAME=" + node)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || len(env) == 0 {
			continue
		}
		found := false
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				found = true
				break
			}
		}
		if !found {
			continue
		}
		if st := procState(pid); st == "Z" || st == "X" || st == "" {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		out = append(out, Proc{PID: pid, Comm: strings.TrimSpace(string(comm))})
	}
	return out
}

// procState returns the one-letter state from /proc/<pid>/stat, or "" if the
// process is gone.
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// Format: pid (comm) S ...; comm may contain spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return ""
	}
	return string(b[i+2])
}

// killNodeProcs SIGKILLs every process of node until none is left or the
// timeout passes. It returns the processes still alive at the end.
func killNodeProcs(node string, timeout time.Duration) []Proc {
	deadline := time.Now().Add(timeout)
	for {
		procs := nodeProcs(node)
		if len(procs) == 0 {
			return nil
		}
		for _, p := range procs {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return nodeProcs(node)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// watchdogScript runs as a separate small process whose stdin is a pipe held
// only by the Go process. If the Go process dies without cleaning up (test
// timeout panic, os.Exit, SIGKILL), the pipe reaches EOF and the watchdog kills
// the node's process group and every process carrying the node's
// RABBITMQ_NODENAME, then removes the node's base directory. On an orderly
// Close the Go side writes "done" and the watchdog exits without acting.
const watchdogScript = `
read -r line
[ "$line" = done ] && exit 0
node="$1"; base="$2"
if [ -f "$base/pgid" ]; then kill -KILL -- "-$(cat "$base/pgid")" 2>/dev/null; fi
for i in 1 2 3 4 5; do
  left=0
  for p in /proc/[0-9]*; do
    if tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -qx "RABBITMQ_NODENAME=$node"; then
      kill -KILL "${p#/proc/}" 2>/dev/null; left=1
    fi
  done
  [ $left = 0 ] && break
  sleep 0.2
done
case "$base" in */durablews-testbroker-*) rm -rf "$base";; esac
`

type watchdog struct {
	cmd *exec.Cmd
	in  io.WriteCloser
}

func startWatchdog(node, base string) (*watchdog, error) {
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "watchdog", node, base)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Only a clean environment: it must not carry RABBITMQ_NODENAME itself.
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &watchdog{cmd: cmd, in: in}, nil
}

func (w *watchdog) stop() {
	if w == nil {
		return
	}
	_, _ = io.WriteString(w.in, "done\n")
	_ = w.in.Close()
	done := make(chan struct{})
	go func() { _ = w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = w.cmd.Process.Kill()
		<-done
	}
}
