package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// syncBuf is a bytes.Buffer safe for the logger and the test at once.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func execWatch(ctx context.Context, args []string, stderr *syncBuf) error {
	g := &globalOptions{logFormat: "text"}
	cmd := newWatchCmd(g)
	cmd.SetArgs(args)
	cmd.SetOut(stderr)
	cmd.SetErr(stderr)
	cmd.SilenceErrors = true
	cmd.SilenceUsage = true
	return cmd.ExecuteContext(ctx)
}

func TestWatchCommandMirrorsAndStops(t *testing.T) {
	src := t.TempDir()
	dstA := filepath.Join(t.TempDir(), "a")
	dstB := filepath.Join(src, "inside") // excluded with a warning
	if err := os.WriteFile(filepath.Join(src, "first.txt"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuf
	done := make(chan error, 1)
	go func() {
		done <- execWatch(ctx, []string{"--fsync=false", "--status-interval=100ms", "--debounce=20ms", src, dstA, dstB}, &out)
	}()
	wait := func(path, want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err := os.ReadFile(path)
			if err == nil && string(got) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: got %q, %v; want %q\nlog:\n%s", path, got, err, want, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait(filepath.Join(dstA, "first.txt"), "1")
	wait(filepath.Join(dstB, "first.txt"), "1")
	if err := os.MkdirAll(filepath.Join(src, "n/m"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "n/m/second.txt"), []byte("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	wait(filepath.Join(dstA, "n/m/second.txt"), "2")
	wait(filepath.Join(dstB, "n/m/second.txt"), "2")
	if _, err := os.Stat(filepath.Join(dstB, "inside")); err == nil {
		t.Fatal("the target inside the source was copied into itself")
	}
	// Off a terminal, the status goes to the log.
	for deadline := time.Now().Add(10 * time.Second); !bytes.Contains([]byte(out.String()), []byte("msg=status")); {
		if time.Now().After(deadline) {
			t.Fatalf("no status line in the log:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("watch returned %v after a stop, want nil\nlog:\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not stop within 10s")
	}
	log := out.String()
	for _, want := range []string{"target lies inside the source", "msg=status", "msg=target"} {
		if !bytes.Contains([]byte(log), []byte(want)) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestWatchCommandUsageErrors(t *testing.T) {
	src := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no target", []string{src}},
		{"bad mode", []string{"--mode=sideways", src, t.TempDir()}},
		{"missing source", []string{filepath.Join(src, "nope"), t.TempDir()}},
		{"source inside target", []string{src, filepath.Dir(src)}},
		{"negative rescan", []string{"--rescan-every=-1s", src, t.TempDir()}},
		{"no workers", []string{"--workers=0", src, t.TempDir()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out syncBuf
			err := execWatch(context.Background(), tc.args, &out)
			var e *exitError
			if !errors.As(err, &e) || e.code != exitUsage {
				t.Fatalf("got %v, want a usage error (exit %d)", err, exitUsage)
			}
		})
	}
}

func TestStatusBoardKeepsLogsAboveTheBlock(t *testing.T) {
	var out bytes.Buffer
	b := &statusBoard{w: &out}
	b.draw([]string{"t1 up", "t2 DOWN"})
	b.Write([]byte("a log line\n"))
	b.draw([]string{"t1 up", "t2 up"})
	want := "t1 up\nt2 DOWN\n" +
		"\r\033[2A\033[J" + "a log line\n" + "t1 up\nt2 DOWN\n" +
		"\r\033[2A\033[J" + "t1 up\nt2 up\n"
	if got := out.String(); got != want {
		t.Fatalf("terminal got %q, want %q", got, want)
	}
}

// TestWatchStartsWithATargetDown checks that a target that cannot be reached
// when `ferry watch` starts does not stop the daemon: the other target is
// synced at once, and the late one is caught up once it answers.
func TestWatchStartsWithATargetDown(t *testing.T) {
	src := t.TempDir()
	dstUp := filepath.Join(t.TempDir(), "up")
	dstLate := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	up := false
	openers["late"] = func(ctx context.Context, spec string, o targetOptions) (backends.Backend, error) {
		mu.Lock()
		defer mu.Unlock()
		if !up {
			return nil, fmt.Errorf("dial late: %w", backends.ErrUnreachable)
		}
		return openLocal(dstLate, o)
	}
	t.Cleanup(func() { delete(openers, "late") })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuf
	done := make(chan error, 1)
	go func() {
		done <- execWatch(ctx, []string{"--fsync=false", "--debounce=20ms", src, dstUp, "late://x"}, &out)
	}()
	waitFile := func(path string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if got, err := os.ReadFile(path); err == nil && string(got) == "x" {
				return
			}
			select {
			case err := <-done:
				t.Fatalf("watch ended early: %v\nlog:\n%s", err, out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never arrived\nlog:\n%s", path, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFile(filepath.Join(dstUp, "f.txt"))
	if _, err := os.Stat(filepath.Join(dstLate, "f.txt")); err == nil {
		t.Fatal("the unreachable target got the file")
	}
	mu.Lock()
	up = true
	mu.Unlock()
	waitFile(filepath.Join(dstLate, "f.txt"))
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("watch: %v", err)
	}
}
