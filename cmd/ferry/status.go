package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrysync/ferry/cmd/ferry/config"
	"github.com/ferrysync/ferry/engine"
)

func newStatusCmd() *cobra.Command {
	var addr, path string
	cmd := &cobra.Command{
		Use:   "status [--addr HOST:PORT | -c FILE]",
		Short: "Show the jobs of a running ferry run",
		Long: `Read the /status of a running 'ferry run' (its metrics_addr, given with
--addr or read from the config file) and print one line per job and target.
Exit status 3 when it cannot be reached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr == "" && path != "" {
				cfg, err := config.Load(path)
				if err != nil {
					return configError(cmd.ErrOrStderr(), err)
				}
				if cfg.MetricsAddr == "" {
					return usageErrorf("%s sets no metrics_addr: ferry run serves no status", path)
				}
				addr = cfg.MetricsAddr
			}
			if addr == "" {
				return usageErrorf("status needs --addr HOST:PORT or -c FILE")
			}
			states, err := fetchStatus(cmd.Context(), addr)
			if err != nil {
				return &exitError{code: exitUnreachable, err: err}
			}
			printStatus(cmd.OutOrStdout(), states, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "`host:port` of the metrics_addr of the running ferry")
	cmd.Flags().StringVarP(&path, "config", "c", "", "read metrics_addr from this config `file`")
	return cmd
}

// fetchStatus reads /status from a running ferry.
func fetchStatus(ctx context.Context, addr string) ([]engine.TargetState, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return nil, fmt.Errorf("status %s: %w", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s: %s", addr, resp.Status)
	}
	var states []engine.TargetState
	if err := json.NewDecoder(resp.Body).Decode(&states); err != nil {
		return nil, fmt.Errorf("status %s: %w", addr, err)
	}
	return states, nil
}

// printStatus prints one line per job and target; times are relative to now.
func printStatus(w io.Writer, states []engine.TargetState, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tTARGET\tKIND\tSTATE\tLAST RUN\tLAST SUCCESS\tNEXT RUN\tFILES\tBYTES\tQUEUED\tERROR")
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		d := now.Sub(t).Round(time.Second)
		if d < 0 {
			return "in " + (-d).String()
		}
		return d.String() + " ago"
	}
	for _, s := range states {
		kind := s.Kind
		if kind == "" {
			kind = "-"
		}
		errText := s.LastError
		if errText == "" {
			errText = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", s.Job, s.Target, kind, s.State,
			ago(s.LastRun), ago(s.LastSuccess), ago(s.NextRun), s.Files, formatBytes(s.Bytes), s.Queued, errText)
	}
	tw.Flush()
}
