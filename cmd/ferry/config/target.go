package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ferrysync/ferry/backends/sftp"
)

// setter applies one decoded key to a target. Targets are built by replaying
// the setters of the defaults block and then the target's own, so a key set
// to its zero value still overrides the default.
type setter struct {
	key   string
	value *yaml.Node
	path  string // key path where the value was written, for later messages
	apply func(*Target)
}

// tfield is one key a target (or the defaults block) may hold.
type tfield struct {
	key  string
	only Type // "" for keys every type takes
	read func(d *decoder, n *yaml.Node, key string) (func(*Target), bool)
}

func field[T any](key string, only Type, read func(*decoder, *yaml.Node, string) (T, bool), ptr func(*Target) *T) tfield {
	return tfield{key, only, func(d *decoder, n *yaml.Node, path string) (func(*Target), bool) {
		v, ok := read(d, n, path)
		if !ok {
			return nil, false
		}
		return func(t *Target) { *ptr(t) = v }, true
	}}
}

func readStr(d *decoder, n *yaml.Node, k string) (string, bool)    { return d.str(n, k) }
func readBool(d *decoder, n *yaml.Node, k string) (bool, bool)     { return d.boolean(n, k) }
func readSecret(d *decoder, n *yaml.Node, k string) (Secret, bool) { return d.secret(n, k) }
func readRate(d *decoder, n *yaml.Node, k string) (int64, bool)    { return d.rate(n, k) }
func readName(d *decoder, n *yaml.Node, k string) (string, bool)   { return d.name(n, k) }
func readVerify(d *decoder, n *yaml.Node, k string) (Verify, bool) {
	v, ok := d.enum(n, k, "auto", "none", "hash", "read-back")
	return Verify(v), ok
}
func readType(d *decoder, n *yaml.Node, k string) (Type, bool) {
	v, ok := d.enum(n, k, "local", "sftp", "s3")
	return Type(v), ok
}
func readChunk(d *decoder, n *yaml.Node, k string) (int64, bool) {
	return d.size(n, k, 1, maxChunkSize)
}
func readLocalPath(d *decoder, n *yaml.Node, k string) (string, bool) {
	s, ok := d.str(n, k)
	if !ok {
		return "", false
	}
	return d.localPath(n, k, s)
}
func readDuration(d *decoder, n *yaml.Node, k string) (time.Duration, bool) {
	v, ok := d.duration(n, k)
	return time.Duration(v), ok
}

// readKeepalive allows no zero: keepalive is how a dead link is found, and
// the SFTP target has no way to turn it off.
func readKeepalive(d *decoder, n *yaml.Node, k string) (time.Duration, bool) {
	v, ok := readDuration(d, n, k)
	if ok && v < time.Second {
		d.errorf(n, k, "%v is too short (at least 1s; keepalive cannot be turned off)", v)
		return 0, false
	}
	return v, ok
}

func readInt(lo, hi int) func(*decoder, *yaml.Node, string) (int, bool) {
	return func(d *decoder, n *yaml.Node, k string) (int, bool) { return d.integer(n, k, lo, hi) }
}

var targetFields = []tfield{
	field("name", "", readName, func(t *Target) *string { return &t.Name }),
	field("type", "", readType, func(t *Target) *Type { return &t.Type }),
	field("path", "", readStr, func(t *Target) *string { return &t.Path }),

	field("transfers", "", readInt(1, 1024), func(t *Target) *int { return &t.Transfers }),
	field("bwlimit", "", readRate, func(t *Target) *int64 { return &t.BWLimit }),
	field("retries", "", readInt(1, 1000), func(t *Target) *int { return &t.Retries }),
	field("verify", "", readVerify, func(t *Target) *Verify { return &t.Verify }),

	field("fsync", Local, readBool, func(t *Target) *bool { return &t.Fsync }),

	field("host", SFTP, readStr, func(t *Target) *string { return &t.Host }),
	field("port", SFTP, readInt(1, 65535), func(t *Target) *int { return &t.Port }),
	field("user", SFTP, readStr, func(t *Target) *string { return &t.User }),
	field("identity", SFTP, readLocalPath, func(t *Target) *string { return &t.Identity }),
	field("known_hosts", SFTP, readLocalPath, func(t *Target) *string { return &t.KnownHosts }),
	field("accept_new_host_key", SFTP, readBool, func(t *Target) *bool { return &t.AcceptNewHostKey }),
	field("password", SFTP, readSecret, func(t *Target) *Secret { return &t.Password }),
	field("password_file", SFTP, readLocalPath, func(t *Target) *string { return &t.PasswordFile }),
	field("passphrase_file", SFTP, readLocalPath, func(t *Target) *string { return &t.PassphraseFile }),
	field("keepalive", SFTP, readKeepalive, func(t *Target) *time.Duration { return &t.Keepalive }),
	field("keepalive_max_missed", SFTP, readInt(1, 1000), func(t *Target) *int { return &t.KeepaliveMaxMissed }),
	field("chunk_size", SFTP, readChunk, func(t *Target) *int64 { return &t.ChunkSize }),
	field("requests_in_flight", SFTP, readInt(1, 1024), func(t *Target) *int { return &t.RequestsInFlight }),
	field("connections", SFTP, readInt(1, 64), func(t *Target) *int { return &t.Connections }),

	field("endpoint", S3, readStr, func(t *Target) *string { return &t.Endpoint }),
	field("bucket", S3, readStr, func(t *Target) *string { return &t.Bucket }),
	field("region", S3, readStr, func(t *Target) *string { return &t.Region }),
	field("access_key_id", S3, readStr, func(t *Target) *string { return &t.AccessKeyID }),
	field("secret_access_key", S3, readSecret, func(t *Target) *Secret { return &t.SecretAccessKey }),
	field("insecure", S3, readBool, func(t *Target) *bool { return &t.Insecure }),
}

