package main

import (
	"github.com/spf13/cobra"

	"github.com/ferrysync/ferry/cmd/ferry/config"
)

func newCheckCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "check -c FILE",
		Short: "Check a config file and list its jobs and targets",
		Long: `Load the config file as ferry run would, without touching any source or
target. Every problem is printed on its own line with file, line, column and
key, and the exit status is 2; a good file prints its jobs and targets.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return usageErrorf("check needs the config file: -c FILE")
			}
			if err := config.Check(cmd.OutOrStdout(), path); err != nil {
				return configError(cmd.ErrOrStderr(), err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "the config `file` (ferry.yaml)")
	return cmd
}
