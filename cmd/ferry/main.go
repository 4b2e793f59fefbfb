package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ferrysync/ferry/backends"
)

// Exit statuses; see doc.go.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnreachable = 3
)

func main() {
	tuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// tuneGC trades memory for CPU where the user left the runtime's defaults:
// a run's heap is mostly the source and target trees, kept until it ends, so
// collecting at every doubling spends CPU for nothing. The collector runs at
// a fivefold heap instead, and at the latest when the heap nears 300 MiB, so
// large trees stay as small as they would with the default.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(300 << 20)
	}
}

// run executes ferry with args and returns the exit status. It prints
// errors itself, in one line each.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	var quiet *exitError
	if !errors.As(err, &quiet) || quiet.err != nil {
		fmt.Fprintf(stderr, "ferry: %s\n", oneLine(err))
	}
	if code == exitUsage && isFlagError(err) {
		fmt.Fprintln(stderr, "Run 'ferry --help' for usage.")
	}
	return code
}

// globalOptions are the flags every subcommand shares.
type globalOptions struct {
	verbose   bool
	quiet     bool
	logFormat string
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	var g globalOptions
	root := &cobra.Command{
		Use:           "ferry",
		Short:         "Mirror a local directory to local, SFTP and S3 targets",
		SilenceErrors: true,
		SilenceUsage:  true,
		// Without subcommand ferry prints its help.
		Args: cobra.NoArgs,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	pf := root.PersistentFlags()
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "log debug details")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "print only errors, no summary")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(newSyncCmd(&g), newVersionCmd(), newRunCmd(&g), newCheckCmd(), newStatusCmd(), newWatchCmd(&g), newLsCmd(&g), newVersionsCmd(&g), newRestoreCmd(&g))
	return root
}

// exitError carries an exit status; err nil means the message was printed
// already.
type exitError struct {
	code int
	err  error
	flag bool // a flag or argument error: point to --help
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func usageError(err error) error { return &exitError{code: exitUsage, err: err, flag: true} }

func usageErrorf(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

func isFlagError(err error) bool {
	var e *exitError
	return errors.As(err, &e) && e.flag
}

// exitCode maps an error to an exit status: an explicit exitError wins, then
// an unreachable or unauthenticated target (3); anything else, an unusable
// source root included, is 1.
func exitCode(err error) int {
	var e *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &e):
		return e.code
	case errors.Is(err, backends.ErrUnreachable), errors.Is(err, backends.ErrAuth):
		return exitUnreachable
	}
	return exitFailed
}

// oneLine keeps an error message on one line, whatever its causes say.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}
