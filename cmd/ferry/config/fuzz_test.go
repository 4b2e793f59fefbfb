package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzParse holds Parse to its contract on any input: no panic, and either
// a Config or an Errors whose every entry has a line.
func FuzzParse(f *testing.F) {
	for _, glob := range []string{"testdata/*.yaml", "testdata/good/*.yaml", "testdata/bad/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("jobs: [{name: a, source: /, targets: [{name: b, url: 'file:///'}]}]"))
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("x-a: &a {<<: *a}\njobs: [{<<: *a}]"))
	f.Add([]byte("jobs:\n  - &j {name: a, <<: [*j, *j]}\n"))
	f.Add([]byte("jobs: [{name: a, source: /, schedule: TZ=UTC, targets: []}]"))
	f.Add([]byte("jobs:\n- &j {name: a}\n- *j\n"))
	env := func(name string) (string, bool) {
		if name == "UNSET" {
			return "", false
		}
		return "/tmp", true
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// A hang would stall the fuzzer silently: crash instead, so the
		// input is kept.
		watchdog := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("Parse hangs on %q", data)) })
		c, err := Parse("fuzz.yaml", data, env)
		watchdog.Stop()
		if err == nil {
			if c == nil {
				t.Fatal("nil Config and nil error")
			}
			return
		}
		if c != nil {
			t.Fatal("a Config and an error")
		}
		var es Errors
		if !errors.As(err, &es) || len(es) == 0 {
			t.Fatalf("error %T is not a non-empty Errors: %v", err, err)
		}
		for _, e := range es {
			if e.Line < 1 || e.File != "fuzz.yaml" || e.Msg == "" {
				t.Fatalf("error without a line, file or message: %+v", e)
			}
		}
	})
}
