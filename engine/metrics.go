package engine

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics collects what jobs do, per job and target, for Prometheus
// (/metrics) and as a JSON snapshot (/status). Safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	bytes       *prometheus.CounterVec
	files       *prometheus.CounterVec
	errors      *prometheus.CounterVec
	retries     *prometheus.CounterVec
	reconnects  *prometheus.CounterVec
	queue       *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	lastRun     *prometheus.GaugeVec
	up          *prometheus.GaugeVec

	mu     sync.Mutex
	status map[[2]string]*TargetState
	live   map[string]func() []TargetState // job -> snapshot of a running watch job
}

// TargetState is one target of one job in /status.
type TargetState struct {
	Job         string    `json:"job"`
	Target      string    `json:"target"`
	Kind        string    `json:"kind"`  // once, schedule, watch
	State       string    `json:"state"` // idle, running, ok, failed, unreachable, down, watching
	LastRun     time.Time `json:"last_run,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	NextRun     time.Time `json:"next_run,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Files       int64     `json:"files"`
	Bytes       int64     `json:"bytes"`
	Failed      int64     `json:"failed"`
	Queued      int       `json:"queued"`
}

// NewMetrics returns an empty set of metrics with its own registry.
func NewMetrics() *Metrics {
	l := []string{"job", "target"}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_bytes_total",
			Help: "Bytes of files published on the target."}, l),
		files: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_files_total",
			Help: "Files published on the target."}, l),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_errors_total",
			Help: "Files given up after retries, and failed runs."}, l),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_retries_total",
			Help: "Operations tried again after a retryable failure."}, l),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_reconnects_total",
			Help: "Connections to the target made again after they died."}, l),
		queue: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_queue_depth",
			Help: "Changes waiting for the target (watch jobs)."}, l),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_last_success_timestamp_seconds",
			Help: "When a run last completed without failures."}, l),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_last_run_timestamp_seconds",
			Help: "When a run last ended."}, l),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_target_up",
			Help: "1 when the target answered on its last run, 0 when it was unreachable."}, l),
		status: map[[2]string]*TargetState{},
		live:   map[string]func() []TargetState{},
	}
	m.reg.MustRegister(m.bytes, m.files, m.errors, m.retries, m.reconnects, m.queue,
		m.lastSuccess, m.lastRun, m.up)
	return m
}

// Handler serves /metrics (Prometheus text) and /status (JSON: a list of
// TargetState sorted by job and target).
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(m.Snapshot())
	})
	return mux
}

// Snapshot returns every known target's state, sorted by job and target.
func (m *Metrics) Snapshot() []TargetState {
	m.mu.Lock()
	var out []TargetState
	for _, s := range m.status {
		out = append(out, *s)
	}
	live := make(map[string]func() []TargetState, len(m.live))
	for k, f := range m.live {
		live[k] = f
	}
	m.mu.Unlock()
	for job, f := range live {
		for _, s := range f() {
			m.queue.WithLabelValues(job, s.Target).Set(float64(s.Queued))
			out = slices.DeleteFunc(out, func(o TargetState) bool { return o.Job == job && o.Target == s.Target })
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b TargetState) int {
		if c := strings.Compare(a.Job, b.Job); c != 0 {
			return c
		}
		return strings.Compare(a.Target, b.Target)
	})
	return out
}

func (m *Metrics) state(job, target string) *TargetState {
	k := [2]string{job, target}
	s := m.status[k]
	if s == nil {
		s = &TargetState{Job: job, Target: target, State: "idle"}
		m.status[k] = s
	}
	return s
}

// Plan records that a job's target exists, how it runs and when it runs
// next (zero: not planned).
func (m *Metrics) Plan(job, target, kind string, next time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.state(job, target)
	s.Kind, s.NextRun = kind, next
}

// Started records that a run of the target began.
func (m *Metrics) Started(job, target string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state(job, target).State = "running"
}

