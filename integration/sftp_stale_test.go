package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	ferrysftp "github.com/ferrysync/ferry/backends/sftp"
	"github.com/ferrysync/ferry/integration/sshd"
)

// TestSFTPStaleWritesAfterStall is the real network's version of a stalled
// upload: the link stops (black hole) with write requests queued, the stall
// detector gives up on the connection, the retry publishes the file over a
// new connection, and then the old link comes back and delivers what it
// held, as TCP does with data written before a close. The server applies
// those stale requests through the old session's handle, which still points
// at the published file: its mtime becomes "now" (and a stale chmod or
// truncate would change its mode or tear it). The published file must stay
// exactly as the successful upload left it.
func TestSFTPStaleWritesAfterStall(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{})
	p := newProxy(t, srv.Addr())
	kh, err := srv.KnownHostsFor(p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	root := filepath.Join(srv.Root(), "dst")
	b, err := ferrysftp.Dial(context.Background(), ferrysftp.Config{
		Host: "127.0.0.1", Port: addrPort(t, p.Addr()), User: srv.User(), Root: root,
		IdentityFiles: []string{srv.ClientKeyPath()}, KnownHostsFile: kh, SSHConfigFile: "none",
		KeepaliveInterval: time.Minute, StallTimeout: time.Second, Connections: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	// The server may finish the old session before it reads the stale
	// requests; a few rounds make the outcome certain.
	ctx := context.Background()
	for round := range 3 {
		name := fmt.Sprintf("f%d.bin", round)
		src := newMemSource(t, 8<<20)
		conns := p.Conns()
		first := conns[len(conns)-1] // the one connection the backend holds
		// Stop the link once a MiB of the upload went up, with more
		// requests queued behind it.
		base := first.BytesUp()
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			for first.BytesUp()-base < 1<<20 && !first.Closed() {
				time.Sleep(time.Millisecond)
			}
			first.BlackHole()
		}()
		_, err := b.Upload(ctx, name, src)
		<-stopped
		if err == nil {
			t.Fatal("upload through a link that stopped succeeded; want the stall detector to fail it")
		}
		res, err := b.Upload(ctx, name, src)
		if err != nil {
			t.Fatalf("retry over a new connection: %v", err)
		}
		final := filepath.Join(root, name)
		before, err := os.Stat(final)
		if err != nil {
			t.Fatal(err)
		}

		// The old link comes back and delivers what it held.
		first.Pass()
		select {
		case <-first.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the old connection did not end after its link came back")
		}
		time.Sleep(200 * time.Millisecond) // let the server's old session finish what it read
		after, err := os.Stat(final)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(final)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: retry resumed from %d and sent %d; published mtime %v mode %v; after the old link delivered: mtime %v mode %v size %d",
			round, res.Resumed, res.Sent, before.ModTime(), before.Mode(), after.ModTime(), after.Mode(), after.Size())
		if !after.ModTime().Equal(src.ModTime()) || after.Mode() != before.Mode() || after.Size() != src.Size() || !bytes.Equal(got, src.data) {
			t.Fatalf("round %d: the published file changed after the old link delivered its stale requests: mtime %v -> %v (source %v), mode %v -> %v, size %d -> %d, content equal: %v",
				round, before.ModTime(), after.ModTime(), src.ModTime(), before.Mode(), after.Mode(), before.Size(), after.Size(), bytes.Equal(got, src.data))
		}
	}
}
