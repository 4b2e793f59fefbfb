package engine

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ferrysync/ferry/backends"
)

// benchTree returns about n entries in ComparePaths order: 100 top
// directories of 10 subdirectories each, the files spread over them.
func benchTree(n int) []backends.FileInfo {
	const tops, subs = 100, 10
	perDir := max((n-tops-tops*subs)/(tops*subs), 1)
	out := make([]backends.FileInfo, 0, tops+tops*subs+tops*subs*perDir)
	for i := range tops {
		top := fmt.Sprintf("top%03d", i)
		out = append(out, dir(top, 1))
		for j := range subs {
			sub := fmt.Sprintf("%s/sub%02d", top, j)
			out = append(out, dir(sub, 1))
			for k := range perDir {
				out = append(out, file(fmt.Sprintf("%s/file%05d.dat", sub, k), int64(k), k%60))
			}
		}
	}
	return out
}

// BenchmarkMakePlan plans a million entries: a no-op resync, a first sync to
// an empty target, and a resync where 10% of files changed size, 1% are new
// and 1% are gone from the source.
func BenchmarkMakePlan(b *testing.B) {
	const n = 1_000_000
	src := benchTree(n)
	changed := slices.Clone(src)
	var mixedSrc, mixedDst []backends.FileInfo
	for k, e := range changed {
		switch {
		case !e.IsRegular():
			mixedSrc = append(mixedSrc, e)
			mixedDst = append(mixedDst, e)
		case k%100 == 1: // new: only in the source
			mixedSrc = append(mixedSrc, e)
		case k%100 == 2: // gone: only on the target
			mixedDst = append(mixedDst, e)
		case k%10 == 3:
			mixedSrc = append(mixedSrc, e)
			e.Size++
			mixedDst = append(mixedDst, e)
		default:
			mixedSrc = append(mixedSrc, e)
			mixedDst = append(mixedDst, e)
		}
	}
	filter, err := NewFilter([]string{"*.log", "node_modules/", "/build"})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name     string
		src, dst []backends.FileInfo
		filter   *Filter
	}{
		{"noop", src, slices.Clone(src), nil},
		{"noop-3-excludes", src, slices.Clone(src), filter},
		{"all-new", src, nil, nil},
		{"mixed", mixedSrc, mixedDst, nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opts := PlanOptions{Mode: Mirror, MaxDelete: -1, Symlinks: true, Filter: bc.filter}
			b.ReportAllocs()
			var ops int
			for b.Loop() {
				ops = len(MakePlan(bc.src, bc.dst, opts).Ops)
			}
			entries := max(len(bc.src), len(bc.dst))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(entries), "ns/entry")
			b.ReportMetric(float64(ops), "ops")
		})
	}
}
