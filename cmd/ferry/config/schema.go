package config

// Reference of every key of ferry.yaml. testdata/full.yaml shows them all in
// use; the loader rejects any key not listed here.
//
// Value syntax:
//   - duration: Go syntax (90s, 1m30s, 2h) plus d for days of 24h (7d, 1d12h).
//     A bare number is refused: 15 could be seconds or minutes.
//   - size: a whole number of bytes (4096) or a number with a unit: K, M, G, T
//     and KiB, MiB, GiB, TiB are 1024-based (32K = 32KiB = 32768); KB, MB, GB,
//     TB are 1000-based as the SI says (1MB = 1000000). Fractions are allowed
//     where they give whole bytes (1.5M). Units are case-insensitive.
//   - rate: a size per second, written with or without "/s" (10M, 10MiB/s).
//   - ${VAR} in any value is replaced by the environment variable VAR after
//     the YAML is parsed (so a value can never add YAML structure); an unset
//     VAR is an error. $$ is a literal $. A $ not followed by { stays as
//     written: a password pa$word is read as pa$word. In YAML's flow style
//     ({a: b}, [a, b]) braces are syntax, so quote such values: {path: "${X}"}.
//   - Relative local paths (source, a local target's path, identity,
//     known_hosts, password_file, passphrase_file, state_dir) are taken
//     relative to the directory of the config file; a leading ~/ is $HOME.
//
// Top level:
//
//	state_dir:    where per-target state is kept (default $XDG_STATE_HOME/ferry,
//	              else ~/.local/state/ferry)
//	metrics_addr: host:port for Prometheus /metrics and /status (default: off)
//	log_format:   text | json (default text)
//	defaults:     target settings shared by every target (any target key
//	              except name, path and url); a target's own keys override
//	              them, also when set to a zero value (fsync: false, retries: 1)
//	jobs:         list of jobs (at least one)
//	x-anything:   ignored: a place to define YAML anchors for use with
//	              aliases (*name) and merge keys (<<: *name) below
//
// A job:
//
//	name:       required; letters, digits, '.', '_', '-'; unique in the file
//	source:     required; the local directory to mirror; must exist
//	mode:       mirror (make targets equal to the source, deleting extras) |
//	            backup (never delete; keep replaced and deleted versions in
//	            backup_dir) (default mirror)
//	watch:      true to mirror every change continuously (default false)
//	schedule:   an interval (1h, 30m, 1d) or a cron expression ("0 3 * * *",
//	            "@daily", "@every 2h"); not together with watch: true.
//	            Neither watch nor schedule: the job runs once.
//	exclude:    list of gitignore-style patterns (*.log, /build, node_modules/)
//	checksum:   compare content hashes, not only size and mtime (default false)
//	max_delete: refuse a run that would delete more than this many entries
//	            (default: no cap; 0 forbids deletes)
//	backup_dir: backup mode only: where old versions go, relative to each
//	            target's root, as backup_dir/<timestamp>/<path>
//	            (default .ferry-versions); no "..", not absolute
//	keep:       backup mode only: prune old version folders by count (10:
//	            keep the ten newest backup_dir/<timestamp> folders, one per
//	            run that replaced or deleted something) or by age (30d,
//	            720h: drop folders older than that) (default: keep all)
//	state:      keep what each target holds in a state file under
//	            state_dir (one per job and target), so a run plans without
//	            listing the whole target and renames become moves on the
//	            target (default true; false lists every target on every run)
//	target_rescan_every: with state, list each target in full again once
//	            its last full listing is older than this, repairing what
//	            was changed on it behind ferry's back (default 1d; 0: never;
//	            `ferry run --rescan-target` forces one)
//	targets:    list of targets (at least one)
//
// A target (and the defaults block):
//
//	name:  required; letters, digits, '.', '_', '-'; unique within its job
//	type:  local | sftp | s3; required unless url is given
//	url:   instead of type/user/host/port/path: sftp://user@host:port/path
//	       (as `ferry sync` reads it: /srv/x is absolute, /~/x is x in the
//	       login directory, an empty path is the login directory),
//	       file:///abs/path for local, s3://bucket/prefix for s3. A url may not
//	       hold a password, and may not be combined with the keys it sets.
//	path:  local: the target directory (required); sftp: the remote
//	       directory (required; relative paths are relative to the login
//	       directory, "." is the login directory); s3: a key prefix inside
//	       the bucket (optional)
//
//	shared by all types:
//	transfers: files in flight at once (default 4, at least 1)
//	bwlimit:   rate limit for this target (default 0: unlimited)
//	retries:   attempts per file, with exponential backoff (default 5, at least 1)
//	verify:    auto (sftp: a server-side hash of uploads that resumed more
//	           than was compared on resume, the size of the others) | none (size) | hash (compare a hash after
//	           upload, server-side where the target can) | read-back (read
//	           the file back and compare) (default auto)
//
//	local only:
//	fsync: make data durable before the final rename (default true)
//
//	sftp only:
//	host:                 required
//	port:                 1-65535 (default: from ~/.ssh/config, else 22)
//	user:                 login name (default: from ~/.ssh/config, else $USER)
//	identity:             private key file (default: ssh-agent and ~/.ssh/config)
//	known_hosts:          known_hosts file (default ~/.ssh/known_hosts)
//	accept_new_host_key:  trust and record the key of a host not yet in
//	                      known_hosts; a changed key is still refused (default false)
//	password:             login password (secret; prefer ${VAR} or password_file)
//	password_file:        file holding the login password
//	passphrase_file:      file holding the identity's passphrase
//	keepalive:            interval of keepalive probes (default 15s, at least 1s)
//	keepalive_max_missed: missed probes before the connection is declared dead
//	                      and re-made (default 3, at least 1)
//	chunk_size:           size of each write request (default 32K, at most 255K)
//	requests_in_flight:   write requests outstanding per file (default 64)
//	connections:          SSH connections to this host (default 3)
//
//	s3 only:
//	bucket:            required
//	endpoint:          host[:port] of an S3-compatible server (default AWS)
//	region:            (default: the server's)
//	access_key_id:     (default: the usual AWS environment and files)
//	secret_access_key: secret; prefer ${VAR}; required with access_key_id
//	insecure:          plain http instead of https (default false)
//
// Checks beyond single values: names unique (jobs in the file, targets in a
// job); a source must be an existing directory; a local target may not be
// inside its source or hold it, may not share a folder with another target,
// and a mirror target may not hold another target or another job's source;
// identity, password_file, passphrase_file (and known_hosts unless
// accept_new_host_key) must exist; password and password_file exclude each
// other, as do access_key_id without secret_access_key.
//
// Secrets (password, secret_access_key): a file that holds one inline (not
// only ${VAR} references) must not be readable by group or others (chmod 600),
// and a password_file or passphrase_file must not be either. Secrets never
// appear in error messages, in String() or in log values.

