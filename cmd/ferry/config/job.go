package config

import (
	"fmt"
	"math"
	"net"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"
)

var (
	topKeys = []string{"state_dir", "metrics_addr", "log_format", "defaults", "jobs"}
	jobKeys = []string{"name", "source", "mode", "watch", "schedule", "exclude", "checksum",
		"max_delete", "backup_dir", "keep", "state", "target_rescan_every", "targets"}
)

// hints for keys written one level off.
var targetKeyHint, topKeyHint = func() (job, top map[string]string) {
	job, top = map[string]string{}, map[string]string{}
	for _, k := range targetKeys {
		job[k] = fmt.Sprintf("%s is a target setting: put it on a target or under defaults:", k)
		top[k] = fmt.Sprintf("%s is a target setting: put it under defaults: or on a target", k)
	}
	for _, k := range jobKeys {
		top[k] = fmt.Sprintf("%s is a job setting: put it on a job under jobs:", k)
	}
	return job, top
}()

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// config decodes the root mapping.
func (d *decoder) config(root *yaml.Node) *Config {
	c := &Config{LogFormat: "text"}
	pairs, ok := d.mapping(root, "")
	if !ok {
		return nil
	}
	var jobsPair, defaultsPair *pair
	for i, p := range pairs {
		switch p.name {
		case "state_dir":
			if s, ok := d.str(p.value, p.name); ok {
				c.StateDir, _ = d.localPath(p.value, p.name, s)
			}
		case "metrics_addr":
			c.MetricsAddr, _ = d.hostPort(p.value, p.name)
		case "log_format":
			c.LogFormat, _ = d.enum(p.value, p.name, "text", "json")
		case "defaults":
			defaultsPair = &pairs[i]
		case "jobs":
			jobsPair = &pairs[i]
		default:
			if strings.HasPrefix(p.name, "x-") {
				continue // a place for anchors, ignored
			}
			d.unknownKey(p, "", topKeys, topKeyHint)
		}
	}
	if c.StateDir == "" {
		if x, ok := d.env("XDG_STATE_HOME"); ok && filepath.IsAbs(x) {
			c.StateDir = filepath.Join(x, "ferry")
		} else if d.home != "" {
			c.StateDir = filepath.Join(d.home, ".local", "state", "ferry")
		}
	}
	var defaults targetSpec
	if defaultsPair != nil {
		defaults = d.targetSpec(defaultsPair.value, "defaults", true)
	}
	if jobsPair == nil {
		d.errorf(root, "", "missing required key \"jobs\" (a list of jobs)")
		return c
	}
	items, ok := d.sequence(jobsPair.value, "jobs")
	if ok && len(items) == 0 {
		d.errorf(jobsPair.key, "jobs", "needs at least one job")
	}
	names := map[string]string{}
	for i, it := range items {
		prefix := fmt.Sprintf("jobs[%d]", i)
		j := d.job(it, prefix, defaults)
		if j == nil {
			continue
		}
		if j.Name != "" {
			if first, dup := names[j.Name]; dup {
				d.errorf(j.nameNode, prefix+".name", "%q is already the name of %s", j.Name, first)
			} else {
				names[j.Name] = fmt.Sprintf("%s (line %d)", prefix, j.Line)
			}
		}
		c.Jobs = append(c.Jobs, j)
	}
	return c
}

