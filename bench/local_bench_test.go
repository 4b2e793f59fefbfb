package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// Local to local, issue 2. Each run gets a fresh, empty destination folder
// with a name never used before in this process (so no state ferry keeps
// per target can make a "fresh" run a no-op); the folder is removed (or, for
// small files, moved aside) after the run, untimed.

func rcloneEnv(tb testing.TB) []string {
	return []string{"RCLONE_CONFIG=" + filepath.Join(work(tb), "rclone.conf")}
}

// localTools are the contenders for a copy into an empty folder. With
// BENCH_FERRY_BEFORE set to another ferry binary (say, built from an older
// commit), it runs beside them as "ferry-before" and "ferry-nofsync-before",
// so that a change is measured against its baseline under the same load.
func localTools(b *testing.B) []tool {
	bin, ferryErr := ferry(b)
	why := ""
	if ferryErr != nil {
		why = ferryErr.Error()
		b.Logf("ferry not measured: %v", ferryErr)
	}
	env := rcloneEnv(b)
	tools := []tool{
		{name: "ferry", why: why, cmd: func(src, dst string) Command {
			return Command{Name: bin, Args: []string{"sync", "-q", src, dst}}
		}},
		{name: "ferry-nofsync", why: why, cmd: func(src, dst string) Command {
			return Command{Name: bin, Args: []string{"sync", "-q", "--fsync=false", src, dst}}
		}},
		{name: "rsync", cmd: func(src, dst string) Command {
			return Command{Name: "rsync", Args: []string{"-a", src + "/", dst + "/"}}
		}},
		{name: "rclone", cmd: func(src, dst string) Command {
			return Command{Name: "rclone", Args: []string{"sync", "-q", src, dst}, Env: env}
		}},
	}
	if before := os.Getenv("BENCH_FERRY_BEFORE"); before != "" {
		tools = append(tools,
			tool{name: "ferry-before", cmd: func(src, dst string) Command {
				return Command{Name: before, Args: []string{"sync", "-q", src, dst}}
			}},
			tool{name: "ferry-nofsync-before", cmd: func(src, dst string) Command {
				return Command{Name: before, Args: []string{"sync", "-q", "--fsync=false", src, dst}}
			}})
	}
	return tools
}

// freshDst makes an empty destination under the scenario's folder.
func freshDst(b *testing.B, scenario string) func(t tool, rep int) string {
	return func(t tool, rep int) string {
		dst := filepath.Join(work(b), scenario, fmt.Sprintf("%s-%d", t.name, rep))
		if err := os.MkdirAll(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		return dst
	}
}

func removeDst(dst string) { os.RemoveAll(dst) }

// asideDst returns a done func for trees of many small files: it moves the
// finished destination into the work folder, which goes as a whole when the
// process exits, and deletes it only where it cannot be moved.
//
// Deleting it at once would slow the next run down. On an ext4 without a
// journal (as on the machine the figures in RESULTS.md come from), ext4
// allocates no inode freed in the last minute (six while its block is
// unwritten) and passes over each of them at every create. With 10,000
// deleted before each run, rsync took 2.3 s for 10,000 files over SFTP
// here, against 1.1 s without.
func asideDst(b *testing.B) func(dst string) {
	aside := filepath.Join(work(b), "aside")
	if err := os.MkdirAll(aside, 0o755); err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	return func(dst string) {
		if os.Rename(dst, filepath.Join(aside, strconv.FormatInt(n.Add(1), 10))) != nil {
			os.RemoveAll(dst)
		}
	}
}

func localCopyWants(s *Scenario) {
	s.Want(Ratio{Num: "ferry", Den: "rclone", Target: 1.0})
	s.Want(Ratio{Num: "ferry-nofsync", Den: "rsync", Target: 1.0})
	s.Want(Ratio{Num: "ferry", Den: "rsync", Info: true}) // what durability costs against rsync
	if os.Getenv("BENCH_FERRY_BEFORE") != "" {
		s.Want(Ratio{Num: "ferry", Den: "ferry-before", Info: true})
		s.Want(Ratio{Num: "ferry-nofsync", Den: "ferry-nofsync-before", Info: true})
		s.Want(Ratio{Num: "ferry-nofsync-before", Den: "rsync", Info: true})
	}
}

// BenchmarkLocalSmallFiles copies 10,000 files of 4 KiB in 100 folders
// into an empty folder.
//
// On an ext4 without a journal (the test machines' root), most of every
// tool's CPU here is the kernel choosing inode numbers: it skips inodes
// deleted in the last ~30 s one by one (find_inode_bit, recently_deleted),
// and each run follows the removal of the previous tool's tree. Every tool
// pays the same per file, so the ratios hold, but the times of one tool
// vary with how many trees were removed shortly before; `perf record` of a
// run shows it.
func BenchmarkLocalSmallFiles(b *testing.B) {
	src := smallTree(b)
	s := NewScenario("local: 10,000 x 4 KiB into an empty folder")
	localCopyWants(s)
	register(s)
	runSide(b, s, localTools(b), side{src: src, prepare: freshDst(b, "local-small"), check: sameTree, done: asideDst(b)})
	report(b, s)
}

// BenchmarkLocalBigFile copies one 1 GiB incompressible file into an
// empty folder.
func BenchmarkLocalBigFile(b *testing.B) {
	src := bigTree(b)
	s := NewScenario(fmt.Sprintf("local: one %d MiB file into an empty folder", bigSize()>>20))
	localCopyWants(s)
	register(s)
	runSide(b, s, localTools(b), side{src: src, prepare: freshDst(b, "local-big"), check: sameTree, done: removeDst})
	report(b, s)
}

// BenchmarkLocalNoOp runs each tool again over a destination it filled
// itself, with nothing changed: the cost of finding out there is nothing
// to do. ferry runs with its defaults.
func BenchmarkLocalNoOp(b *testing.B) {
	src := smallTree(b)
	s := NewScenario("local: no-op second run over 10,000 x 4 KiB")
	s.Want(Ratio{Num: "ferry", Den: "rsync", Target: 1.0, Strict: true})
	s.Want(Ratio{Num: "ferry", Den: "rclone", Info: true})
	if os.Getenv("BENCH_FERRY_BEFORE") != "" {
		s.Want(Ratio{Num: "ferry", Den: "ferry-before", Info: true})
	}
	register(s)
	var tools []tool
	for _, t := range localTools(b) {
		if !strings.HasPrefix(t.name, "ferry-nofsync") {
			tools = append(tools, t)
		}
	}
	// Fill one destination per tool, with that tool, untimed.
	dsts := map[string]string{}
	for _, t := range tools {
		dst := filepath.Join(work(b), "local-noop", t.name)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		dsts[t.name] = dst
		if t.why != "" {
			continue
		}
		if _, err := Measure(b.Context(), t.cmd(src, dst)); err != nil {
			b.Logf("no-op: first run of %s: %v", t.name, err)
		}
	}
	runSide(b, s, tools, side{src: src, prepare: func(t tool, rep int) string { return dsts[t.name] }, check: sameTree})
	for _, d := range dsts {
		os.RemoveAll(d)
	}
	report(b, s)
}
