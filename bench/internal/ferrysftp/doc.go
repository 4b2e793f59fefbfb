// Package main is the ferrysftp command: it runs ferry's engine against an
// SFTP target directly (engine.Sync with backends/sftp and their defaults,
// as `ferry sync SRC sftp://...` wires them), for benchmark experiments that
// need knobs the CLI does not expose: a CPU profile
// (BENCH_FERRY_CPUPROFILE), the chunk size and the number of connections.
//
//	ferrysftp --identity KEY --known-hosts FILE SOURCE sftp://user@host:port/path
package main
