// Package state keeps, per job and target, what the target holds (path,
// size, mtime, mode, link target, and a hash where one is known) in an
// embedded bbolt file, so that a restarted run can plan without listing the
// whole target.
//
// The store is written after the target: a record is added only once the
// operation that published it has returned, in batches, so a crash may lose
// the newest records but never holds one for a file that is not there. The
// paths a run is about to touch are written first as an "in flight" set;
// after a crash only those are checked again on the target. A file that is
// corrupt, of another format version, or made for another target is moved
// aside and rebuilt from a listing, never trusted.
//
// Records are keyed so that their byte order is the engine's path order: a
// run reads them with a Reader, one at a time beside its scan of the
// source, and holds none of them for long. A full listing rebuilds them
// the same way (Rebuild): its entries, in path order, are walked beside the
// old records, and only what changed is written.
package state
