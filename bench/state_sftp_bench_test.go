package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/sshd"
)

// BenchmarkStateNoOpSFTP is BenchmarkStateNoOp over SFTP (issue 6): ferry
// restarted with trusted state, rsync -a -e ssh and rclone sync (hash check
// off) run again over one target folder on the loopback sshd that already
// mirrors the source. The folder is filled once with cp -a on the server's
// side, which is far quicker than any of the three uploading a large tree;
// under BENCH_STATE_KEEP it is kept (as "sftp-noop") and filled only the
// first time. ferry then builds its state with one untimed --state run,
// which lists the target once. Its state lives in the run's temporary
// folder, never under BENCH_STATE_KEEP: ferry names a target's state after
// its URL, and the fixture's port is new in every run.
func BenchmarkStateNoOpSFTP(b *testing.B) {
	src, n := stateTree(b)
	srv := startSSHD(b)
	s := NewScenario(fmt.Sprintf("sftp loopback (%s): no-op run over %d x 256 B, one target for all, ferry restarted with trusted state", cipher, n))
	s.Want(Ratio{Num: "ferry-state", Den: "rsync-ssh", Target: 0.5})
	s.Want(Ratio{Num: "ferry-state", Den: "rclone-nohash", Info: true})
	register(s)

	keep := os.Getenv("BENCH_STATE_KEEP")
	dst := filepath.Join(srv.Root(), "state-noop")
	if keep != "" {
		dst = filepath.Join(keep, "sftp-noop")
	}
	fillByCopy(b, src, dst, n, keep != "")

	stateDir := filepath.Join(work(b), "state-sftp")
	ferryState := ferryStateSFTP(b, srv, stateDir)
	if ferryState.why == "" {
		// The restart the issue speaks of: state built by an earlier run.
		start := time.Now()
		first := ferryState.cmd(src, dst)
		first.Args = withoutQuiet(first.Args)
		res, err := Measure(b.Context(), first)
		if err != nil {
			ferryState.why = fmt.Sprintf("first --state run (building the state): %v", err)
		}
		b.Logf("ferry-state built its state in %v, maxRSS %s: %s", time.Since(start).Round(time.Second), mib(res.MaxRSSKiB), strings.TrimSpace(res.Stdout))
	}

	env := rcloneEnv(b)
	rflags := rcloneSFTPFlags(b, srv)
	ssh := "ssh " + strings.Join(quoteAll(append(sshOpts(srv), "-p", strconv.Itoa(srv.Port()))), " ")
	tools := []tool{
		ferryState,
		{name: "rsync-ssh", cmd: func(src, dst string) Command {
			return Command{Name: "rsync", Args: []string{"-a", "-e", ssh, src + "/", srv.User() + "@127.0.0.1:" + dst + "/"}}
		}},
		{name: "rclone-nohash", cmd: func(src, dst string) Command {
			args := append([]string{"sync", "-q", "--ignore-checksum", "--sftp-disable-hashcheck", src, ":sftp:" + dst}, rflags...)
			return Command{Name: "rclone", Args: args, Env: env}
		}},
	}
	runSide(b, s, tools, side{src: src, prepare: func(tool, int) string { return dst }, check: stateCheck(n), server: srv.PID})
	noteStateRSS(s, n)
	if keep == "" {
		os.RemoveAll(dst)
	}
	report(b, s)
}

// ferryStateSFTP is ferry with its state in stateDir, to an sftp:// target
// on srv; its why is set when the binary has no SFTP target.
func ferryStateSFTP(b *testing.B, srv *sshd.Server, stateDir string) tool {
	t := tool{name: "ferry-state"}
	bin, note, err := ferrySFTPBin(b)
	switch {
	case err != nil:
		t.why = err.Error()
	case note != "":
		t.why = "the ferry CLI has no SFTP target, and the stand-in keeps no state"
	}
	t.cmd = func(src, dst string) Command {
		return Command{Name: bin, Args: []string{"sync", "-q", "--state-dir", stateDir,
			"--identity", srv.ClientKeyPath(), "--known-hosts", srv.KnownHostsPath(), src, srv.URL(dst)}}
	}
	return t
}

func withoutQuiet(args []string) []string {
	var out []string
	for _, a := range args {
		if a != "-q" {
			out = append(out, a)
		}
	}
	return out
}

// fillByCopy makes dst a copy of src (cp -a, so sizes, mtimes, modes and
// owners match and every tool finds nothing to do) and checks it. With keep
// a marker beside dst records a complete copy, and a later run reuses it; a
// copy without its marker (cut short) is made again from scratch.
func fillByCopy(b *testing.B, src, dst string, n int, keep bool) {
	filled := dst + ".filled"
	if _, err := os.Stat(filled); keep && err == nil {
		return
	}
	start := time.Now()
	if err := os.RemoveAll(dst); err != nil {
		b.Fatalf("fill %s: %v", dst, err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		b.Fatalf("fill %s: %v", dst, err)
	}
	if out, err := exec.CommandContext(b.Context(), "cp", "-a", src+"/.", dst+"/").CombinedOutput(); err != nil {
		b.Fatalf("fill %s: cp -a: %v: %s", dst, err, tail(string(out), 400))
	}
	if err := stateCheck(n)(src, dst); err != nil {
		b.Fatalf("fill %s: %v", dst, err)
	}
	if keep {
		if err := os.WriteFile(filled, nil, 0o644); err != nil {
			b.Fatalf("fill %s: %v", dst, err)
		}
	}
	b.Logf("filled %s with cp -a in %v", dst, time.Since(start).Round(time.Second))
}
