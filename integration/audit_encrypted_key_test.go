package integration

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// TestSFTPEncryptedKeyWithoutPassphrase runs ferry with --identity naming an
// encrypted key and no way to decrypt it (no passphrase variable, no
// ssh-agent): it must stop with exit 3 before anything is uploaded, and say
// which file is encrypted and how to give its passphrase.
func TestSFTPEncryptedKeyWithoutPassphrase(t *testing.T) {
	r := newSFTPRig(t, sshd.Options{EncryptedClientKey: true}, treecheck.Spec{Seed: 6, Dirs: 1, SmallFiles: 5})
	cmd := ferrybin.Command(t, r.syncArgs(r.knownHosts)...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SSH_AUTH_SOCK=") && !strings.HasPrefix(kv, "FERRY_SSH_PASSPHRASE=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	res := ferrybin.RunCmd(t, time.Minute, cmd)
	if res.ExitCode != ferrybin.ExitUnreachable {
		t.Fatalf("exit %d, want %d: %s", res.ExitCode, ferrybin.ExitUnreachable, res)
	}
	for _, want := range []string{r.srv.ClientKeyPath(), "encrypted", "FERRY_SSH_PASSPHRASE", "ssh-agent"} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("error output does not mention %q:\n%s", want, res.Stderr)
		}
	}
	if n, _ := countEntries(t, r.dst); n != 0 {
		t.Errorf("%d entries reached the target with an unusable key", n)
	}
	t.Logf("refused: %s", strings.TrimSpace(res.Stderr))
}