func (d *decoder) job(n *yaml.Node, prefix string, defaults targetSpec) *Job {
	j := &Job{Mode: Mirror, MaxDelete: NoLimit, State: true, TargetRescanEvery: DefaultTargetRescanEvery, Line: posOf(resolve(n)).line}
	pairs, ok := d.mapping(n, prefix)
	if !ok {
		return nil
	}
	has := map[string]pair{}
	for _, p := range pairs {
		key := join(prefix, p.name)
		has[p.name] = p
		switch p.name {
		case "name":
			j.Name, _ = d.name(p.value, key)
			j.nameNode = resolve(p.value)
		case "source":
			if s, ok := d.str(p.value, key); ok {
				if s == "" {
					d.errorf(p.value, key, "has no value (want the directory to mirror)")
				}
				j.Source, _ = d.localPath(p.value, key, s)
				j.sourcePos = posOf(resolve(p.value))
				j.sourceRaw = s
			}
		case "mode":
			if m, ok := d.enum(p.value, key, "mirror", "backup"); ok {
				j.Mode = Mode(m)
			}
		case "watch":
			j.Watch, _ = d.boolean(p.value, key)
		case "schedule":
			j.Schedule, _ = d.schedule(p.value, key)
		case "exclude":
			j.Exclude, _ = d.patterns(p.value, key)
		case "checksum":
			j.Checksum, _ = d.boolean(p.value, key)
		case "max_delete":
			if v, ok := d.integer(p.value, key, 0, math.MaxInt32); ok {
				j.MaxDelete = v
			}
		case "backup_dir":
			j.BackupDir, _ = d.backupDir(p.value, key)
		case "keep":
			j.Keep, _ = d.keep(p.value, key)
		case "state":
			var ok bool
			if j.State, ok = d.boolean(p.value, key); !ok {
				j.State = true // one error is enough: do not add target_rescan_every's
			}
		case "target_rescan_every":
			if v, ok := d.duration(p.value, key); ok {
				j.TargetRescanEvery = time.Duration(v)
			}
		case "targets":
		default:
			d.unknownKey(p, prefix, jobKeys, targetKeyHint)
		}
	}
	for _, req := range []string{"name", "source", "targets"} {
		if _, ok := has[req]; !ok {
			d.errorf(n, prefix, "missing required key %q", req)
		}
	}
	if p, ok := has["target_rescan_every"]; ok && !j.State {
		d.errorf(p.key, join(prefix, "target_rescan_every"), "applies only with state: true (this job keeps no state)")
	}
	if p, ok := has["schedule"]; ok && j.Watch && !j.Schedule.IsZero() {
		d.errorf(p.key, join(prefix, "schedule"), "cannot be used with watch: true (line %d): a watching job runs continuously", has["watch"].key.Line)
	}
	if j.Mode == Backup {
		if j.BackupDir == "" {
			j.BackupDir = DefaultBackupDir
		}
	} else {
		for _, k := range []string{"backup_dir", "keep"} {
			if p, ok := has[k]; ok {
				d.errorf(p.key, join(prefix, k), "applies only to mode: backup (this job is %s)", j.Mode)
			}
		}
	}
	if p, ok := has["targets"]; ok {
		items, ok := d.sequence(p.value, join(prefix, "targets"))
		if ok && len(items) == 0 {
			d.errorf(p.key, join(prefix, "targets"), "needs at least one target")
		}
		names := map[string]string{}
		for i, it := range items {
			tp := fmt.Sprintf("%s.targets[%d]", prefix, i)
			spec := d.targetSpec(it, tp, false)
			t := d.buildTarget(defaults, spec)
			if t.Name != "" {
				if first, dup := names[t.Name]; dup {
					d.errorf(spec.own["name"], tp+".name", "%q is already the name of %s in this job", t.Name, first)
				} else {
					names[t.Name] = fmt.Sprintf("%s (line %d)", tp, t.Line)
				}
			}
			j.Targets = append(j.Targets, t)
		}
	}
	return j
}

// name reads a job or target name, which ends up in file names, metric
// labels and log fields, so it is kept to a safe alphabet.
func (d *decoder) name(n *yaml.Node, key string) (string, bool) {
	s, ok := d.scalar(n, key)
	if !ok {
		return "", false
	}
	if s.val == "" {
		d.errorf(n, key, "has no value")
		return "", false
	}
	for _, c := range s.val {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			d.errorf(n, key, "%s is not a valid name (use letters, digits, '.', '_' and '-')", s.show())
			return "", false
		}
	}
	if len(s.val) > 64 {
		d.errorf(n, key, "is longer than 64 characters")
		return "", false
	}
	return s.val, true
}

