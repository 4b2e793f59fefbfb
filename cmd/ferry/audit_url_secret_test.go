package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestURLPasswordNeverEchoed gives sync, watch and restore a target URL with
// a password in it. ferry refuses such URLs (exit 2), and the refusal must
// not print the password back: a command line's error ends up in cron
// mails, journals and CI logs. The config loader already says only "must
// not hold a password"; the command line echoed the whole URL.
func TestURLPasswordNeverEchoed(t *testing.T) {
	const secret = "hunter2-Url-Secret"
	src := site(t)
	dest := filepath.Join(t.TempDir(), "restored")
	cases := []struct {
		name string
		args []string
	}{
		{"sync sftp", []string{"sync", src, "sftp://bob:" + secret + "@127.0.0.1:1/x"}},
		{"sync sftp, escape in the password", []string{"sync", src, "sftp://bob:" + secret + "%zz@127.0.0.1:1/x"}},
		{"sync sftp, no user", []string{"sync", src, "sftp://:" + secret + "@127.0.0.1:1/x"}},
		{"sync s3", []string{"sync", src, "s3://key:" + secret + "@bucket/prefix"}},
		{"sync unknown scheme", []string{"sync", src, "ftp://bob:" + secret + "@127.0.0.1/x"}},
		{"watch", []string{"watch", src, "sftp://bob:" + secret + "@127.0.0.1:1/x"}},
		{"restore", []string{"restore", "sftp://bob:" + secret + "@127.0.0.1:1/x", dest}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runFerry(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d (a password in a URL is refused)\n%s%s", code, exitUsage, stdout, stderr)
			}
			if strings.Contains(stdout+stderr, secret) {
				t.Errorf("the password is in the output:\n%s%s", stdout, stderr)
			}
			if !strings.Contains(stderr, "password") {
				t.Errorf("the refusal does not say why:\n%s", stderr)
			}
		})
	}
}
