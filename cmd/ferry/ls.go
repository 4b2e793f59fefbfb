package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/engine"
)

func newLsCmd(g *globalOptions) *cobra.Command {
	var (
		a         targetArgs
		recursive bool
	)
	cmd := &cobra.Command{
		Use:   "ls [flags] TARGET [PATH]",
		Short: "List what a target holds, like ls -l",
		Long: `List the files of TARGET (a target as sync takes it, or with -c ferry.yaml
JOB/TARGET) at PATH: mode, size, modification time and name; directories end
in /, symlinks show where they point. -R lists all that PATH holds.
Partial files of uploads in progress are not shown.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageError(fmt.Errorf("ls takes TARGET and an optional PATH, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ""
			if len(args) == 2 {
				path = args[1]
			}
			return runLs(cmd.Context(), g, &a, args[0], path, recursive, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	a.register(cmd.Flags())
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "list all that PATH holds, not only its direct entries")
	return cmd
}

func runLs(ctx context.Context, g *globalOptions, a *targetArgs, spec, path string, recursive bool, stdout, stderr io.Writer) error {
	t, err := a.open(ctx, spec, g, stderr)
	if err != nil {
		return err
	}
	defer t.b.Close()
	path = joinPath(t.path, strings.Trim(path, "/"))
	if err := backends.CheckPath(path); err != nil {
		return usageErrorf("ls %q: %w", path, err)
	}
	var (
		entries  []backends.FileInfo
		problems []engine.Problem
	)
	fi, err := t.b.Stat(ctx, path)
	switch {
	case err != nil:
		return openFailed(fmt.Errorf("ls %s: %w", path, err))
	case !fi.IsDir():
		_, fi.Path = backends.Split(path)
		entries = []backends.FileInfo{fi}
	case recursive:
		entries, problems, err = engine.ListTree(ctx, t.b, path, "")
	default:
		entries, err = t.b.List(ctx, path)
		for i := range entries {
			_, entries[i].Path = backends.Split(entries[i].Path)
		}
		entries = skipPartials(entries)
	}
	if err != nil {
		return openFailed(fmt.Errorf("ls %s: %w", path, err))
	}
	engine.SortEntries(entries)
	printListing(stdout, entries)
	for _, p := range problems {
		fmt.Fprintf(stderr, "ferry: %s\n", oneLine(p))
	}
	if len(problems) > 0 {
		return &exitError{code: exitFailed, err: errors.New("some entries could not be listed")}
	}
	return nil
}

func skipPartials(es []backends.FileInfo) []backends.FileInfo {
	out := es[:0]
	for _, e := range es {
		if !backends.IsPartialName(e.Path) {
			out = append(out, e)
		}
	}
	return out
}

// printListing writes one line per entry, sizes aligned.
func printListing(w io.Writer, es []backends.FileInfo) {
	width := 1
	for _, e := range es {
		width = max(width, len(fmt.Sprint(e.Size)))
	}
	for _, e := range es {
		fmt.Fprintf(w, "%s %*d %s %s\n", e.Mode.String(), width, e.Size, e.ModTime.Local().Format("2006-01-02 15:04:05"), entryName(e))
	}
}

func entryName(e backends.FileInfo) string {
	switch {
	case e.IsDir():
		return e.Path + "/"
	case e.IsSymlink():
		return fmt.Sprintf("%s -> %q", e.Path, e.LinkTarget)
	}
	return e.Path
}
