package engine

import (
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

func TestMetricsExposeRunsPerJobAndTarget(t *testing.T) {
	m := NewMetrics()
	at := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	p := m.Progress("site", "a")
	p.FileDone("x", 100, 0)
	p.FileDone("y", 23, 0)
	m.Retried("site", "a")
	m.Reconnected("site", "b")
	m.Add("site", "d", Counts{Files: 3, Bytes: 30, Retries: 2, Errors: 1})
	m.Add("site", "d", Counts{Files: -1, Bytes: 5})
	m.Finished("site", "a", TargetResult{Name: "a"}, false, at)
	m.Finished("site", "b", TargetResult{Name: "b", Err: backends.ErrUnreachable}, true, at)
	m.Finished("site", "c", TargetResult{Name: "c", Report: Report{Problems: []Problem{{Path: "p", Err: errors.New("boom")}}}}, false, at)
	m.Live("live", func() []TargetState { return []TargetState{{Job: "live", Target: "w", State: "watching", Queued: 7}} })

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	get := func(path string) string {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	var states []TargetState
	if err := json.Unmarshal([]byte(get("/status")), &states); err != nil {
		t.Fatal(err)
	}
	got := map[string]TargetState{}
	for _, s := range states {
		got[s.Job+"/"+s.Target] = s
	}
	want := map[string]string{"site/a": "ok", "site/b": "unreachable", "site/c": "failed", "live/w": "watching"}
	for k, st := range want {
		if got[k].State != st {
			t.Errorf("%s state %q, want %q", k, got[k].State, st)
		}
	}
	if s := got["site/a"]; s.Files != 2 || s.Bytes != 123 || !s.LastSuccess.Equal(at) {
		t.Errorf("site/a: %+v", s)
	}
	if s := got["site/c"]; s.Failed != 1 || !strings.Contains(s.LastError, "boom") || !s.LastSuccess.IsZero() {
		t.Errorf("site/c: %+v", s)
	}

	text := get("/metrics")
	for _, line := range []string{
		`ferry_bytes_total{job="site",target="a"} 123`,
		`ferry_files_total{job="site",target="a"} 2`,
		`ferry_retries_total{job="site",target="a"} 1`,
		`ferry_reconnects_total{job="site",target="b"} 1`,
		`ferry_errors_total{job="site",target="c"} 1`,
		`ferry_files_total{job="site",target="d"} 3`,
		`ferry_bytes_total{job="site",target="d"} 35`,
		`ferry_retries_total{job="site",target="d"} 2`,
		`ferry_errors_total{job="site",target="d"} 1`,
		`ferry_target_up{job="site",target="b"} 0`,
		`ferry_queue_depth{job="live",target="w"} 7`,
		`ferry_last_success_timestamp_seconds{job="site",target="a"} 1.7956224e+09`,
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if strings.Contains(text, `ferry_last_success_timestamp_seconds{job="site",target="b"}`) {
		t.Errorf("an unreachable target has a last success time")
	}
	m.Forget("site")
	if n := len(m.Snapshot()); n != 1 {
		t.Errorf("after Forget: %d states, want 1", n)
	}
}
