package ferrybin

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Package is the import path of the command.
const Package = "github.com/ferrysync/ferry/cmd/ferry"

// EnvBinary names an environment variable that, when set, points at a
// ferry binary to use instead of building one.
const EnvBinary = "FERRY_TEST_BINARY"

// EnvBuildFlags names an environment variable of extra `go build` flags,
// split at spaces, e.g. "-race" to run the end-to-end tests against a
// race-detecting binary.
const EnvBuildFlags = "FERRY_TEST_BUILD_FLAGS"

// Exit statuses of ferry.
const (
	ExitOK          = 0 // everything done
	ExitFailed      = 1 // some files failed
	ExitUsage       = 2 // usage or configuration error
	ExitUnreachable = 3 // target unreachable or authentication failed
)

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Path returns the ferry binary, building it on first use (`go build` of
// Package into a temporary directory, with EnvBuildFlags), or the binary
// EnvBinary names. A failed build fails the test with
// the compiler's output; later calls in the same process fail the same way
// without building again. Safe for concurrent use.
func Path(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		if p := os.Getenv(EnvBinary); p != "" {
			build.path = p
			return
		}
		build.dir, build.err = os.MkdirTemp("", "ferrybin-")
		if build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "ferry")
		gobin, err := goTool()
		if err != nil {
			build.err = err
			return
		}
		args := append([]string{"build", "-o", build.path}, strings.Fields(os.Getenv(EnvBuildFlags))...)
		cmd := exec.Command(gobin, append(args, Package)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build %s: %w\n%s", Package, err, out)
		}
	})
	if build.err != nil {
		t.Fatalf("ferry binary not available: %v", build.err)
	}
	return build.path
}

// Remove deletes the binary built by Path. Call it from TestMain after the
// tests have run.
func Remove() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go"), nil
	}
	return "", errors.New("the go command is not in PATH")
}

// Command returns an unstarted command running ferry with args, for callers
// that need to set its environment, directory or input. Start it with
// StartCmd to get a Process.
func Command(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	return exec.Command(Path(t), args...)
}

// Result is how a ferry process ended.
type Result struct {
	Args     []string
	ExitCode int            // -1 when killed by a signal
	Signal   syscall.Signal // the signal that killed it, or 0
	Stdout   string
	Stderr   string
	Duration time.Duration
}

// Killed reports whether the process was ended by a signal.
func (r Result) Killed() bool { return r.Signal != 0 }

// String describes the result for a test failure message.
func (r Result) String() string {
	how := fmt.Sprintf("exit %d", r.ExitCode)
	if r.Killed() {
		how = fmt.Sprintf("killed by signal %d (%v)", int(r.Signal), r.Signal)
	}
	return fmt.Sprintf("ferry %s: %s after %v\nstdout:\n%s\nstderr:\n%s",
		strings.Join(r.Args, " "), how, r.Duration.Round(time.Millisecond), tail(r.Stdout), tail(r.Stderr))
}

func tail(s string) string {
	const max = 4000
	if len(s) > max {
		return "..." + s[len(s)-max:]
	}
	return s
}

// Process is a running ferry. Its methods are safe for concurrent use.
type Process struct {
	cmd            *exec.Cmd
	stdout, stderr lockedBuffer
	start          time.Time
	done           chan struct{}
	res            Result
}

// Start runs ferry with args in the background. See StartCmd.
func Start(t testing.TB, args ...string) *Process {
	t.Helper()
	return StartCmd(t, Command(t, args...))
}

// StartCmd starts cmd (from Command) in a process group of its own,
// capturing its output. The process is killed, if still running, when the
// test ends. A failure to start fails the test.
func StartCmd(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{cmd: cmd, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = &p.stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &p.stderr
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ferry: %v", err)
	}
	go p.wait()
	t.Cleanup(func() {
		p.Kill()
		<-p.done
	})
	return p
}

func (p *Process) wait() {
	err := p.cmd.Wait()
	r := Result{Args: p.cmd.Args[1:], Duration: time.Since(p.start), ExitCode: p.cmd.ProcessState.ExitCode()}
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		r.Signal = ws.Signal()
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		r.Stderr = fmt.Sprintf("(wait: %v)\n", err)
	}
	r.Stdout = p.stdout.String()
	r.Stderr += p.stderr.String()
	p.res = r
	close(p.done)
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL to ferry and anything it started; it does not wait.
func (p *Process) Kill() { p.Signal(syscall.SIGKILL) }

// Signal sends sig to ferry's process group; a process that has ended is
// left alone.
func (p *Process) Signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to end and returns how it ended.
func (p *Process) Wait() Result {
	<-p.done
	return p.res
}

// Run runs ferry with args to completion, killing it after timeout (the
// result then shows SIGKILL), and returns how it ended.
func Run(t testing.TB, timeout time.Duration, args ...string) Result {
	t.Helper()
	return RunCmd(t, timeout, Command(t, args...))
}

// RunCmd is Run for a command from Command.
func RunCmd(t testing.TB, timeout time.Duration, cmd *exec.Cmd) Result {
	t.Helper()
	p := StartCmd(t, cmd)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Kill()
		t.Logf("ferry %s: still running after %v, killed", strings.Join(cmd.Args[1:], " "), timeout)
	}
	return p.Wait()
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
