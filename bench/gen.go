package bench

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// TreeSpec describes a generated source tree: Dirs folders holding
// FilesPerDir files of FileSize bytes each.
type TreeSpec struct {
	Dirs        int
	FilesPerDir int
	FileSize    int
	Seed        uint64
}

// SmallFiles is the tree of the issue: 10,000 files of 4 KiB in 100 folders.
var SmallFiles = TreeSpec{Dirs: 100, FilesPerDir: 100, FileSize: 4 << 10, Seed: 1}

// GiB is the size of the single large file of the benchmarks.
const GiB = 1 << 30

// treeTime is the mtime every generated entry gets, so that two trees made
// from one spec compare equal by size and mtime as well as by content.
var treeTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// GenTree writes the tree described by spec under root (created if missing)
// and returns the number of files written. File contents are pseudo-random
// and depend only on the seed and the file's index, so two calls with the same
// spec produce identical trees. It returns the first I/O error, leaving a
// partial tree behind.
func GenTree(root string, spec TreeSpec) (int, error) {
	rng := rand.New(rand.NewChaCha8(seedBytes(spec.Seed)))
	buf := make([]byte, spec.FileSize)
	n := 0
	for d := 0; d < spec.Dirs; d++ {
		dir := filepath.Join(root, fmt.Sprintf("d%03d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return n, fmt.Errorf("make dir %s: %w", dir, err)
		}
		for f := 0; f < spec.FilesPerDir; f++ {
			fill(rng, buf)
			p := filepath.Join(dir, fmt.Sprintf("f%04d.bin", f))
			if err := os.WriteFile(p, buf, 0o644); err != nil {
				return n, fmt.Errorf("write %s: %w", p, err)
			}
			if err := os.Chtimes(p, treeTime, treeTime); err != nil {
				return n, fmt.Errorf("set mtime %s: %w", p, err)
			}
			n++
		}
		if err := os.Chtimes(dir, treeTime, treeTime); err != nil {
			return n, fmt.Errorf("set mtime %s: %w", dir, err)
		}
	}
	return n, nil
}

// GenFile writes size bytes of incompressible pseudo-random data from seed
// to path, replacing any file there. ChaCha8 fills well above 1 GiB/s, so a
// 1 GiB file takes about a second and the disk, not the generator, sets
// the pace. It returns the first I/O error.
func GenFile(path string, size int64, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	src := rand.NewChaCha8(seedBytes(seed))
	buf := make([]byte, 4<<20)
	for left := size; left > 0; {
		chunk := buf
		if int64(len(chunk)) > left {
			chunk = chunk[:left]
		}
		_, _ = src.Read(chunk) // ChaCha8.Read never fails
		if _, err := f.Write(chunk); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		left -= int64(len(chunk))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Chtimes(path, treeTime, treeTime); err != nil {
		return fmt.Errorf("set mtime %s: %w", path, err)
	}
	return nil
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	binary.LittleEndian.PutUint64(s[8:], 0x6665727279) // "ferry": keeps seed 0 from being all zeros
	return s
}

func fill(rng *rand.Rand, buf []byte) {
	i := 0
	for ; i+8 <= len(buf); i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
	}
	for v := rng.Uint64(); i < len(buf); i++ {
		buf[i] = byte(v)
		v >>= 8
	}
}