import (
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/ferrysync/ferry/backends/sftp"
)

// Mode is what a job does with files the source lacks.
type Mode string

// The job modes.
const (
	Mirror Mode = "mirror"
	Backup Mode = "backup"
)

// Type is a target's kind.
type Type string

// The target types.
const (
	Local Type = "local"
	SFTP  Type = "sftp"
	S3    Type = "s3"
)

// Verify is how a target checks an upload after it.
type Verify string

// The verify settings.
const (
	VerifyAuto     Verify = "auto"
	VerifyNone     Verify = "none"
	VerifyHash     Verify = "hash"
	VerifyReadBack Verify = "read-back"
)

// NoLimit is Job.MaxDelete when no cap was set.
const NoLimit = -1

// Built-in defaults, documented above.
const (
	DefaultTransfers          = 4
	DefaultRetries            = 5
	DefaultKeepalive          = sftp.DefaultKeepaliveInterval
	DefaultKeepaliveMaxMissed = sftp.DefaultKeepaliveMaxMissed
	DefaultChunkSize          = sftp.DefaultChunkSize
	DefaultRequestsInFlight   = sftp.DefaultRequestsInFlight
	DefaultConnections        = sftp.DefaultConnections
	DefaultBackupDir          = ".ferry-versions"
	DefaultTargetRescanEvery  = 24 * time.Hour
	maxChunkSize              = 255 << 10 // the SFTP target refuses larger requests
)

