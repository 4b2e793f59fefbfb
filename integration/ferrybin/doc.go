// Package ferrybin builds the ferry command once per test process and runs
// it as a child process, so integration tests exercise the real binary:
// its flags, exit codes, signal handling and crash behaviour.
package ferrybin
