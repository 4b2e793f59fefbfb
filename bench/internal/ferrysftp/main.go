package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/ferrysync/ferry/backends/sftp"
	"github.com/ferrysync/ferry/engine"
)

func main() {
	identity := flag.String("identity", "", "private key file")
	knownHosts := flag.String("known-hosts", "", "known_hosts file")
	cpuprofile := flag.String("cpuprofile", os.Getenv("BENCH_FERRY_CPUPROFILE"), "write a CPU profile here (default $BENCH_FERRY_CPUPROFILE)")
	chunk := flag.Int("chunk-size", 0, "bytes per write request (0: the backend's default); for experiments")
	conns := flag.Int("connections", 0, "connection pool size (0: the backend's default); for experiments")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "ferrysftp: cpu profile:", err)
			os.Exit(1)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: ferrysftp --identity KEY --known-hosts FILE SOURCE sftp://...")
		os.Exit(2)
	}
	if err := run(*identity, *knownHosts, flag.Arg(0), flag.Arg(1), *chunk, *conns); err != nil {
		fmt.Fprintln(os.Stderr, "ferrysftp:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(identity, knownHosts, src, target string, chunk, conns int) error {
	t, err := sftp.ParseURL(target)
	if err != nil {
		return err
	}
	cfg := t.Config()
	cfg.IdentityFiles = []string{identity}
	cfg.KnownHostsFile = knownHosts
	cfg.SSHConfigFile = "none"
	cfg.ChunkSize, cfg.Connections = chunk, conns
	ctx := context.Background()
	b, err := sftp.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer b.Close()
	rep, err := engine.Sync(ctx, engine.SyncOptions{Source: src, Target: b, MaxDelete: -1})
	if err != nil {
		return err
	}
	if rep.Failed() {
		return fmt.Errorf("sync failed: %d problems, first: %v", len(rep.Problems), firstProblem(rep))
	}
	return nil
}

func firstProblem(rep engine.Report) any {
	if len(rep.Problems) > 0 {
		return rep.Problems[0]
	}
	return rep.Err
}
