package sftp

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// Target is what an sftp:// URL names. Port 0 and User "" mean "not given",
// so that ~/.ssh/config may supply them.
type Target struct {
	User string
	Host string
	Port int
	// Path is the target root on the server: absolute ("/srv/backup") or
	// relative to the login directory ("." for the login directory itself).
	Path string
}

// Config returns a Config for the target with every other field at its
// default; callers set identities, known_hosts and the like on the result.
func (t Target) Config() Config {
	return Config{Host: t.Host, Port: t.Port, User: t.User, Root: t.Path}
}

// String formats the target back as an sftp:// URL.
func (t Target) String() string {
	u := url.URL{Scheme: "sftp", Host: t.Host}
	if strings.Contains(t.Host, ":") {
		u.Host = "[" + t.Host + "]"
	}
	if t.Port != 0 {
		u.Host += ":" + strconv.Itoa(t.Port)
	}
	if t.User != "" {
		u.User = url.User(t.User)
	}
	switch {
	case t.Path == "." || t.Path == "":
		u.Path = "/"
	case t.Path == "/" || t.Path == "/~" || strings.HasPrefix(t.Path, "/~/"):
		u.Path = "/" + t.Path // not the login directory
	case strings.HasPrefix(t.Path, "/"):
		u.Path = t.Path
	default:
		u.Path = "/~/" + t.Path
	}
	return u.String()
}

// ParseURL parses sftp://[user@]host[:port][/path]. IPv6 hosts are written
// in brackets; user and path are percent-decoded. An empty path or "/" is the
// login directory ("."), "/~/x" is x below the login directory, "//" is the
// server's root, and any other path is absolute; paths are cleaned. A password in the URL, a query or a fragment is refused:
// ferry takes secrets from keys and ssh-agent only.
func ParseURL(s string) (Target, error) {
	fail := func(format string, a ...any) (Target, error) {
		return Target{}, fmt.Errorf("sftp URL %q: %s", s, fmt.Sprintf(format, a...))
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || !strings.EqualFold(scheme, "sftp") {
		return fail("want sftp://[user@]host[:port]/path")
	}
	if strings.ContainsAny(rest, "?#") {
		return fail("query or fragment not allowed")
	}
	authority, p := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, p = rest[:i], rest[i:]
	}
	var t Target
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		user, err := url.PathUnescape(authority[:i])
		if err != nil {
			return fail("user: %v", err)
		}
		if strings.Contains(user, ":") {
			return fail("passwords in URLs are not supported; use a key or ssh-agent")
		}
		if user == "" || !validText(user) || strings.Contains(user, "/") {
			return fail("invalid user %q", user)
		}
		t.User = user
		authority = authority[i+1:]
	}
	host, port, err := splitHostPort(authority)
	if err != nil {
		return fail("%v", err)
	}
	t.Host, t.Port = host, port
	p, err = url.PathUnescape(p)
	if err != nil {
		return fail("path: %v", err)
	}
	if !validText(p) {
		return fail("path holds control characters")
	}
	switch {
	case p == "" || p == "/" || p == "/~" || p == "/~/":
		t.Path = "."
	case strings.HasPrefix(p, "/~/"):
		t.Path = path.Clean(p[3:])
	default:
		t.Path = path.Clean(p) // "//" is the server's "/"
	}
	return t, nil
}

func splitHostPort(a string) (host string, port int, err error) {
	if a == "" {
		return "", 0, errors.New("missing host")
	}
	portStr := ""
	switch {
	case strings.HasPrefix(a, "["):
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return "", 0, errors.New("missing ] after IPv6 address")
		}
		host = a[1:end]
		if net.ParseIP(host) == nil || !strings.Contains(host, ":") {
			return "", 0, fmt.Errorf("invalid IPv6 address %q", host)
		}
		switch after := a[end+1:]; {
		case after == "":
		case strings.HasPrefix(after, ":"):
			portStr = after[1:]
		default:
			return "", 0, fmt.Errorf("unexpected %q after IPv6 address", after)
		}
	default:
		host = a
		if i := strings.IndexByte(a, ':'); i >= 0 {
			host, portStr = a[:i], a[i+1:]
			if strings.Contains(portStr, ":") {
				return "", 0, errors.New("IPv6 addresses must be written in brackets")
			}
		}
		h, err := url.PathUnescape(host)
		if err != nil {
			return "", 0, fmt.Errorf("host: %v", err)
		}
		host = h
		if host == "" {
			return "", 0, errors.New("missing host")
		}
		for _, r := range host {
			if !(r == '-' || r == '.' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return "", 0, fmt.Errorf("invalid host %q", host)
			}
		}
		if strings.HasPrefix(host, "-") {
			return "", 0, fmt.Errorf("invalid host %q", host)
		}
	}
	if portStr != "" || strings.HasSuffix(a, ":") {
		n, err := strconv.Atoi(portStr)
		if err != nil || n < 1 || n > 65535 || portStr[0] == '+' || portStr[0] == '0' {
			return "", 0, fmt.Errorf("invalid port %q", portStr)
		}
		port = n
	}
	return host, port, nil
}

// validText reports whether s is free of control characters.
func validText(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
