package bench

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// BuildFerry builds ./cmd/ferry of the module at moduleRoot into dir and
// returns the binary's path. It fails with the compiler's output when the
// command does not build (for example while it is being written).
func BuildFerry(moduleRoot, dir string) (string, error) {
	out := filepath.Join(dir, "ferry")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/ferry")
	cmd.Dir = moduleRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build ferry in %s: %w: %s", moduleRoot, err, tail(string(b), 800))
	}
	return out, nil
}

// ModuleRoot returns the directory of the go.mod that holds the current
// directory, as `go env GOMOD` reports it.
func ModuleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == "/dev/null" {
		return "", fmt.Errorf("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
}