// Finished records a finished run of one target: its counts, and its
// state: "ok", "failed" (some paths failed) or "unreachable".
func (m *Metrics) Finished(job, target string, res TargetResult, unreachable bool, at time.Time) {
	l := prometheus.Labels{"job": job, "target": target}
	failed := len(res.Report.Problems)
	m.errors.With(l).Add(float64(failed))
	m.lastRun.With(l).Set(float64(at.Unix()))
	state := "ok"
	switch {
	case unreachable:
		state = "unreachable"
		m.up.With(l).Set(0)
		m.errors.With(l).Inc()
	case res.Err != nil || res.Report.Failed():
		state = "failed"
		m.up.With(l).Set(1)
		if failed == 0 {
			m.errors.With(l).Inc()
		}
	default:
		m.up.With(l).Set(1)
		m.lastSuccess.With(l).Set(float64(at.Unix()))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.state(job, target)
	s.State, s.LastRun = state, at
	s.Failed += int64(failed)
	s.LastError = ""
	if res.Err != nil {
		s.LastError = res.Err.Error()
	} else if failed > 0 {
		s.LastError = res.Report.Problems[0].Error()
	}
	if state == "ok" {
		s.LastSuccess = at
	}
}

// Live registers a function that reports the targets of a running watch
// job on every snapshot; nil removes it.
func (m *Metrics) Live(job string, f func() []TargetState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f == nil {
		delete(m.live, job)
		return
	}
	m.live[job] = f
}

// Forget drops a job's targets from /status, for a job removed from the
// config.
func (m *Metrics) Forget(job string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.status {
		if k[0] == job {
			delete(m.status, k)
		}
	}
	delete(m.live, job)
}

// Retried counts one retry of the target.
func (m *Metrics) Retried(job, target string) { m.retries.WithLabelValues(job, target).Inc() }

// Reconnected counts one reconnect to the target.
func (m *Metrics) Reconnected(job, target string) {
	m.reconnects.WithLabelValues(job, target).Inc()
}

// Progress returns a Progress that counts the target's published files and
// bytes.
func (m *Metrics) Progress(job, target string) Progress {
	return &metricsProgress{m: m, job: job, target: target,
		bytes: m.bytes.WithLabelValues(job, target), files: m.files.WithLabelValues(job, target)}
}

type metricsProgress struct {
	m           *Metrics
	job, target string
	bytes       prometheus.Counter
	files       prometheus.Counter
}

func (p *metricsProgress) Totals(int, int64)         {}
func (p *metricsProgress) FileStarted(string, int64) {}
func (p *metricsProgress) Bytes(string, int64)       {}
func (p *metricsProgress) FileFailed(string, error)  {}

func (p *metricsProgress) FileDone(_ string, size, _ int64) {
	p.bytes.Add(float64(size))
	p.files.Inc()
	p.m.mu.Lock()
	s := p.m.state(p.job, p.target)
	s.Files++
	s.Bytes += size
	p.m.mu.Unlock()
}

// Counts are what a target did since the last Add.
type Counts struct {
	Files, Bytes, Retries, Errors int64
}

// Add counts what a target did outside a Progress (from a watch job's
// status); negative and zero counts are ignored.
func (m *Metrics) Add(job, target string, c Counts) {
	for _, x := range []struct {
		v *prometheus.CounterVec
		n int64
	}{{m.files, c.Files}, {m.bytes, c.Bytes}, {m.retries, c.Retries}, {m.errors, c.Errors}} {
		if x.n > 0 {
			x.v.WithLabelValues(job, target).Add(float64(x.n))
		}
	}
}

// Succeeded records that a target of a watch job is in sync at t.
func (m *Metrics) Succeeded(job, target string, at time.Time) {
	m.lastSuccess.WithLabelValues(job, target).Set(float64(at.Unix()))
	m.up.WithLabelValues(job, target).Set(1)
}

// Down records that a target of a watch job is unreachable.
func (m *Metrics) Down(job, target string) { m.up.WithLabelValues(job, target).Set(0) }