var targetKeys, defaultsKeys = func() (all, defaults []string) {
	for _, f := range targetFields {
		all = append(all, f.key)
		if f.key != "name" && f.key != "path" {
			defaults = append(defaults, f.key)
		}
	}
	return append(all, "url"), defaults
}()

func lookupField(key string) (tfield, bool) {
	for _, f := range targetFields {
		if f.key == key {
			return f, true
		}
	}
	return tfield{}, false
}

// targetSpec is a target's (or the defaults block's) own keys, decoded.
type targetSpec struct {
	node    *yaml.Node
	prefix  string
	own     map[string]*yaml.Node // key -> key node
	setters []setter
}

func (d *decoder) targetSpec(n *yaml.Node, prefix string, isDefaults bool) targetSpec {
	spec := targetSpec{node: resolve(n), prefix: prefix, own: map[string]*yaml.Node{}}
	pairs, _ := d.mapping(n, prefix)
	known := targetKeys
	if isDefaults {
		known = defaultsKeys
	}
	for _, p := range pairs {
		path := join(prefix, p.name)
		if p.name == "url" && !isDefaults {
			spec.own["url"] = p.key
			spec.setters = append(spec.setters, d.targetURL(p.value, path)...)
			continue
		}
		f, ok := lookupField(p.name)
		if !ok || (isDefaults && !contains(defaultsKeys, p.name)) {
			if ok || p.name == "url" {
				d.errorf(p.key, path, "cannot be a default: set it on each target")
				continue
			}
			d.unknownKey(p, prefix, known, jobKeyHint)
			continue
		}
		spec.own[p.name] = p.key
		if apply, ok := f.read(d, p.value, path); ok {
			spec.setters = append(spec.setters, setter{p.name, resolve(p.value), path, apply})
		}
	}
	// A url sets keys of its own; writing them again is ambiguous.
	if _, hasURL := spec.own["url"]; hasURL {
		for _, s := range spec.setters {
			if s.path == join(prefix, "url") {
				if kn, dup := spec.own[s.key]; dup {
					d.errorf(kn, join(prefix, s.key), "is already set by url: (line %d)", spec.own["url"].Line)
				}
			}
		}
	}
	return spec
}

// targetURL reads url: sftp://user@host:port/path, file:///path or
// s3://bucket/prefix into setters. Messages never echo the URL, which might
// hold a password.
func (d *decoder) targetURL(n *yaml.Node, path string) []setter {
	s, ok := d.scalar(n, path)
	if !ok {
		return nil
	}
	node := resolve(n)
	// Refuse a password before anything else looks at the text, so no
	// message can carry it.
	if _, rest, ok := strings.Cut(s.val, "://"); ok {
		authority, _, _ := strings.Cut(rest, "/")
		if i := strings.LastIndexByte(authority, '@'); i >= 0 && strings.Contains(authority[:i], ":") {
			d.errorf(n, path, "must not hold a password: use password_file, or password: ${VAR}")
			return nil
		}
	}
	u, err := url.Parse(s.val)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		d.errorf(n, path, "is not a valid URL%s", urlDetail(s.val, err.Error()))
		return nil
	}
	set := func(key string, apply func(*Target)) setter { return setter{key, node, path, apply} }
	var out []setter
	switch u.Scheme {
	case "sftp":
		st, err := sftp.ParseURL(s.val)
		if err != nil {
			// ParseURL quotes the URL first; the reason is what helps.
			msg := err.Error()
			if i := strings.Index(msg, "\": "); i >= 0 {
				msg = msg[i+3:]
			}
			d.errorf(n, path, "is not a valid sftp URL (sftp://user@host:port/path)%s", urlDetail(s.val, msg))
			return nil
		}
		out = append(out, set("type", func(t *Target) { t.Type = SFTP }),
			set("host", func(t *Target) { t.Host = st.Host }),
			set("path", func(t *Target) { t.Path = st.Path }))
		if st.User != "" {
			out = append(out, set("user", func(t *Target) { t.User = st.User }))
		}
		if st.Port != 0 {
			out = append(out, set("port", func(t *Target) { t.Port = st.Port }))
		}
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			d.errorf(n, path, "a file:// URL cannot name a host (file:///abs/path)")
			return nil
		}
		p, ok := d.localPath(n, path, u.Path)
		if !ok || p == "" {
			if ok {
				d.errorf(n, path, "has no path (file:///abs/path)")
			}
			return nil
		}
		out = append(out, set("type", func(t *Target) { t.Type = Local }),
			set("path", func(t *Target) { t.Path = p }))
	case "s3":
		if u.Host == "" {
			d.errorf(n, path, "has no bucket (s3://bucket/prefix)")
			return nil
		}
		bucket, prefix := u.Host, strings.TrimPrefix(u.Path, "/")
		out = append(out, set("type", func(t *Target) { t.Type = S3 }),
			set("bucket", func(t *Target) { t.Bucket = bucket }),
			set("path", func(t *Target) { t.Path = prefix }))
	default:
		d.errorf(n, path, "scheme %q is not one of sftp://, file:// or s3://", u.Scheme)
		return nil
	}
	return out
}

