package sftp

import (
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Target
	}{
		{"host only", "sftp://example.com", Target{Host: "example.com", Path: "."}},
		{"host and slash is the login dir", "sftp://example.com/", Target{Host: "example.com", Path: "."}},
		{"absolute path", "sftp://example.com/srv/backup", Target{Host: "example.com", Path: "/srv/backup"}},
		{"trailing slash dropped", "sftp://example.com/srv/backup/", Target{Host: "example.com", Path: "/srv/backup"}},
		{"home relative", "sftp://example.com/~/backup", Target{Host: "example.com", Path: "backup"}},
		{"home itself", "sftp://example.com/~", Target{Host: "example.com", Path: "."}},
		{"user and port", "sftp://alice@example.com:2222/data", Target{User: "alice", Host: "example.com", Port: 2222, Path: "/data"}},
		{"ipv4", "sftp://127.0.0.1:22/x", Target{Host: "127.0.0.1", Port: 22, Path: "/x"}},
		{"ipv6 in brackets", "sftp://[::1]:2022/x", Target{Host: "::1", Port: 2022, Path: "/x"}},
		{"ipv6 without port", "sftp://bob@[2001:db8::1]/x", Target{User: "bob", Host: "2001:db8::1", Path: "/x"}},
		{"percent-decoded path", "sftp://h/my%20files/%C3%A9t%C3%A9", Target{Host: "h", Path: "/my files/été"}},
		{"percent-decoded user", "sftp://first%40corp@h/x", Target{User: "first@corp", Host: "h", Path: "/x"}},
		{"server root", "sftp://h//", Target{Host: "h", Path: "/"}},
		{"cleaned", "sftp://h//srv//a/./b", Target{Host: "h", Path: "/srv/a/b"}},
		{"user with at sign", "sftp://me@corp@h/x", Target{User: "me@corp", Host: "h", Path: "/x"}},
		{"directory named ~ at the server root", "sftp://h//~", Target{Host: "h", Path: "/~"}},
		{"scheme case", "SFTP://h/x", Target{Host: "h", Path: "/x"}},
		{"ssh config alias", "sftp://backup-box", Target{Host: "backup-box", Path: "."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseURL(tt.in)
			if err != nil {
				t.Fatalf("ParseURL(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseURL(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			again, err := ParseURL(got.String())
			if err != nil || again != got {
				t.Fatalf("round trip through %q gave %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseURLErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"other scheme", "ssh://h/x", "want sftp://"},
		{"no scheme", "h:/x", "want sftp://"},
		{"empty host", "sftp:///x", "missing host"},
		{"password", "sftp://u:secret@h/x", "passwords"},
		{"query", "sftp://h/x?a=b", "query"},
		{"fragment", "sftp://h/x#f", "fragment"},
		{"bad port", "sftp://h:99999/x", "invalid port"},
		{"empty port", "sftp://h:/x", "invalid port"},
		{"port with sign", "sftp://h:+22/x", "invalid port"},
		{"unbracketed ipv6", "sftp://::1/x", "brackets"},
		{"unclosed bracket", "sftp://[::1/x", "missing ]"},
		{"not ipv6 in brackets", "sftp://[h]/x", "invalid IPv6"},
		{"bad escape", "sftp://h/%zz", "path"},
		{"control character", "sftp://h/a%0Ab", "control"},
		{"empty user", "sftp://@h/x", "invalid user"},
		{"host starting with dash", "sftp://-oProxyCommand=x/y", "invalid host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseURL(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseURL(%q) error %v, want one mentioning %q", tt.in, err, tt.want)
			}
		})
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"sftp://h", "sftp://u@h:22/p", "sftp://[::1]:2/x/", "sftp://h/~/a%20b", "sftp://u:p@h", "sftp://h:/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseURL(s)
		if err != nil {
			return
		}
		if got.Host == "" || got.Path == "" || got.Port < 0 || got.Port > 65535 {
			t.Fatalf("ParseURL(%q) = %+v: empty host or path, or bad port", s, got)
		}
		if !validText(got.Path) || !validText(got.User) || strings.ContainsAny(got.Host, "/@ ") {
			t.Fatalf("ParseURL(%q) = %+v lets odd characters through", s, got)
		}
		again, err := ParseURL(got.String())
		if err != nil || again != got {
			t.Fatalf("ParseURL(%q) = %+v; String %q parses back as %+v, %v", s, got, got.String(), again, err)
		}
	})
}
