package integration

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// TestSecretsNeverInOutputOrState runs a config whose targets carry every
// kind of secret ferry takes (an identity passphrase from a file, a login
// password the real sshd is asked to check and refuses, an S3 secret key
// for a server that is not there) through `check`, and through `run --once`
// at debug level in both log formats: no secret may appear in what ferry
// prints, nor in the state directory it leaves behind.
func TestSecretsNeverInOutputOrState(t *testing.T) {
	const (
		passphrase = "pp-Secret-7f3a91"
		password   = "pw-Secret-c02e55"
		s3Secret   = "sk-Secret-9d41be"
	)
	r := newSFTPRig(t, sshd.Options{EncryptedClientKey: true, ClientKeyPassphrase: passphrase,
		ExtraConfig: []string{"PasswordAuthentication yes"}}, treecheck.Spec{Seed: 8, Dirs: 2, SmallFiles: 10})
	tmp := t.TempDir()
	ppf := filepath.Join(tmp, "passphrase")
	if err := os.WriteFile(ppf, []byte(passphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(r.proxy.Addr(), ":")
	cfg := filepath.Join(tmp, "ferry.yaml")
	text := fmt.Sprintf(`jobs:
  - name: j
    source: %q
    targets:
      - {name: key, type: sftp, host: %s, port: %s, user: %s, path: %q, identity: %q, passphrase_file: %q, known_hosts: %q}
      - {name: pw, type: sftp, host: %s, port: %s, user: %s, path: %q, password: %q, known_hosts: %q, retries: 1}
      - {name: s3, type: s3, endpoint: "127.0.0.1:1", insecure: true, bucket: audit-bucket, access_key_id: AKIDAUDIT, secret_access_key: %q, retries: 1}
`, r.src, host, port, r.srv.User(), r.dst, r.srv.ClientKeyPath(), ppf, r.knownHosts,
		host, port, r.srv.User(), r.dst+"-pw", password, r.knownHosts, s3Secret)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(tmp, "state")
	secrets := []string{passphrase, password, s3Secret, "Secret-"}
	run := func(args ...string) ferrybin.Result {
		cmd := ferrybin.Command(t, args...)
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "SSH_AUTH_SOCK=") && !strings.HasPrefix(kv, "XDG_STATE_HOME=") && !strings.HasPrefix(kv, "AWS_") {
				env = append(env, kv)
			}
		}
		cmd.Env = append(env, "XDG_STATE_HOME="+state)
		return ferrybin.RunCmd(t, 2*time.Minute, cmd)
	}
	cases := []struct {
		name string
		args []string
		// keyOK: the run must have synced the target that logs in with the
		// decrypted key, so the passphrase was read and used.
		keyOK bool
	}{
		{"check", []string{"-v", "check", "-c", cfg}, false},
		{"run, text log", []string{"-v", "run", "--once", "-c", cfg}, true},
		{"run, json log", []string{"-v", "--log-format", "json", "run", "--once", "-c", cfg}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := run(tc.args...)
			out := res.Stdout + res.Stderr
			t.Logf("exit %d\n%s", res.ExitCode, res.Stdout)
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("%q is in ferry's output:\n%s", s, out)
				}
			}
			if tc.keyOK {
				if res.ExitCode == ferrybin.ExitOK {
					t.Fatalf("exit 0: the refused password and the absent S3 server should have failed their targets: %s", res)
				}
				r.check(t)
				if !strings.Contains(res.Stderr, "DEBUG") {
					t.Errorf("no debug lines: -v did not take, the test proved little")
				}
			} else if res.ExitCode != ferrybin.ExitOK {
				t.Fatalf("check: %s", res)
			}
		})
	}
	// Whatever the runs kept in their state directory holds no secret.
	err := filepath.WalkDir(state, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("state file %s holds %q", p, s)
			}
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}
