// Package engine turns a source directory and its targets into synced
// targets. A one-shot run (Sync, SyncTargets) scans the source, lists each
// target, plans the operations with the pure planner (MakePlan) and runs them
// through a pool of workers (Execute) with per-file retry, bandwidth limiting
// and progress reporting. A long-running Job does a full sync first and then
// follows the watcher's hints, with a queue, retry and circuit breaker per
// target, so a dead target catches up later without holding up the others.
// Backup mode keeps replaced and deleted files as versions (Versions).
package engine
