package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); otherwise
// the module version from the build info is used.
var version = ""

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print ferry's version, Go version and source revision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, rev := versionInfo()
			fmt.Fprintf(cmd.OutOrStdout(), "ferry %s\n%s %s/%s\nrevision %s\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH, rev)
			return nil
		},
	}
}

// versionInfo returns the version and the VCS revision (with "-dirty" for a
// modified tree) as far as the build recorded them.
func versionInfo() (ver, rev string) {
	ver, rev = version, "unknown"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if ver == "" {
			ver = "(unknown)"
		}
		return ver, rev
	}
	if ver == "" {
		ver = bi.Main.Version
	}
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && rev != "unknown" {
		rev += "-dirty"
	}
	return ver, rev
}
