package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/ferrysync/ferry/engine"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// showProgress draws c's totals until the returned stop is called: as a
// bar on stderr when it is a terminal (logs are then printed above the bar
// through logw), as a log line every interval otherwise.
func showProgress(c *engine.Counter, stderr io.Writer, logw *switchWriter, log *slog.Logger, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	if isTerminal(stderr) {
		go func() { defer wg.Done(); drawBars(c, stderr, logw, done) }()
	} else {
		go func() { defer wg.Done(); logProgress(c, log, interval, done) }()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

func drawBars(c *engine.Counter, stderr io.Writer, logw *switchWriter, done <-chan struct{}) {
	p := mpb.New(mpb.WithOutput(stderr), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	logw.set(p)
	defer logw.set(stderr)
	var bar *mpb.Bar
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		s := c.Snapshot()
		if bar == nil && s.TotalFiles > 0 {
			bar = p.New(max(s.TotalBytes, 1), mpb.BarStyle(),
				mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
					s := c.Snapshot()
					return fmt.Sprintf("%d/%d files", s.DoneFiles+s.FailedFiles, s.TotalFiles)
				}, decor.WCSyncSpaceR)),
				mpb.AppendDecorators(
					decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace),
					decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
					decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace),
				))
		}
		if bar != nil {
			bar.SetCurrent(s.Bytes)
		}
		select {
		case <-done:
			if bar != nil {
				bar.SetCurrent(c.Snapshot().Bytes)
				bar.SetTotal(-1, true) // complete at the final count
			}
			p.Wait()
			return
		case <-tick.C:
		}
	}
}

func logProgress(c *engine.Counter, log *slog.Logger, interval time.Duration, done <-chan struct{}) {
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		s := c.Snapshot()
		if s.TotalFiles == 0 {
			continue
		}
		el := time.Since(start).Seconds()
		rate := float64(s.Bytes) / max(el, 1e-3)
		eta := "unknown"
		if rate > 0 {
			eta = time.Duration(float64(s.TotalBytes-s.Bytes) / rate * float64(time.Second)).Round(time.Second).String()
		}
		log.Info("progress",
			"files", fmt.Sprintf("%d/%d", s.DoneFiles+s.FailedFiles, s.TotalFiles),
			"bytes", fmt.Sprintf("%s/%s", formatBytes(s.Bytes), formatBytes(s.TotalBytes)),
			"rate", formatBytes(int64(rate))+"/s",
			"eta", eta)
	}
}
