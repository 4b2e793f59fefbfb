// Package integration holds ferry's end-to-end tests: the real binary,
// built once per run, against real targets (local directories, an OpenSSH
// sshd started by the tests on 127.0.0.1) with faults injected by a proxy
// and by killing processes. The fixtures live in subpackages: sshd,
// faultproxy, ferrybin and treecheck.
//
// Set FERRY_TEST_SEED to replay a randomised test with the seed it printed.
package integration
