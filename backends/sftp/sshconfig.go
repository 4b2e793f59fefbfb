package sftp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/kevinburke/ssh_config"
)

// The SSH config is parsed by github.com/kevinburke/ssh_config, which
// knows Host blocks but neither most Match criteria (it refuses the file)
// nor Match's combined criteria (it reads `Match host a exec "x"` as a
// Host line with three patterns). So ferry reads the file first, for the
// host it is about to reach, as OpenSSH does:
//   - each Match line is evaluated (all, host, originalhost, user,
//     localuser, exec, final, each may be negated with "!") and becomes
//     `Host *` when it holds, `Host !*` (no host) when it does not; the
//     criteria ferry cannot judge (canonical, localnetwork, tagged) do not
//     hold, and a note says so;
//   - `Match host` is judged against the HostName set so far, `Match user`
//     against the user given or set so far (else the local user), as
//     OpenSSH does, with "first value wins" as everywhere in the file;
//   - Include is read here, relative to ~/.ssh, and its files the same way
//     in their place.

// maxIncludeDepth bounds nested Include directives, which also ends a loop.
const maxIncludeDepth = 16

// matchExecTimeout bounds a `Match exec` command.
const matchExecTimeout = 30 * time.Second

// loadSSHConfig reads the SSH config file name ("" is ~/.ssh/config,
// "none" none) for reaching alias as user ("" unknown yet). The notes say
// what of it ferry left out.
func loadSSHConfig(name, alias, remoteUser string) (*ssh_config.Config, []string, error) {
	if name == "none" {
		return nil, nil, nil
	}
	explicit := name != ""
	home, _ := os.UserHomeDir()
	if !explicit {
		if home == "" {
			return nil, nil, nil
		}
		name = filepath.Join(home, ".ssh", "config")
	}
	data, err := os.ReadFile(name)
	if err != nil {
		if !explicit && errors.Is(err, os.ErrNotExist) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("sftp: ssh config: %w", err)
	}
	rw := &configRewriter{alias: alias, host: alias, user: remoteUser, userGiven: remoteUser != "", home: home}
	if u, err := user.Current(); err == nil {
		rw.localUser = u.Username
	}
	text := rw.rewrite(string(data), name, 0)
	cfg, err := ssh_config.Decode(strings.NewReader(text))
	if err != nil {
		return nil, nil, fmt.Errorf("sftp: ssh config %s: %w", name, err)
	}
	return cfg, rw.notes, nil
}

// configRewriter carries what Match criteria are judged against through
// one pass over the file.
type configRewriter struct {
	alias     string // the host as given
	host      string // HostName set so far, else alias
	hostSet   bool
	user      string // remote user given or set so far
	userGiven bool
	localUser string
	home      string
	applies   bool // the block the pass is in applies to this host
	notes     []string
}

func (rw *configRewriter) rewrite(text, file string, depth int) string {
	var b strings.Builder
	if depth == 0 {
		rw.applies = true // lines before the first Host or Match
	}
	for i, line := range strings.Split(text, "\n") {
		key, rest := splitConfigLine(line)
		where := fmt.Sprintf("%s line %d", file, i+1)
		switch strings.ToLower(key) {
		case "include":
			if depth >= maxIncludeDepth {
				rw.notes = append(rw.notes, fmt.Sprintf("%s: Include nests more than %d deep; not read", where, maxIncludeDepth))
				continue
			}
			for _, pat := range strings.Fields(rest) {
				if strings.HasPrefix(pat, "~/") {
					pat = filepath.Join(rw.home, pat[2:])
				} else if !filepath.IsAbs(pat) {
					pat = filepath.Join(rw.home, ".ssh", pat)
				}
				files, _ := filepath.Glob(pat)
				for _, f := range files {
					if data, err := os.ReadFile(f); err == nil {
						b.WriteString(rw.rewrite(string(data), f, depth+1))
						b.WriteString("\n")
					}
				}
			}
			continue
		case "host":
			rw.applies = patternList(strings.Fields(rest), rw.alias)
		case "match":
			rw.applies = rw.match(rest, where)
			if rw.applies {
				b.WriteString("Host *\n")
			} else {
				b.WriteString("Host !*\n")
			}
			continue
		case "hostname":
			if rw.applies && !rw.hostSet {
				rw.host, rw.hostSet = strings.ReplaceAll(rest, "%h", rw.alias), true
			}
		case "user":
			if rw.applies && !rw.userGiven {
				rw.user, rw.userGiven = rest, true
			}
		}
		b.WriteString(line)
		b.WriteString("\n")
	}
	return b.String()
}

