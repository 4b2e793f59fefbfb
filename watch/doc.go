// Package watch turns filesystem events under one directory into debounced
// path hints for the sync engine. It watches every directory of the tree
// (inotify has no recursive watch), waits for bursts to end and for files to
// settle, and never loses a change silently: a lost event becomes a rescan
// hint, and a subtree that cannot be watched is polled instead. Hints say
// where to look, not what happened; the engine stats the path itself.
package watch
