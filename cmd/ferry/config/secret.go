package config

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/ferrysync/ferry/backends/sftp"
)

// Secret is a password or key. Every way of printing it (fmt verbs, slog,
// text marshalling) shows [redacted]; Reveal gives the value to the code
// that must send it.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps encoders (JSON, YAML) from writing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// String is a one-line description: name (type location).
func (t *Target) String() string {
	switch t.Type {
	case SFTP:
		u := sftp.Target{User: t.User, Host: t.Host, Port: t.Port, Path: t.Path}
		return fmt.Sprintf("%s (%s)", t.Name, u)
	case S3:
		return fmt.Sprintf("%s (s3 %s/%s)", t.Name, t.Bucket, t.Path)
	}
	return fmt.Sprintf("%s (%s %s)", t.Name, t.Type, t.Path)
}

// LogValue implements slog.LogValuer with the settings that tell targets
// apart; secrets are redacted.
func (t *Target) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("name", t.Name), slog.String("type", string(t.Type))}
	add := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	add("path", t.Path)
	add("host", t.Host)
	if t.Port != 0 {
		attrs = append(attrs, slog.Int("port", t.Port))
	}
	add("user", t.User)
	add("password", t.Password.String())
	add("endpoint", t.Endpoint)
	add("bucket", t.Bucket)
	add("access_key_id", t.AccessKeyID)
	add("secret_access_key", t.SecretAccessKey.String())
	return slog.GroupValue(attrs...)
}

// String is a one-line description of the job.
func (j *Job) String() string {
	var how string
	switch {
	case j.Watch:
		how = "watch"
	case !j.Schedule.IsZero():
		how = "schedule " + j.Schedule.Spec
	default:
		how = "once"
	}
	return fmt.Sprintf("%s: %s %s, %s, %d %s", j.Name, j.Mode, j.Source, how, len(j.Targets), plural(len(j.Targets), "target"))
}

// LogValue implements slog.LogValuer.
func (j *Job) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", j.Name), slog.String("source", j.Source),
		slog.String("mode", string(j.Mode)), slog.Int("targets", len(j.Targets)))
}

// LogValue implements slog.LogValuer.
func (c *Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("file", c.File), slog.Int("jobs", len(c.Jobs)))
}

// Describe writes every resolved setting, defaults included, one per line,
// with secrets redacted: what `ferry check -v` shows.
func (c *Config) Describe(w io.Writer) {
	fmt.Fprintf(w, "state_dir: %v\nmetrics_addr: %v\nlog_format: %v\n", orDash(c.StateDir), orDash(c.MetricsAddr), orDash(c.LogFormat))
	for _, j := range c.Jobs {
		fmt.Fprintf(w, "job %s (line %d)\n", j.Name, j.Line)
		p := func(k string, v any) { fmt.Fprintf(w, "  %s: %v\n", k, orDash(v)) }
		p("source", j.Source)
		p("mode", j.Mode)
		p("watch", j.Watch)
		p("schedule", describeSchedule(j.Schedule))
		p("exclude", "["+strings.Join(j.Exclude, ", ")+"]")
		p("checksum", j.Checksum)
		if j.MaxDelete == NoLimit {
			p("max_delete", "no cap")
		} else {
			p("max_delete", j.MaxDelete)
		}
		if j.Mode == Backup {
			p("backup_dir", j.BackupDir)
			p("keep", describeKeep(j.Keep))
		}
		p("state", j.State)
		if j.State {
			p("target_rescan_every", describeEvery(j.TargetRescanEvery))
		}
		for _, t := range j.Targets {
			t.describe(w)
		}
	}
}

func (t *Target) describe(w io.Writer) {
	fmt.Fprintf(w, "  target %s (line %d)\n", t.Name, t.Line)
	p := func(k string, v any) { fmt.Fprintf(w, "    %s: %v\n", k, orDash(v)) }
	p("type", t.Type)
	p("path", t.Path)
	switch t.Type {
	case Local:
		p("fsync", t.Fsync)
	case SFTP:
		p("host", t.Host)
		p("port", t.Port)
		p("user", t.User)
		p("identity", t.Identity)
		p("known_hosts", t.KnownHosts)
		p("accept_new_host_key", t.AcceptNewHostKey)
		p("password", t.Password)
		p("password_file", t.PasswordFile)
		p("passphrase_file", t.PassphraseFile)
		p("keepalive", t.Keepalive)
		p("keepalive_max_missed", t.KeepaliveMaxMissed)
		p("chunk_size", FormatSize(t.ChunkSize))
		p("requests_in_flight", t.RequestsInFlight)
		p("connections", t.Connections)
	case S3:
		p("endpoint", t.Endpoint)
		p("bucket", t.Bucket)
		p("region", t.Region)
		p("access_key_id", t.AccessKeyID)
		p("secret_access_key", t.SecretAccessKey)
		p("insecure", t.Insecure)
	}
	p("transfers", t.Transfers)
	if t.BWLimit == 0 {
		p("bwlimit", "unlimited")
	} else {
		p("bwlimit", FormatSize(t.BWLimit)+"/s")
	}
	p("retries", t.Retries)
	p("verify", t.Verify)
}

// orDash shows an empty value as "-", so no line ends in a space.
func orDash(v any) any {
	if fmt.Sprint(v) == "" {
		return "-"
	}
	return v
}

func describeSchedule(s Schedule) string {
	switch {
	case s.IsZero():
		return "none"
	case s.Every > 0:
		return "every " + s.Every.String()
	}
	return "cron " + s.Spec
}

func describeKeep(k Keep) string {
	switch {
	case k.Count > 0:
		return strconv.Itoa(k.Count) + " versions"
	case k.Age > 0:
		return "versions younger than " + k.Age.String()
	}
	return "all versions"
}

// describeEvery shows a period where 0 means never.
func describeEvery(d time.Duration) string {
	switch {
	case d == 0:
		return "never"
	case d%(24*time.Hour) == 0:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.String()
}