// match judges the criteria of a Match line; all must hold.
func (rw *configRewriter) match(criteria, where string) bool {
	args := splitQuoted(criteria)
	if len(args) == 0 {
		rw.notes = append(rw.notes, where+": Match without criteria applies to no host")
		return false
	}
	ok := true
	for i := 0; i < len(args); i++ {
		name := strings.ToLower(args[i])
		neg := strings.HasPrefix(name, "!")
		name = strings.TrimPrefix(name, "!")
		var arg string
		switch name {
		case "all", "canonical", "final":
		default:
			if i+1 >= len(args) {
				rw.notes = append(rw.notes, fmt.Sprintf("%s: Match %s without a value applies to no host", where, name))
				return false
			}
			i++
			arg = args[i]
		}
		var held bool
		switch name {
		case "all":
			held = true
		case "final":
			held = true // ferry reads the file once, for good
		case "host":
			held = patternList(strings.Split(arg, ","), rw.host)
		case "originalhost":
			held = patternList(strings.Split(arg, ","), rw.alias)
		case "user":
			u := rw.user
			if u == "" {
				u = rw.localUser
			}
			held = patternList(strings.Split(arg, ","), u)
		case "localuser":
			held = patternList(strings.Split(arg, ","), rw.localUser)
		case "exec":
			if !ok {
				continue // as OpenSSH: no command runs once a criterion failed
			}
			held = rw.exec(arg)
		default:
			rw.notes = append(rw.notes, fmt.Sprintf("%s: ferry cannot judge `Match %s`; the block applies to no host", where, name))
			return false
		}
		if held == neg {
			ok = false
		}
	}
	return ok
}

// exec runs a `Match exec` command with OpenSSH's tokens expanded; it holds
// when the command exits 0.
func (rw *configRewriter) exec(cmd string) bool {
	u := rw.user
	if u == "" {
		u = rw.localUser
	}
	cmd = strings.NewReplacer("%%", "%", "%h", rw.host, "%n", rw.alias, "%r", u, "%u", rw.localUser, "%d", rw.home).Replace(cmd)
	ctx, cancel := context.WithTimeout(context.Background(), matchExecTimeout)
	defer cancel()
	return exec.CommandContext(ctx, "/bin/sh", "-c", cmd).Run() == nil
}

// patternList reports whether s matches the OpenSSH pattern list pats:
// any pattern matching (with * and ?), none of the negated ones ("!p").
// Host names compare without regard to case.
func patternList(pats []string, s string) bool {
	s = strings.ToLower(s)
	found := false
	for _, p := range pats {
		p = strings.ToLower(strings.TrimSpace(p))
		neg := strings.HasPrefix(p, "!")
		if neg {
			p = p[1:]
		}
		if p == "" || !wildcard(p, s) {
			continue
		}
		if neg {
			return false
		}
		found = true
	}
	return found
}

// wildcard matches s against pattern p, where * is any run of characters
// and ? any one.
func wildcard(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if wildcard(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != p[0] {
				return false
			}
		}
		p, s = p[1:], s[1:]
	}
	return s == ""
}

// splitQuoted splits s at blanks, keeping double-quoted runs (without the
// quotes) whole, as `Match exec "a command"` is written.
func splitQuoted(s string) []string {
	var out []string
	var cur strings.Builder
	in, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			in, have = !in, true
		case !in && (r == ' ' || r == '\t'):
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// splitConfigLine splits an SSH config line into its keyword and the rest
// ("Keyword value" or "Keyword=value"); a blank or comment line has none.
func splitConfigLine(line string) (key, rest string) {
	t := strings.TrimSpace(line)
	if t == "" || strings.HasPrefix(t, "#") {
		return "", ""
	}
	i := strings.IndexAny(t, " \t=")
	if i < 0 {
		return t, ""
	}
	key, rest = t[:i], strings.TrimSpace(t[i:])
	rest = strings.TrimSpace(strings.TrimPrefix(rest, "="))
	return key, rest
}
