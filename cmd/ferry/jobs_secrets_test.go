package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/cmd/ferry/config"
	"github.com/ferrysync/ferry/integration/sshd"
)

func TestSFTPSecretFiles(t *testing.T) {
	const secret = "s3cr3t-4b9e"
	tests := []struct {
		name           string
		password       config.Secret
		passwordFile   string // file content; "-" for a missing file
		passphraseFile string
		wantPassword   string
		wantPassphrase string
		wantErr        string // the key the error names; "" for none
	}{
		{name: "inline password", password: secret, wantPassword: secret},
		{name: "password file with a line end", passwordFile: secret + "\n", wantPassword: secret},
		{name: "password file with a CRLF line end", passwordFile: secret + "\r\n", wantPassword: secret},
		{name: "password file without a line end", passwordFile: secret, wantPassword: secret},
		{name: "only one line end is trimmed", passwordFile: secret + "\n\n", wantPassword: secret + "\n"},
		{name: "a lone carriage return is kept", passwordFile: secret + "\r", wantPassword: secret + "\r"},
		{name: "inner spaces are kept", passwordFile: " " + secret + " \n", wantPassword: " " + secret + " "},
		{name: "passphrase file", passphraseFile: secret + "\n", wantPassphrase: secret},
		{name: "both files", passwordFile: "pw\n", passphraseFile: secret + "\n", wantPassword: "pw", wantPassphrase: secret},
		{name: "missing password file", passwordFile: "-", wantErr: "password_file"},
		{name: "empty passphrase file", passphraseFile: "\n", wantErr: "passphrase_file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := func(name, content string) string {
				if content == "" {
					return ""
				}
				p := filepath.Join(dir, name)
				if content != "-" {
					if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				return p
			}
			tg := &config.Target{Name: "s", Type: config.SFTP, Host: "h", Password: tc.password,
				PasswordFile: file("pw", tc.passwordFile), PassphraseFile: file("pp", tc.passphraseFile)}
			c := sftpConfig(tg, nil)
			err := readSFTPSecrets(tg, &c)
			if tc.wantErr != "" {
				if !errors.Is(err, backends.ErrAuth) {
					t.Fatalf("error %v, want one wrapping ErrAuth", err)
				}
				if !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), dir) {
					t.Errorf("error %q does not name %s and its file", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Password != tc.wantPassword || c.Passphrase != tc.wantPassphrase {
				t.Errorf("password %q, passphrase %q; want %q, %q", c.Password, c.Passphrase, tc.wantPassword, tc.wantPassphrase)
			}
		})
	}
}

// TestPassphraseFileRunsAgainstSSHD runs a job whose identity is encrypted,
// with its passphrase in passphrase_file, against a real sshd.
func TestPassphraseFileRunsAgainstSSHD(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sshd")
	}
	const pass = "ferry-pf-6c2d"
	srv := sshd.Start(t, sshd.Options{EncryptedClientKey: true, ClientKeyPassphrase: pass})
	// No agent, no ~/.ssh of the machine: the file is the only way in.
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("HOME", t.TempDir())
	tests := []struct {
		name     string
		content  string
		wantCode int
		wantOut  string
	}{
		{"right passphrase", pass + "\n", exitOK, "ok"},
		{"wrong passphrase", "not-" + pass + "\n", exitUnreachable, "unreachable: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := jobSite(t, dir)
			pf := filepath.Join(dir, "passphrase")
			if err := os.WriteFile(pf, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(srv.Root(), strings.ReplaceAll(tc.name, " ", "-"))
			cfg := writeConfig(t, dir, fmt.Sprintf("state_dir: %q\njobs:\n  - name: j\n    source: %q\n    targets:\n"+
				"      - {name: s, type: sftp, host: 127.0.0.1, port: %d, user: %q, path: %q, identity: %q, known_hosts: %q, passphrase_file: %q}\n",
				filepath.Join(dir, "state"), src, srv.Port(), srv.User(), root, srv.ClientKeyPath(), srv.KnownHostsPath(), pf))
			code, stdout, stderr := runFerry(t, "-v", "run", "--once", "-c", cfg)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.wantCode, stdout, stderr)
			}
			if !strings.Contains(stdout, tc.wantOut) {
				t.Errorf("output lacks %q:\n%s", tc.wantOut, stdout)
			}
			if strings.Contains(stdout+stderr, strings.TrimSpace(tc.content)) {
				t.Errorf("the passphrase is in the output:\n%s%s", stdout, stderr)
			}
			got, err := os.ReadFile(filepath.Join(root, "css", "a.css"))
			if tc.wantCode == exitOK && (err != nil || string(got) != "body{}") {
				t.Errorf("target file: %q, %v", got, err)
			}
			if tc.wantCode != exitOK && err == nil {
				t.Errorf("a refused login wrote files")
			}
		})
	}
}