func (d *decoder) schedule(n *yaml.Node, key string) (Schedule, bool) {
	s, ok := d.scalar(n, key)
	if !ok || s.null {
		return Schedule{}, ok
	}
	spec := strings.TrimSpace(s.val)
	if s.node.Tag == "!!int" {
		d.errorf(n, key, "%s is not a schedule: add a unit for an interval (e.g. %sm, 1h)", s.show(), s.val)
		return Schedule{}, false
	}
	if every, err := ParseDuration(spec); err == nil {
		if every <= 0 {
			d.errorf(n, key, "%s is not a positive interval", s.show())
			return Schedule{}, false
		}
		return Schedule{Spec: spec, Every: every}, true
	}
	sched, err := parseCron(spec)
	if err != nil {
		d.errorf(n, key, "%s is neither an interval (1h, 30m) nor a cron expression (\"0 3 * * *\", @daily): %v", s.show(), err)
		return Schedule{}, false
	}
	// Feb 30 parses but never comes; the cron library gives up after five
	// years and returns the zero time.
	if sched.Next(time.Now()).IsZero() {
		d.errorf(n, key, "%s never fires", s.show())
		return Schedule{}, false
	}
	return Schedule{Spec: spec, cron: sched}, true
}

// parseCron guards the cron parser, which slices out of range on a TZ=
// prefix with nothing after it.
func parseCron(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("cannot be parsed")
		}
	}()
	return cronParser.Parse(spec)
}

func (d *decoder) keep(n *yaml.Node, key string) (Keep, bool) {
	s, ok := d.scalar(n, key)
	if !ok || s.null {
		return Keep{}, ok
	}
	if c, err := strconv.Atoi(strings.TrimSpace(s.val)); err == nil {
		if c < 1 {
			d.errorf(n, key, "%s must keep at least 1 version (leave keep out to keep all)", s.show())
			return Keep{}, false
		}
		return Keep{Count: c}, true
	}
	age, err := ParseDuration(s.val)
	if err != nil || age <= 0 {
		d.errorf(n, key, "%s is neither a count (10) nor an age (30d, 720h)", s.show())
		return Keep{}, false
	}
	return Keep{Age: age}, true
}

func (d *decoder) backupDir(n *yaml.Node, key string) (string, bool) {
	s, ok := d.str(n, key)
	if !ok {
		return "", false
	}
	p := path.Clean(strings.ReplaceAll(s, "\\", "/"))
	switch {
	case s == "":
		d.errorf(n, key, "has no value")
	case strings.HasPrefix(p, "/"):
		d.errorf(n, key, "%q must be relative to the target's root", s)
	case p == "." || p == ".." || strings.HasPrefix(p, "../"):
		d.errorf(n, key, "%q must name a directory inside the target's root", s)
	default:
		return p, true
	}
	return "", false
}

func (d *decoder) patterns(n *yaml.Node, key string) ([]string, bool) {
	items, ok := d.sequence(n, key)
	var out []string
	for i, it := range items {
		k := fmt.Sprintf("%s[%d]", key, i)
		p, ok2 := d.str(it, k)
		if !ok2 {
			ok = false
			continue
		}
		// The same rules as the engine's filter, so a file that loads never
		// fails later on a pattern.
		core := strings.TrimLeft(strings.TrimRight(strings.TrimPrefix(p, "!"), "/"), "/")
		switch {
		case core == "":
			d.errorf(it, k, "%q matches no name", p)
			ok = false
			continue
		case strings.Contains(core, "//"):
			d.errorf(it, k, "%q has an empty path element", p)
			ok = false
			continue
		case !doublestar.ValidatePattern(core):
			d.errorf(it, k, "%q is not a valid pattern (unclosed [ or {, or trailing \\)", p)
			ok = false
			continue
		}
		out = append(out, p)
	}
	return out, ok
}

func (d *decoder) hostPort(n *yaml.Node, key string) (string, bool) {
	s, ok := d.scalar(n, key)
	if !ok || s.null || s.val == "" {
		return "", ok
	}
	_, port, err := net.SplitHostPort(s.val)
	if err == nil {
		var p int
		p, err = strconv.Atoi(port)
		if err == nil && (p < 0 || p > 65535) {
			err = fmt.Errorf("bad port")
		}
	}
	if err != nil {
		d.errorf(n, key, "%s is not host:port (e.g. 127.0.0.1:9090 or :9090)", s.show())
		return "", false
	}
	return s.val, true
}
