package sftp

import (
	"bytes"
	"testing"
)

// packet builds one framed answer of type typ for request id from body.
func fuzzPacket(typ byte, id uint32, body []byte) []byte {
	b, start := beginPacket(nil, typ, id)
	return endPacket(append(b, body...), start)
}

// FuzzParseResponse feeds arbitrary bytes, as a hostile server could send
// them, to the packet reader and the answer decoders: none may panic, and
// a length field may never make ferry allocate past maxRawPacket or read
// past the packet it came in.
func FuzzParseResponse(f *testing.F) {
	status := putStr(putStr(putU32(nil, 4), "Failure"), "")
	handle := putStr(nil, "h1")
	attrs := rawAttrs{flags: attrSize | attrPerm | attrTimes, size: 1 << 40, perm: 0o600, atime: 1, mtime: 2}.append(nil)
	version := putStr(putStr(putU32(nil, 3), "posix-rename@openssh.com"), "1")
	for _, seed := range [][]byte{
		fuzzPacket(fxpStatus, 1, status),
		fuzzPacket(fxpHandle, 2, handle),
		fuzzPacket(fxpAttrs, 3, attrs),
		fuzzPacket(fxpAttrs, 4, putU32(nil, attrSize|attrUIDGID|attrPerm|attrTimes)), // flags, no fields
		fuzzPacket(fxpHandle, 5, putU32(nil, 0xffffffff)),                            // string longer than the packet
		fuzzPacket(fxpVersion, 0, version),
		{0xff, 0xff, 0xff, 0xff, fxpStatus},
		{0, 0, 0, 0},
		append(fuzzPacket(fxpStatus, 1, putU32(nil, 0)), fuzzPacket(fxpHandle, 2, handle)...),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var hdr [4]byte
		for {
			b, err := readPacket(r, hdr[:])
			if err != nil {
				if b != nil {
					t.Fatalf("readPacket returned %d bytes with %v", len(b), err)
				}
				return
			}
			if len(b) > maxRawPacket {
				t.Fatalf("packet of %d bytes accepted, limit %d", len(b), maxRawPacket)
			}
			versionExtensions(b[1:])
			if len(b) < 5 {
				continue
			}
			call := &rawCall{done: make(chan struct{}), typ: b[0], body: b[5:]}
			close(call.done)
			serr := call.status()
			if b[0] != fxpStatus && serr == nil {
				t.Fatalf("answer of type %d taken for a status", b[0])
			}
			h, herr := call.handle()
			if herr == nil && (b[0] != fxpHandle || len(h) > len(call.body)-4) {
				t.Fatalf("handle %q of %d bytes from a body of %d (type %d)", h, len(h), len(call.body), b[0])
			}
			if _, aerr := call.attrs(); aerr == nil && b[0] != fxpAttrs {
				t.Fatalf("answer of type %d taken for attributes", b[0])
			}
		}
	})
}

// TestParseResponseBounds checks, without fuzzing, the answers the fuzz
// target must refuse.
func TestParseResponseBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkt  []byte
		want func(call *rawCall) error
	}{
		{"length over the limit", putU32(nil, maxRawPacket+1), nil},
		{"zero length", putU32(nil, 0), nil},
		{"handle longer than its packet", fuzzPacket(fxpHandle, 1, putU32(nil, 0xffffffff)),
			func(c *rawCall) error { _, err := c.handle(); return err }},
		{"attributes cut short", fuzzPacket(fxpAttrs, 1, putU32(nil, attrSize)),
			func(c *rawCall) error { _, err := c.attrs(); return err }},
		{"status without a code", fuzzPacket(fxpStatus, 1, nil), (*rawCall).status},
		{"handle where a status is due", fuzzPacket(fxpHandle, 1, putStr(nil, "h")), (*rawCall).status},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr [4]byte
			b, err := readPacket(bytes.NewReader(tc.pkt), hdr[:])
			if tc.want == nil {
				if err == nil {
					t.Fatalf("readPacket accepted %x", tc.pkt[:4])
				}
				return
			}
			if err != nil {
				t.Fatalf("readPacket: %v", err)
			}
			call := &rawCall{done: make(chan struct{}), typ: b[0], body: b[5:]}
			close(call.done)
			if err := tc.want(call); err == nil {
				t.Fatal("decoded without an error")
			}
		})
	}
}
