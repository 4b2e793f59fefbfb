// Package treecheck builds seeded test trees and checks what ferry left in a
// target: whether two trees are equal (names, kinds, sizes, content, mtimes,
// modes, symlinks), whether any file at a final name is torn, and which
// partial files remain. The integration tests of every backend use it.
package treecheck
