// Package backendtest is the conformance suite every ferry backend runs:
// Run(t, newBackend, opts) holds the backends.Backend contract as tests
// (classified errors, atomic and resumable uploads, cancellation, odd names,
// path safety, capabilities). It also exports the test Sources (in-memory,
// failing after N bytes, ending early, changing) and small helpers that
// engine and backend tests reuse.
package backendtest
