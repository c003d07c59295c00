package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// result is one run of the CLI.
type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// syncBuffer is a bytes.Buffer safe for the logger and the command writing
// at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cli runs the command with only env as environment (never the machine's
// DURABLEWS_* variables) and logs what it printed.
func cli(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr syncBuffer
	lookup := func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
	start := time.Now()
	code := runEnv(ctx, args, lookup, &stdout, &stderr)
	r := result{code: code, stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	t.Logf("$ durablews %s  (exit %d, %s)\n%s%s", strings.Join(args, " "), r.code, r.took.Round(time.Millisecond),
		indent(r.stdout), indent(r.stderr))
	return r
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
