// Package integration holds ferry's end-to-end tests: the real binary,
// built once per run, against real targets (local directories, an OpenSSH
// sshd started by the tests on 127.0.0.1) with faults injected by a proxy
// and by killing processes. The fixtures live in subpackages: sshd,
// faultproxy, ferrybin and treecheck.
//
// Set FERRY_TEST_SEED to replay a randomised test with the seed it printed,
// FERRY_TEST_BUILD_FLAGS=-race to test a race-detecting ferry, and
// FERRY_TEST_BINARY to test a ferry built elsewhere. With CI=true a missing
// sshd fails the tests that need it instead of skipping them.
package integration
