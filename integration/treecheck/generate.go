package treecheck

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"time"
)

// Spec describes a tree for Generate. The same Spec gives the same tree.
type Spec struct {
	Seed uint64
	// Dirs is how many directories, nested up to MaxDepth deep (default 3).
	Dirs     int
	MaxDepth int
	// SmallFiles of 0 to SmallMax bytes (default 16 KiB), spread over the
	// directories and the root.
	SmallFiles int
	SmallMax   int64
	// LargeFiles of LargeMin to LargeMax bytes.
	LargeFiles         int
	LargeMin, LargeMax int64
	// Symlinks pointing, by relative paths, to files and directories of the
	// tree itself.
	Symlinks int
}

// odd names mixed in among the plain ones: spaces, unicode, dots, dashes.
var oddNames = []string{"with space", "ünïcödé-名前", ".hidden", "-dash", "a.b.c", "UPPER", "emoji-🙂"}

// Generate writes the tree that spec describes under root (created if
// missing). Content and mtimes (in the past, with nanoseconds) are random but fixed by
// spec.Seed. It fails on any I/O error.
func Generate(root string, spec Spec) error {
	if spec.MaxDepth <= 0 {
		spec.MaxDepth = 3
	}
	if spec.SmallMax <= 0 {
		spec.SmallMax = 16 << 10
	}
	r := rand.New(rand.NewPCG(spec.Seed, 0x5eed))
	content, err := newContent(spec.Seed)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	name := func(i int) string {
		if r.IntN(10) == 0 {
			return fmt.Sprintf("%s %d", oddNames[r.IntN(len(oddNames))], i)
		}
		return fmt.Sprintf("n%04d", i)
	}

	dirs := []string{""}
	depth := map[string]int{"": 0}
	for i := range spec.Dirs {
		parent := dirs[r.IntN(len(dirs))]
		for depth[parent] >= spec.MaxDepth {
			parent = dirs[r.IntN(len(dirs))]
		}
		d := path.Join(parent, "d-"+name(i))
		if err := os.Mkdir(filepath.Join(root, filepath.FromSlash(d)), 0o755); err != nil {
			return fmt.Errorf("generate: %w", err)
		}
		dirs = append(dirs, d)
		depth[d] = depth[parent] + 1
	}

	var files []string
	write := func(p string, size int64) error {
		full := filepath.Join(root, filepath.FromSlash(p))
		f, err := os.OpenFile(full, os.O_CREATE|os.O_EXCL|os.O_WRONLY, []os.FileMode{0o644, 0o600, 0o755}[r.IntN(3)])
		if err != nil {
			return fmt.Errorf("generate: %w", err)
		}
		buf := make([]byte, min(size, 1<<20))
		for left := size; left > 0; {
			n := min(left, int64(len(buf)))
			clear(buf[:n])
			content.XORKeyStream(buf[:n], buf[:n])
			if _, err := f.Write(buf[:n]); err != nil {
				f.Close()
				return fmt.Errorf("generate %s: %w", full, err)
			}
			left -= n
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("generate %s: %w", full, err)
		}
		files = append(files, p)
		return nil
	}
	for i := range spec.SmallFiles {
		size := r.Int64N(spec.SmallMax + 1)
		if r.IntN(50) == 0 {
			size = 0
		}
		if err := write(path.Join(dirs[r.IntN(len(dirs))], "f-"+name(i)), size); err != nil {
			return err
		}
	}
	for i := range spec.LargeFiles {
		size := spec.LargeMin
		if spec.LargeMax > spec.LargeMin {
			size += r.Int64N(spec.LargeMax - spec.LargeMin + 1)
		}
		if err := write(path.Join(dirs[r.IntN(len(dirs))], fmt.Sprintf("large-%d.bin", i)), size); err != nil {
			return err
		}
	}

	// Links last, so they point at things that exist: relative, inside the tree.
	for i := range spec.Symlinks {
		var to string
		if i%2 == 0 && len(files) > 0 {
			to = files[r.IntN(len(files))]
		} else {
			to = dirs[1+r.IntN(len(dirs)-1)]
			if len(dirs) == 1 {
				to = files[r.IntN(len(files))]
			}
		}
		at := path.Join(dirs[r.IntN(len(dirs))], fmt.Sprintf("link-%d", i))
		rel, err := filepath.Rel(path.Dir(at), to)
		if err != nil {
			return fmt.Errorf("generate link %s: %w", at, err)
		}
		if err := os.Symlink(rel, filepath.Join(root, filepath.FromSlash(at))); err != nil {
			return fmt.Errorf("generate: %w", err)
		}
	}

	// Mtimes last, deepest first, so writing a child does not move its
	// directory's mtime afterwards.
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	stamp := func(p string) error {
		t := base.Add(time.Duration(r.Int64N(int64(300 * 24 * time.Hour))))
		if err := os.Chtimes(filepath.Join(root, filepath.FromSlash(p)), t, t); err != nil {
			return fmt.Errorf("generate: %w", err)
		}
		return nil
	}
	for _, f := range files {
		if err := stamp(f); err != nil {
			return err
		}
	}
	for i := len(dirs) - 1; i > 0; i-- {
		if err := stamp(dirs[i]); err != nil {
			return err
		}
	}
	return nil
}

// newContent returns the stream of file bytes for a seed: AES-CTR, which
// runs in assembly at GB/s, so hundreds of MiB cost little even in a test
// built with the race detector.
func newContent(seed uint64) (cipher.Stream, error) {
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:8], seed)
	binary.LittleEndian.PutUint64(key[8:], seed*0x9e3779b97f4a7c15)
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	return cipher.NewCTR(block, make([]byte, aes.BlockSize)), nil
}
