// Package faultproxy is a TCP proxy on 127.0.0.1 that injects network
// faults between a client under test and a real server: resets, black holes,
// data limits, latency, bandwidth caps and refused connections, globally or
// on one connection, switched while traffic flows. It counts the bytes it
// forwards in each direction, so a test can tell how much a resumed upload
// sent again.
package faultproxy
