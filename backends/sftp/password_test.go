package sftp

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// lockedBuffer collects log output from concurrent connections.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestPasswordLogin(t *testing.T) {
	const pw = "correct-horse-7f3a"
	const wrong = "wrong-battery-91c2"
	tests := []struct {
		name string
		srv  serverOpts
		// key: "authorized" (the env's key), "stranger" (refused) or
		// "encrypted" (no passphrase given, no agent).
		key      string
		password string
		// wantErr is the class of the Dial error; nil means a login.
		wantErr  error
		errNames string // a word the error must hold
		// wantMethod is the method the server must have seen, notMethod
		// one it must not have.
		wantMethod, notMethod string
	}{
		{name: "password after a refused key", srv: serverOpts{password: pw}, key: "stranger", password: pw,
			wantMethod: "publickey"},
		{name: "keyboard-interactive with a banner round", srv: serverOpts{password: pw, kbdInteractive: true}, key: "stranger",
			password: pw, wantMethod: "keyboard-interactive"},
		{name: "an accepted key keeps the password unsent", srv: serverOpts{password: pw}, key: "authorized", password: wrong,
			wantMethod: "publickey", notMethod: "password"},
		{name: "encrypted key without passphrase falls to the password", srv: serverOpts{password: pw}, key: "encrypted",
			password: pw, wantMethod: "password"},
		{name: "wrong password", srv: serverOpts{password: pw}, key: "stranger", password: wrong,
			wantErr: backends.ErrAuth, errNames: "password", wantMethod: "password"},
		{name: "wrong password over keyboard-interactive", srv: serverOpts{password: pw, kbdInteractive: true}, key: "stranger",
			password: wrong, wantErr: backends.ErrAuth, errNames: "keyboard-interactive", wantMethod: "keyboard-interactive"},
		{name: "visible question is not answered with the password",
			srv: serverOpts{password: pw, kbdInteractive: true, kbdQuestions: []kbdQuestion{{"Username: ", true}}},
			key: "stranger", password: pw, wantErr: backends.ErrAuth, errNames: "Username"},
		{name: "two questions at once are not answered",
			srv: serverOpts{password: pw, kbdInteractive: true, kbdQuestions: []kbdQuestion{{"Password: ", false}, {"Code: ", false}}},
			key: "stranger", password: pw, wantErr: backends.ErrAuth, errNames: "2 questions"},
		{name: "no password, refused key", srv: serverOpts{password: pw}, key: "stranger",
			wantErr: backends.ErrAuth, notMethod: "password"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.srv)
			cfg := e.config()
			switch tc.key {
			case "stranger":
				cfg.IdentityFiles = []string{newClientKey(t, "").file}
			case "encrypted":
				cfg.IdentityFiles = []string{newClientKey(t, "unused").file}
			}
			cfg.Password = tc.password
			var logs lockedBuffer
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			b, err := Dial(ctx, cfg)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				mustUpload(t, b, "f", newSource(100, 1))
				b.Close()
				if _, ok := e.srv.users.Load("tester"); !ok {
					t.Error("the server accepted no login")
				}
			} else {
				if err == nil {
					b.Close()
					t.Fatal("Dial succeeded, want an error")
				}
				wantErr(t, err, tc.wantErr)
				if !backends.IsPermanent(err) {
					t.Errorf("a refused login should be permanent: %v", err)
				}
				if !strings.Contains(err.Error(), tc.errNames) {
					t.Errorf("error %q does not name %q", err, tc.errNames)
				}
				if _, ok := e.srv.users.Load("tester"); ok {
					t.Error("the server accepted a login")
				}
			}
			for _, secret := range []string{pw, wrong} {
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Errorf("the error holds a password: %v", err)
				}
				if strings.Contains(logs.String(), secret) {
					t.Errorf("the log holds a password:\n%s", logs.String())
				}
			}
			if tc.wantMethod != "" && e.srv.methodCount(tc.wantMethod) == 0 {
				t.Errorf("the server saw no %s attempt", tc.wantMethod)
			}
			if tc.notMethod != "" && e.srv.methodCount(tc.notMethod) != 0 {
				t.Errorf("the server saw %d %s attempts, want none", e.srv.methodCount(tc.notMethod), tc.notMethod)
			}
		})
	}
}

func TestAnswerPrompts(t *testing.T) {
	tests := []struct {
		name      string
		questions []string
		echos     []bool
		want      string // the one answer; "" with wantErr
		wantErr   bool
	}{
		{name: "banner", want: ""},
		{name: "hidden question", questions: []string{"Password: "}, echos: []bool{false}, want: "pw"},
		{name: "visible question", questions: []string{"Login: "}, echos: []bool{true}, wantErr: true},
		{name: "two questions", questions: []string{"a", "b"}, echos: []bool{false, false}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := answerPrompts("pw")("u", "", tc.questions, tc.echos)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("answers %q, want an error", got)
				}
				if strings.Contains(err.Error(), "pw") {
					t.Errorf("the error holds the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, ",") != tc.want {
				t.Errorf("answers %q, want %q", got, tc.want)
			}
		})
	}
	ask := answerPrompts("pw")
	if _, err := ask("u", "", []string{"Password: "}, []bool{false}); err != nil {
		t.Fatal(err)
	}
	if got, err := ask("u", "", []string{"Password: "}, []bool{false}); err == nil {
		t.Errorf("a second password round was answered with %q", got)
	}
}

func TestPassphraseField(t *testing.T) {
	const pass = "sesame-5d1e"
	key := newClientKey(t, pass)
	e := newEnv(t, serverOpts{})
	srv := startServer(t, serverOpts{clientKey: key.pub})
	cfg := e.config()
	host, port, _ := strings.Cut(srv.addr, ":")
	cfg.Host = host
	fmt.Sscan(port, &cfg.Port)
	cfg.Root = srv.dir
	cfg.KnownHostsFile = writeKnownHosts(t, srv.addr, srv.hostKeys[0].PublicKey())
	cfg.IdentityFiles = []string{key.file}
	// Decrypting costs seconds under -race (bcrypt KDF): one try each.
	tests := []struct {
		name       string
		passphrase string
		env        string
		wantOK     bool
	}{
		{name: "Passphrase wins over a wrong PassphraseEnv", passphrase: pass, env: "not-it-0b7c", wantOK: true},
		{name: "wrong Passphrase is refused though the env holds the right one", passphrase: "not-it-0b7c", env: pass},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := cfg
			cfg.Passphrase = tc.passphrase
			cfg.PassphraseEnv = "FERRY_TEST_PASSPHRASE"
			t.Setenv("FERRY_TEST_PASSPHRASE", tc.env)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			b, err := Dial(ctx, cfg)
			if tc.wantOK {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				b.Close()
				return
			}
			if err == nil {
				b.Close()
				t.Fatal("Dial succeeded, want an error")
			}
			wantErr(t, err, backends.ErrAuth)
			for _, want := range []string{key.file, "passphrase given"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			for _, secret := range []string{tc.passphrase, tc.env} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error holds a passphrase: %v", err)
				}
			}
		})
	}
}