// Config is a loaded ferry.yaml with every default applied.
type Config struct {
	File        string // the path it was read from, as given
	StateDir    string // absolute
	MetricsAddr string // "" when metrics are off
	LogFormat   string // "text" or "json"
	Jobs        []*Job
}

// Job is one source directory and the targets it is mirrored to.
type Job struct {
	Name      string
	Source    string // absolute, cleaned
	Mode      Mode
	Watch     bool
	Schedule  Schedule // zero when the job runs once or watches
	Exclude   []string
	Checksum  bool
	MaxDelete int    // NoLimit, or the cap (0 forbids deletes)
	BackupDir string // set in backup mode only
	Keep      Keep   // zero: keep every version
	// State keeps a state file per target; TargetRescanEvery is the age of
	// the last full listing that makes a run list the target again (0:
	// never).
	State             bool
	TargetRescanEvery time.Duration
	Targets           []*Target
	Line              int // line of the job in the file, for messages at run time

	sourcePos position
	sourceRaw string
	nameNode  *yaml.Node
}

// Keep is how many old version folders a backup job keeps: the newest
// Count of them, or those younger than Age. Both zero means keep all.
type Keep struct {
	Count int
	Age   time.Duration
}

// IsZero reports whether nothing is pruned.
func (k Keep) IsZero() bool { return k.Count == 0 && k.Age == 0 }

// Schedule is when a job runs: every Every, or at the times of a cron
// expression.
type Schedule struct {
	Spec  string        // as written
	Every time.Duration // set for an interval
	cron  cron.Schedule // set for a cron expression
}

// IsZero reports whether no schedule was given.
func (s Schedule) IsZero() bool { return s.Spec == "" }

// Next returns the first run time after t, or the zero time for a zero
// Schedule.
func (s Schedule) Next(t time.Time) time.Time {
	switch {
	case s.Every > 0:
		return t.Add(s.Every)
	case s.cron != nil:
		return s.cron.Next(t)
	}
	return time.Time{}
}

// Target is one destination of a job, with the defaults block and the
// built-in defaults already applied.
type Target struct {
	Name string
	Type Type
	Path string // local: absolute; sftp: as written; s3: prefix without leading /

	// sftp
	Host               string
	Port               int // 0: from ~/.ssh/config, else 22
	User               string
	Identity           string
	KnownHosts         string
	AcceptNewHostKey   bool
	Password           Secret
	PasswordFile       string
	PassphraseFile     string
	Keepalive          time.Duration
	KeepaliveMaxMissed int
	ChunkSize          int64
	RequestsInFlight   int
	Connections        int

	// s3
	Endpoint        string
	Bucket          string
	Region          string
	AccessKeyID     string
	SecretAccessKey Secret
	Insecure        bool

	// all types
	Transfers int
	BWLimit   int64 // bytes per second; 0 is unlimited
	Retries   int
	Verify    Verify
	Fsync     bool // local only

	Line int // line of the target in the file

	pathPos position
}

func builtinTarget() Target {
	return Target{
		Keepalive:          DefaultKeepalive,
		KeepaliveMaxMissed: DefaultKeepaliveMaxMissed,
		ChunkSize:          DefaultChunkSize,
		RequestsInFlight:   DefaultRequestsInFlight,
		Connections:        DefaultConnections,
		Transfers:          DefaultTransfers,
		Retries:            DefaultRetries,
		Verify:             VerifyAuto,
		Fsync:              true,
	}
}
