package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/engine"
)

func newVersionsCmd(g *globalOptions) *cobra.Command {
	var a targetArgs
	cmd := &cobra.Command{
		Use:   "versions [flags] -c ferry.yaml JOB/TARGET PATH",
		Short: "List the versions of a file or folder kept in backup_dir",
		Long: `List the copies of PATH that a target of a backup job holds, newest first:
the live one on top, then each one in backup_dir with the time it was
replaced or deleted (REPLACED) and its own modification time (MODIFIED).
To get one back, restore with --at its MODIFIED time.
Without -c, TARGET is a target as sync takes it and --backup-dir names the
folder of old versions.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError(fmt.Errorf("versions takes TARGET and PATH, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVersions(cmd.Context(), g, &a, args[0], args[1], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	a.register(cmd.Flags())
	return cmd
}

func runVersions(ctx context.Context, g *globalOptions, a *targetArgs, spec, path string, stdout, stderr io.Writer) error {
	t, err := a.open(ctx, spec, g, stderr)
	if err != nil {
		return err
	}
	defer t.b.Close()
	path = joinPath(t.path, strings.Trim(path, "/"))
	if err := backends.CheckPath(path); err != nil || path == "" {
		return usageErrorf("versions: PATH %q: want a file or folder below the target root", path)
	}
	if t.versions == "" {
		return usageErrorf("versions: %s keeps no old versions (not a backup job with backup_dir)", spec)
	}
	vs, err := engine.ListVersions(ctx, t.b, t.versions, path)
	if err != nil {
		return openFailed(err)
	}
	printVersions(stdout, vs)
	return nil
}

func printVersions(w io.Writer, vs []engine.Version) {
	width := len("SIZE")
	for _, v := range vs {
		width = max(width, len(fmt.Sprint(v.Info.Size)))
	}
	const stamp = "2006-01-02 15:04:05"
	fmt.Fprintf(w, "%-19s  %-19s  %*s  %s\n", "REPLACED", "MODIFIED", width, "SIZE", "WHERE")
	for _, v := range vs {
		replaced, where := "live", "live"
		if v.Stamp != "" {
			replaced, where = v.Until.Local().Format(stamp), v.Info.Path
		}
		size := fmt.Sprint(v.Info.Size)
		if v.Info.IsDir() {
			size = "dir"
		}
		fmt.Fprintf(w, "%-19s  %-19s  %*s  %s\n", replaced, v.Info.ModTime.Local().Format(stamp), width, size, where)
	}
}
