// Package bench measures ferry side by side with the tools people would use
// instead (rsync, rclone, OpenSSH sftp) on the same generated data in one run.
// The exported helpers generate seeded trees and incompressible files, build
// the ferry binary once, and run a command while recording its wall time and
// peak memory; the benchmarks themselves live in the _test files and only run
// under `go test -bench`. See README.md for how to run them and what each
// figure means.
package bench
