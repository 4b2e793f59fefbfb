package sftp

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestCmdConn: the connection carries bytes both ways through the command;
// Close ends a command that ignores SIGTERM too (SIGKILL to its process
// group), and a command that fails has its exit and standard error in the
// error explained.
func TestCmdConn(t *testing.T) {
	dial := func(cmd string) *cmdConn {
		t.Helper()
		nc, err := dialCommand(context.Background(), &resolved{proxyCommand: cmd, addr: "h:22"})
		if err != nil {
			t.Fatal(err)
		}
		return nc.(*cmdConn)
	}

	c := dial("cat")
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read back %q, %v", buf, err)
	}
	c.Close()
	select {
	case <-c.exited:
	default:
		t.Fatal("Close returned with the command still running")
	}

	c = dial(`sh -c 'trap "" TERM; echo ready; sleep 60'`)
	ready := make([]byte, 6)
	if _, err := io.ReadFull(c, ready); err != nil || string(ready) != "ready\n" {
		t.Fatalf("the command did not get ready: %q, %v", ready, err)
	}
	start := time.Now()
	c.Close()
	took := time.Since(start)
	select {
	case <-c.exited:
	default:
		t.Error("Close returned with the command still running")
	}
	// The shell ignores SIGTERM: only the SIGKILL two seconds later ends it.
	if took < 2*time.Second || took > 5*time.Second {
		t.Errorf("Close of a command that ignores SIGTERM took %v, want the 2s grace, then SIGKILL", took)
	}

	c = dial("sh -c 'echo bastion says no >&2; exit 3'")
	defer c.Close()
	_, err := c.Read(buf)
	if err == nil {
		t.Fatal("read from a command that exited: no error")
	}
	got := c.explain(err).Error()
	for _, want := range []string{"bastion says no", "exit status 3"} {
		if !strings.Contains(got, want) {
			t.Errorf("explained error %q lacks %q", got, want)
		}
	}
}