// urlDetail is ": reason" for a URL that failed to parse, or nothing when
// the URL has user info: a password holding a '/' hides from the check for
// passwords, and the reason could quote a piece of it.
func urlDetail(raw, reason string) string {
	if strings.Contains(raw, "@") {
		return ""
	}
	return ": " + reason
}

// buildTarget applies the defaults and the target's own keys over the
// built-in defaults, then checks what only the whole target can tell.
func (d *decoder) buildTarget(defaults, spec targetSpec) *Target {
	t := builtinTarget()
	origin := map[string]setter{}
	for _, s := range append(append([]setter{}, defaults.setters...), spec.setters...) {
		s.apply(&t)
		origin[s.key] = s
	}
	t.Line = posOf(spec.node).line
	prefix := spec.prefix
	if _, ok := spec.own["name"]; !ok {
		d.errorf(spec.node, prefix, "missing required key \"name\"")
	}
	if t.Type == "" {
		// A type or url that was written but wrong has its own message.
		_, ownType := spec.own["type"]
		_, ownURL := spec.own["url"]
		_, defType := defaults.own["type"]
		if !ownType && !ownURL && !defType {
			d.errorf(spec.node, prefix, "missing required key \"type\" (local, sftp or s3), or a url")
		}
		return &t
	}
	// Keys of another type are mistakes when written on the target itself;
	// the defaults block may hold keys for every type.
	for key, kn := range spec.own {
		if f, ok := lookupField(key); ok && f.only != "" && f.only != t.Type {
			d.errorf(kn, join(prefix, key), "applies only to %s targets (this one is %s)", f.only, t.Type)
		}
	}
	require := func(key string, has bool) {
		if has {
			return
		}
		// A key that was read but is empty (null, "", ${EMPTY}) has no value;
		// one that was written but not read already has a message.
		if s, ok := origin[key]; ok {
			d.errorf(s.value, s.path, "has no value (%s targets need it)", t.Type)
			return
		}
		if _, written := spec.own[key]; written {
			return
		}
		d.errorf(spec.node, prefix, "missing required key %q (%s targets need it)", key, t.Type)
	}
	switch t.Type {
	case Local:
		require("path", t.Path != "")
		if s, ok := origin["path"]; ok && t.Path != "" && s.path != join(prefix, "url") {
			t.Path, _ = d.localPath(s.value, s.path, t.Path)
		}
		if s, ok := origin["path"]; ok {
			t.pathPos = posOf(s.value)
		}
	case SFTP:
		require("host", t.Host != "")
		require("path", t.Path != "")
		if t.Password != "" && t.PasswordFile != "" {
			d.errorf(origin["password"].value, origin["password"].path, "cannot be used with password_file (%s)", origin["password_file"].path)
		}
	case S3:
		require("bucket", t.Bucket != "")
		t.Path = strings.TrimPrefix(t.Path, "/")
		if t.AccessKeyID != "" && t.SecretAccessKey == "" {
			d.errorf(origin["access_key_id"].value, origin["access_key_id"].path, "needs secret_access_key as well")
		}
		if t.SecretAccessKey != "" && t.AccessKeyID == "" {
			d.errorf(origin["secret_access_key"].value, origin["secret_access_key"].path, "needs access_key_id as well")
		}
	}
	if t.Type == SFTP {
		d.checkSecretFile(origin["password_file"], t.PasswordFile)
		d.checkSecretFile(origin["passphrase_file"], t.PassphraseFile)
		d.checkExists(origin["identity"], t.Identity)
		if !t.AcceptNewHostKey {
			d.checkExists(origin["known_hosts"], t.KnownHosts)
		}
	}
	return &t
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// jobKeyHint tells where a key that belongs to a job goes when it was
// written in a target or in defaults.
var jobKeyHint = func() map[string]string {
	m := map[string]string{}
	for _, k := range jobKeys {
		m[k] = fmt.Sprintf("%s is a job setting: put it on the job", k)
	}
	return m
}()
