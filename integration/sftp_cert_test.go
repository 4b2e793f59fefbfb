package integration

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// TestSFTPUserCertificate logs in with an OpenSSH user certificate, as
// servers that trust a user CA (TrustedUserCAKeys) and keep no
// authorized_keys want: sshd here accepts nothing else. ferry must find the
// certificate as ssh does, beside the identity file (FILE-cert.pub) or named
// by CertificateFile in the SSH config, and a key without its certificate
// must be refused, which shows that the server takes only the certificate.
func TestSFTPUserCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	caPub := filepath.Join(dir, "user_ca.pub")
	if err := os.WriteFile(caPub, ssh.MarshalAuthorizedKey(ca.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newSFTPRig(t, sshd.Options{ExtraConfig: []string{"TrustedUserCAKeys " + caPub, "AuthorizedKeysFile none"}},
		treecheck.Spec{Seed: testSeed(t), Dirs: 2, SmallFiles: 8})

	key, err := os.ReadFile(r.srv.ClientKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cert := &ssh.Certificate{
		Key: signer.PublicKey(), Serial: 1, CertType: ssh.UserCert, KeyId: "ferry-test",
		ValidPrincipals: []string{r.srv.User()},
		ValidAfter:      uint64(now.Add(-time.Hour).Unix()), ValidBefore: uint64(now.Add(time.Hour).Unix()),
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	certBytes := ssh.MarshalAuthorizedKey(cert)

	cases := []struct {
		name       string
		beside     bool // write FILE-cert.pub beside the identity
		configCert bool // name the certificate with CertificateFile
		wantExit   int
	}{
		{name: "certificate beside the key", beside: true, wantExit: ferrybin.ExitOK},
		{name: "CertificateFile", configCert: true, wantExit: ferrybin.ExitOK},
		{name: "key without its certificate", wantExit: ferrybin.ExitUnreachable},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := filepath.Join(dir, fmt.Sprint(i))
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
			id := filepath.Join(d, "id_ed25519")
			if err := os.WriteFile(id, key, 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.beside {
				if err := os.WriteFile(id+"-cert.pub", certBytes, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cfg := "# no certificate named\n"
			if tc.configCert {
				certPath := filepath.Join(d, "elsewhere.pub")
				if err := os.WriteFile(certPath, certBytes, 0o644); err != nil {
					t.Fatal(err)
				}
				host, _, _ := strings.Cut(r.proxy.Addr(), ":")
				cfg = fmt.Sprintf("Host %s\n  CertificateFile %s\n", host, certPath)
			}
			cfgPath := filepath.Join(d, "ssh_config")
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(r.srv.Root(), "cert", fmt.Sprint(i))
			url := "sftp://" + r.srv.User() + "@" + r.proxy.Addr() + dst
			var env []string
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "SSH_AUTH_SOCK=") {
					env = append(env, kv)
				}
			}
			cmd := ferrybin.Command(t, "sync", r.src, url, "--identity", id, "--known-hosts", r.knownHosts, "--ssh-config", cfgPath)
			cmd.Env = env
			res := ferrybin.RunCmd(t, time.Minute, cmd)
			if res.ExitCode != tc.wantExit {
				t.Fatalf("exit %d, want %d\n%s", res.ExitCode, tc.wantExit, res)
			}
			if tc.wantExit == ferrybin.ExitOK {
				checkTargetWith(t, r.srcTree, dst, sftpSyncChecks)
			} else {
				t.Logf("refused: %s", strings.TrimSpace(res.Stderr))
			}
		})
	}
}
