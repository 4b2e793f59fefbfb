package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/sshd"
)

// SFTP on loopback, issue 3. Every tool talks to one real OpenSSH sshd per
// benchmark that accepts only aes128-gcm@openssh.com, so all of them use the
// same cipher whatever their own preference (the rclone packaged here has
// no cipher flag). The target folders live on the same disk, under the
// server's root.

const cipher = "aes128-gcm@openssh.com"

func startSSHD(b *testing.B) *sshd.Server {
	return sshd.Start(b, sshd.Options{ExtraConfig: []string{"Ciphers " + cipher}})
}

// sshOpts are the OpenSSH client options every ssh-based peer uses: only
// the fixture's key and known_hosts, strict checking, no ~/.ssh/config.
func sshOpts(srv *sshd.Server) []string {
	return []string{
		"-F", "/dev/null",
		"-i", srv.ClientKeyPath(),
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + srv.KnownHostsPath(),
		"-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes",
		"-o", "Ciphers=" + cipher,
	}
}

func rcloneSFTPFlags(b *testing.B, srv *sshd.Server) []string {
	return []string{
		"--sftp-host", "127.0.0.1",
		"--sftp-port", strconv.Itoa(srv.Port()),
		"--sftp-user", srv.User(),
		"--sftp-key-file", srv.ClientKeyPath(),
		"--sftp-known-hosts-file", srv.KnownHostsPath(),
	}
}

func ferrySFTP(b *testing.B, s *Scenario, srv *sshd.Server) tool {
	bin, note, err := ferrySFTPBin(b)
	t := tool{name: "ferry"}
	if err != nil {
		t.why = err.Error()
		b.Logf("ferry not measured: %v", err)
	}
	if note != "" {
		s.Note("%s", note)
	}
	t.cmd = func(src, dst string) Command {
		return Command{Name: bin, Args: sftpArgs(bin, "--identity", srv.ClientKeyPath(), "--known-hosts", srv.KnownHostsPath(), src, srv.URL(dst))}
	}
	return t
}

// withBefore adds "ferry-before" to tools when BENCH_FERRY_BEFORE names
// another ferry binary (say, built from an older commit, with the sync
// command's SFTP flags), and asks for its ratio, so that a change is
// measured against its baseline under the same load.
func withBefore(s *Scenario, srv *sshd.Server, tools []tool) []tool {
	before := os.Getenv("BENCH_FERRY_BEFORE")
	if before == "" {
		return tools
	}
	s.Want(Ratio{Num: "ferry", Den: "ferry-before", Info: true})
	return append(tools, tool{name: "ferry-before", cmd: func(src, dst string) Command {
		return Command{Name: before, Args: []string{"sync", "-q", "--identity", srv.ClientKeyPath(),
			"--known-hosts", srv.KnownHostsPath(), src, srv.URL(dst)}}
	}})
}

