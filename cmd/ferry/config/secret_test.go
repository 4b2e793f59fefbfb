package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const inlineSecretYAML = `jobs:
  - name: site
    source: %s/src
    targets:
      - name: box
        type: sftp
        host: box.example
        path: /srv
        password: %s
`

func writeConfig(t *testing.T, dir, password string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(inlineSecretYAML, dir, password)), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadRefusesReadableInlineSecret(t *testing.T) {
	t.Setenv("FERRY_TEST_PW", "hunter2")
	cases := []struct {
		name     string
		password string
		mode     os.FileMode
		refused  bool
	}{
		{"inline, world-readable", "hunter2", 0o644, true},
		{"inline, group-readable", "hunter2", 0o640, true},
		{"inline, others may only execute", "hunter2", 0o601, true},
		{"inline, owner only", "hunter2", 0o600, false},
		{"inline, owner read-only", "hunter2", 0o400, false},
		{"from the environment, world-readable", "${FERRY_TEST_PW}", 0o644, false},
		{"partly inline, world-readable", "pre${FERRY_TEST_PW}", 0o644, true},
		{"escaped dollar is inline", "$$x", 0o644, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "src"), 0o755); err != nil {
				t.Fatal(err)
			}
			p := writeConfig(t, dir, c.password, c.mode)
			cfg, err := Load(p)
			if !c.refused {
				if err != nil {
					t.Fatalf("want it to load, got %v", err)
				}
				if got := cfg.Jobs[0].Targets[0].Password.Reveal(); got == "" {
					t.Fatalf("password is empty")
				}
				return
			}
			if err == nil {
				t.Fatal("want a refusal, it loaded")
			}
			msg := err.Error()
			want := fmt.Sprintf("%s:9:19: jobs[0].targets[0].password: a secret is written in the file, and %s has mode %04o", p, p, c.mode)
			if !strings.Contains(msg, want) || !strings.Contains(msg, "chmod 600 "+p) {
				t.Errorf("error %q\nwant it to contain %q and chmod 600 %s", msg, want, p)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error shows the secret: %s", msg)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("Load of a missing file: %v", err)
	}
}

// Secrets must not come out through any of the usual ways of printing.
func TestSecretsAreRedacted(t *testing.T) {
	tg := &Target{Name: "box", Type: SFTP, Host: "h", Path: "/p", Password: "hunter2", SecretAccessKey: "hunter2"}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%v %+v %s %#v %v %+v %#v\n", tg, *tg, tg.Password, tg.Password, []Secret{tg.Password}, struct{ S Secret }{tg.Password}, *tg)
	for _, h := range []slog.Handler{slog.NewJSONHandler(&b, nil), slog.NewTextHandler(&b, nil)} {
		slog.New(h).Info("t", "target", tg, "pw", tg.Password, "job", &Job{Name: "j", Targets: []*Target{tg}})
	}
	j, err := json.Marshal(tg)
	if err != nil {
		t.Fatal(err)
	}
	b.Write(j)
	c := &Config{Jobs: []*Job{{Name: "j", Targets: []*Target{tg}}}}
	c.Describe(&b)
	if strings.Contains(b.String(), "hunter2") {
		t.Fatalf("secret printed:\n%s", b.String())
	}
	if !strings.Contains(b.String(), "[redacted]") {
		t.Fatalf("no [redacted] marker:\n%s", b.String())
	}
	if tg.Password.Reveal() != "hunter2" {
		t.Fatalf("Reveal = %q", tg.Password.Reveal())
	}
}
