package sftp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/pkg/sftp"
)

// SFTP version 3 (draft-ietf-secsh-filexfer-02) packet types and flags,
// for the requests ferry's own session sends.
const (
	fxpInit     = 1
	fxpVersion  = 2
	fxpOpen     = 3
	fxpClose    = 4
	fxpWrite    = 6
	fxpFstat    = 8
	fxpFsetstat = 10
	fxpRemove   = 13
	fxpExtended = 200
	fxpStatus   = 101
	fxpHandle   = 102
	fxpAttrs    = 105

	fxfRead  = 0x01
	fxfWrite = 0x02
	fxfCreat = 0x08
	fxfExcl  = 0x20

	attrSize   = 0x01
	attrUIDGID = 0x02
	attrPerm   = 0x04
	attrTimes  = 0x08

	fxOK               = 0
	fxEOF              = 1
	fxNoSuchFile       = 2
	fxPermissionDenied = 3
)

// maxRawPacket bounds a packet read from the server: the largest answer
// ferry asks for is a status or a file's attributes.
const maxRawPacket = 256 << 10

func putU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func putU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
func putStr(b []byte, s string) []byte { return append(putU32(b, uint32(len(s))), s...) }

// beginPacket appends the length placeholder, the type and the request id;
// endPacket fills the length in once the body is appended.
func beginPacket(b []byte, typ byte, id uint32) ([]byte, int) {
	start := len(b)
	b = append(b, 0, 0, 0, 0, typ)
	return putU32(b, id), start
}

func endPacket(b []byte, start int) []byte {
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b
}

// rawAttrs is the part of SFTP file attributes ferry sets or reads.
type rawAttrs struct {
	flags uint32
	size  uint64
	perm  uint32
	atime uint32
	mtime uint32
}

func (a rawAttrs) append(b []byte) []byte {
	b = putU32(b, a.flags)
	if a.flags&attrSize != 0 {
		b = putU64(b, a.size)
	}
	if a.flags&attrPerm != 0 {
		b = putU32(b, a.perm)
	}
	if a.flags&attrTimes != 0 {
		b = putU32(putU32(b, a.atime), a.mtime)
	}
	return b
}

var errShortPacket = errors.New("sftp: short packet from server")

// decoder decodes the fields of one packet body.
type decoder struct {
	b   []byte
	err error
}

func (r *decoder) u32() uint32 {
	if len(r.b) < 4 {
		r.err = errShortPacket
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *decoder) u64() uint64 {
	if len(r.b) < 8 {
		r.err = errShortPacket
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *decoder) str() string {
	n := r.u32()
	if r.err != nil || uint32(len(r.b)) < n {
		r.err = errShortPacket
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *decoder) attrs() rawAttrs {
	var a rawAttrs
	a.flags = r.u32()
	if a.flags&attrSize != 0 {
		a.size = r.u64()
	}
	if a.flags&attrUIDGID != 0 {
		r.u32()
		r.u32()
	}
	if a.flags&attrPerm != 0 {
		a.perm = r.u32()
	}
	if a.flags&attrTimes != 0 {
		a.atime = r.u32()
		a.mtime = r.u32()
	}
	// Extended attributes may follow; nothing ferry reads comes after.
	return a
}

// statusErr turns an SSH_FXP_STATUS body into nil (OK) or an error of the
// same kinds pkg/sftp's client returns, so the classification of errors is
// the same whichever session a request went over.
func statusErr(body []byte) error {
	r := &decoder{b: body}
	code := r.u32()
	msg := r.str()
	if r.err != nil && code == 0 {
		return r.err
	}
	switch code {
	case fxOK:
		return nil
	case fxEOF:
		return io.EOF
	case fxNoSuchFile:
		return os.ErrNotExist
	case fxPermissionDenied:
		return os.ErrPermission
	}
	if msg == "" {
		return &sftp.StatusError{Code: code}
	}
	return fmt.Errorf("%w: %s", &sftp.StatusError{Code: code}, msg)
}

// readPacket reads one length-prefixed packet into a new buffer.
func readPacket(r io.Reader, hdr []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 1 || n > maxRawPacket {
		return nil, fmt.Errorf("sftp: packet of %d bytes from server", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}