// remoteDst makes an empty folder on the server side for one run.
func remoteDst(b *testing.B, srv *sshd.Server, scenario string) func(t tool, rep int) string {
	return func(t tool, rep int) string {
		dst := filepath.Join(srv.Root(), scenario, fmt.Sprintf("%s-%d", t.name, rep))
		if err := os.MkdirAll(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		return dst
	}
}

// BenchmarkSFTPBigFile uploads one 1 GiB incompressible file.
func BenchmarkSFTPBigFile(b *testing.B) {
	src := bigTree(b)
	srv := startSSHD(b)
	s := NewScenario(fmt.Sprintf("sftp loopback (%s): one %d MiB file", cipher, bigSize()>>20))
	s.Want(Ratio{Num: "ferry", Den: "sftp-put", Target: 0.9})
	s.Want(Ratio{Num: "ferry", Den: "rclone", Target: 0.6})
	s.Want(Ratio{Num: "ferry", Den: "rclone-nohash", Info: true})
	register(s)
	batch := filepath.Join(work(b), "sftp-batch")
	env := rcloneEnv(b)
	rflags := rcloneSFTPFlags(b, srv)
	tools := []tool{
		ferrySFTP(b, s, srv),
		{name: "sftp-put", cmd: func(src, dst string) Command {
			// Each run writes its own batch file before it starts; the
			// write is outside the timed region only in that it is tiny.
			line := fmt.Sprintf("put %s %s\n", quote(filepath.Join(src, "big.bin")), quote(dst+"/big.bin"))
			if err := os.WriteFile(batch, []byte(line), 0o600); err != nil {
				b.Fatal(err)
			}
			args := append(sshOpts(srv), "-P", strconv.Itoa(srv.Port()), "-b", batch, srv.User()+"@127.0.0.1")
			return Command{Name: "sftp", Args: args}
		}},
		{name: "rclone", cmd: func(src, dst string) Command {
			return Command{Name: "rclone", Args: append([]string{"copy", "-q", src, ":sftp:" + dst}, rflags...), Env: env}
		}},
		{name: "rclone-nohash", cmd: func(src, dst string) Command {
			args := append([]string{"copy", "-q", "--ignore-checksum", "--sftp-disable-hashcheck", src, ":sftp:" + dst}, rflags...)
			return Command{Name: "rclone", Args: args, Env: env}
		}},
	}
	tools = withBefore(s, srv, tools)
	runSide(b, s, tools, side{src: src, prepare: remoteDst(b, srv, "sftp-big"), check: sameTree, done: removeDst, server: srv.PID})
	report(b, s)
}

// BenchmarkSFTPSmallFiles uploads 10,000 files of 4 KiB in 100 folders.
func BenchmarkSFTPSmallFiles(b *testing.B) {
	src := smallTree(b)
	srv := startSSHD(b)
	s := NewScenario(fmt.Sprintf("sftp loopback (%s): 10,000 x 4 KiB", cipher))
	s.Want(Ratio{Num: "ferry", Den: "rsync-ssh", Target: 1.0})
	s.Want(Ratio{Num: "ferry", Den: "rclone-nohash", Target: 0.25})
	register(s)
	env := rcloneEnv(b)
	rflags := rcloneSFTPFlags(b, srv)
	ssh := "ssh " + strings.Join(quoteAll(append(sshOpts(srv), "-p", strconv.Itoa(srv.Port()))), " ")
	tools := []tool{
		ferrySFTP(b, s, srv),
		{name: "rsync-ssh", cmd: func(src, dst string) Command {
			return Command{Name: "rsync", Args: []string{"-a", "-e", ssh, src + "/", srv.User() + "@127.0.0.1:" + dst + "/"}}
		}},
		{name: "rclone-nohash", cmd: func(src, dst string) Command {
			args := append([]string{"sync", "-q", "--ignore-checksum", "--sftp-disable-hashcheck", src, ":sftp:" + dst}, rflags...)
			return Command{Name: "rclone", Args: args, Env: env}
		}},
	}
	tools = withBefore(s, srv, tools)
	noteShellStart(s, srv.User())
	runSide(b, s, tools, side{src: src, prepare: remoteDst(b, srv, "sftp-small"), check: sameTree, done: asideDst(b), server: srv.PID})
	report(b, s)
}

// noteShellStart notes how long the login shell of user takes to start the
// way sshd starts it for a command: rsync's server side runs through it,
// ferry's SFTP session does not, so a slow shell start (a ~/.bashrc that
// runs a version manager, say) is part of rsync's time here and would not
// be on a plain Debian server.
func noteShellStart(s *Scenario, user string) {
	shell := loginShell(user)
	if shell == "" {
		return
	}
	home, _ := os.UserHomeDir()
	var took []time.Duration
	for range 5 {
		cmd := exec.Command(shell, "-c", "true")
		// bash reads ~/.bashrc when SSH_CLIENT says sshd started it.
		cmd.Env = []string{"HOME=" + home, "USER=" + user, "SSH_CLIENT=127.0.0.1 40000 22", "PATH=/usr/bin:/bin"}
		t0 := time.Now()
		if cmd.Run() != nil {
			return
		}
		took = append(took, time.Since(t0))
	}
	slices.Sort(took)
	s.Note("%s's login shell %s starts in %s (median of 5) as sshd starts it for rsync's server side; ferry's SFTP session needs no shell", user, shell, took[2].Round(time.Millisecond))
}

// loginShell returns user's shell from /etc/passwd, or "".
func loginShell(user string) string {
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) == 7 && f[0] == user {
			return f[6]
		}
	}
	return ""
}

// quote makes a path safe for an sftp batch line or an ssh command line.
func quote(s string) string {
	if !strings.ContainsAny(s, " \t\"'\\$`") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = quote(s)
	}
	return out
}
