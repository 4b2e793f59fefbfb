// Package engine turns a source directory and a target into a synced target:
// it scans the source, lists the target, plans the operations with a pure
// planner, and runs them through a pool of workers with per-file retry,
// bandwidth limiting and progress reporting.
package engine
