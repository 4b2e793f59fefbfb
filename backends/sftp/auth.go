package sftp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/ferrysync/ferry/backends"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// hostKeys checks server keys against the known_hosts files of one target.
type hostKeys struct {
	files  []string // all configured files; files[0] receives new keys
	db     *knownhosts.HostKeyDB
	accept bool
	mu     sync.Mutex // serialises appends to files[0]
}

func newHostKeys(files []string, accept bool) (*hostKeys, error) {
	hk := &hostKeys{files: files, accept: accept}
	var present []string
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			present = append(present, f)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("known_hosts %s: %w", f, err)
		}
	}
	if len(present) > 0 {
		db, err := knownhosts.NewDB(present...)
		if err != nil {
			return nil, fmt.Errorf("known_hosts %s: %w", strings.Join(present, ", "), err)
		}
		hk.db = db
	}
	return hk, nil
}

// algorithms returns the host key algorithms of addr's own known_hosts
// entries, so that the server is asked for a key type we can check (a server
// with several key types otherwise offers one we do not hold: key mismatch).
// It returns nil for an unknown host, leaving the defaults.
func (hk *hostKeys) algorithms(addr string) []string {
	db := hk.getDB()
	if db == nil {
		return nil
	}
	algos := db.HostKeyAlgorithms(addr)
	if !slices.ContainsFunc(algos, isCertAlgo) {
		return algos
	}
	// A host under a @cert-authority pattern may have no certificate: its
	// plain key, looked up or trusted on first use, must still be offered,
	// after the certificates, as OpenSSH offers it.
	for _, a := range ssh.SupportedAlgorithms().HostKeys {
		if !isCertAlgo(a) && !slices.Contains(algos, a) {
			algos = append(algos, a)
		}
	}
	return algos
}

func isCertAlgo(a string) bool { return strings.Contains(a, "-cert-v01@openssh.com") }

func (hk *hostKeys) getDB() *knownhosts.HostKeyDB {
	hk.mu.Lock()
	defer hk.mu.Unlock()
	return hk.db
}

// callback returns the ssh.HostKeyCallback for one dial. The error it
// returns (also stored in *failed, since the handshake may reword it) wraps
// backends.ErrAuth and names the fingerprint and the file to fix.
func (hk *hostKeys) callback(log func(msg string, args ...any), failed *error) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := hk.check(hostname, remote, key, log)
		if err != nil {
			*failed = err
		}
		return err
	}
}

func (hk *hostKeys) check(hostname string, remote net.Addr, key ssh.PublicKey, log func(string, ...any)) error {
	var kerr *xknownhosts.KeyError
	certNote := ""
	if db := hk.getDB(); db != nil {
		err := db.HostKeyCallback()(hostname, remote, key)
		if err == nil {
			return nil
		}
		if cert, ok := key.(*ssh.Certificate); ok && !errors.As(err, &kerr) {
			// As OpenSSH does, a host certificate that no @cert-authority
			// line vouches for is judged by the plain key it certifies.
			certNote = fmt.Sprintf(" (the server's certificate for it is signed by CA %s, which no @cert-authority line trusts for this host)",
				ssh.FingerprintSHA256(cert.SignatureKey))
			key = cert.Key
			if err = db.HostKeyCallback()(hostname, remote, key); err == nil {
				return nil
			}
		}
		if !errors.As(err, &kerr) {
			return fmt.Errorf("host key of %s%s: %w: %w", hostname, certNote, backends.ErrAuth, err)
		}
		kerr.Want = plainKeys(db, hostname, kerr.Want)
	}
	fp := ssh.FingerprintSHA256(key)
	where := knownhosts.Normalize(hostname)
	if kerr != nil && len(kerr.Want) > 0 {
		w := kerr.Want[0]
		return fmt.Errorf("HOST KEY CHANGED for %s: the server offered %s key %s, but %s line %d holds a different key (%s); "+
			"this may be an attack. If the server's key was replaced on purpose, check the new fingerprint and "+
			"remove line %d from %s: %w",
			where, key.Type(), fp, w.Filename, w.Line, ssh.FingerprintSHA256(w.Key), w.Line, w.Filename, backends.ErrAuth)
	}
	if !hk.accept {
		return fmt.Errorf("host key of %s is unknown: %s key %s is not in %s%s; check the fingerprint with the server's "+
			"administrator and add it to %s (or allow trust on first use): %w",
			where, key.Type(), fp, strings.Join(hk.files, ", "), certNote, hk.files[0], backends.ErrAuth)
	}
	if err := hk.record(hostname, remote, key); err != nil {
		return fmt.Errorf("host key of %s: recording it in %s: %w: %w", where, hk.files[0], backends.ErrAuth, err)
	}
	log("trusting new host key on first use", "host", where, "type", key.Type(), "fingerprint", fp, "known_hosts", hk.files[0])
	return nil
}

// plainKeys drops from want the keys of @cert-authority lines, which
// x/crypto's known_hosts reports among a host's keys: a CA's key is no key
// the host was known by, and a host key that differs from it has not
// changed.
func plainKeys(db *knownhosts.HostKeyDB, hostname string, want []xknownhosts.KnownKey) []xknownhosts.KnownKey {
	cas := map[string]bool{}
	for _, k := range db.HostKeys(hostname) {
		if k.Cert {
			cas[string(k.Marshal())] = true
		}
	}
	if len(cas) == 0 {
		return want
	}
	var out []xknownhosts.KnownKey
	for _, w := range want {
		if !cas[string(w.Key.Marshal())] {
			out = append(out, w)
		}
	}
	return out
}

func (hk *hostKeys) record(hostname string, remote net.Addr, key ssh.PublicKey) error {
	hk.mu.Lock()
	defer hk.mu.Unlock()
	f := hk.files[0]
	if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
		return err
	}
	w, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := knownhosts.WriteKnownHost(w, hostname, remote, key); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	// Later dials of this process must see the key too.
	db, err := knownhosts.NewDB(existing(hk.files)...)
	if err != nil {
		return err
	}
	hk.db = db
	return nil
}

func existing(files []string) []string {
	var out []string
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			out = append(out, f)
		}
	}
	return out
}

// keys are the parsed identity files of a target, loaded once per Backend
// (decrypting a key costs a noticeable fraction of a second).
type keys struct {
	signers []ssh.Signer
	// ids are the public keys of the identity files, loaded or not (an
	// encrypted key's is in its file, or in FILE.pub), for IdentitiesOnly.
	ids map[string]bool
	// skipped names encrypted keys left to ssh-agent, for the error when
	// authentication fails.
	note string
}

// loadKeys parses the identity files. An encrypted key without a passphrase
// is skipped when ssh-agent may hold it, and is an error naming the file
// and where a passphrase comes from when it is the only way in.
func loadKeys(r *resolved) (*keys, error) {
	k := &keys{ids: map[string]bool{}}
	var skipped []string
	pass, from := r.Passphrase, "the passphrase given"
	if pass == "" && r.PassphraseEnv != "" {
		pass, from = os.Getenv(r.PassphraseEnv), "the passphrase from $"+r.PassphraseEnv
	}
	for _, f := range r.identities {
		pem, err := os.ReadFile(f)
		if err != nil {
			if !r.explicitID || errors.Is(err, os.ErrNotExist) && len(r.identities) > 1 {
				continue
			}
			return nil, fmt.Errorf("identity %s: %w: %w", f, backends.ErrAuth, err)
		}
		k.notePub(f)
		s, err := ssh.ParsePrivateKey(pem)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) && missing.PublicKey != nil {
			k.ids[string(missing.PublicKey.Marshal())] = true
		}
		switch {
		case errors.As(err, &missing) && pass == "":
			skipped = append(skipped, f)
			continue
		case errors.As(err, &missing):
			if s, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(pass)); err != nil {
				// The parser's error names the failure, never the passphrase.
				return nil, fmt.Errorf("identity %s: decrypting with %s: %w: %w", f, from, backends.ErrAuth, err)
			}
		case err != nil:
			return nil, fmt.Errorf("identity %s: %w: %w", f, backends.ErrAuth, err)
		}
		k.signers = append(k.signers, s)
		k.ids[string(s.PublicKey().Marshal())] = true
	}
	certs, err := loadCerts(r)
	if err != nil {
		return nil, err
	}
	k.signers = withCerts(k.signers, certs)
	if len(skipped) > 0 {
		how := "set Passphrase, or PassphraseEnv to the name of an environment variable (e.g. FERRY_SSH_PASSPHRASE) holding the passphrase"
		if r.PassphraseEnv != "" {
			how = fmt.Sprintf("put the passphrase in the environment variable %s", r.PassphraseEnv)
		}
		k.note = fmt.Sprintf("identity %s is encrypted and no passphrase was given: %s, or add the key to ssh-agent (ssh-add)",
			strings.Join(skipped, ", "), how)
		if os.Getenv("SSH_AUTH_SOCK") == "" && len(k.signers) == 0 && r.Password == "" {
			return nil, fmt.Errorf("%s: %w", k.note, backends.ErrAuth)
		}
	}
	return k, nil
}

// notePub notes the public key in FILE.pub beside identity f, if any.
func (k *keys) notePub(f string) {
	data, err := os.ReadFile(f + ".pub")
	if err != nil {
		return
	}
	if pub, _, _, _, err := ssh.ParseAuthorizedKey(data); err == nil {
		k.ids[string(pub.Marshal())] = true
	}
}

// ownOnly keeps of signers those of the identity files' keys, or of
// certificates for them: what IdentitiesOnly lets ssh-agent offer.
func (k *keys) ownOnly(signers []ssh.Signer) []ssh.Signer {
	var out []ssh.Signer
	for _, s := range signers {
		pub := s.PublicKey()
		if c, ok := pub.(*ssh.Certificate); ok {
			pub = c.Key
		}
		if k.ids[string(pub.Marshal())] {
			out = append(out, s)
		}
	}
	return out
}

// loadCerts reads the user certificates that go with the identities, as
// OpenSSH finds them: the SSH config's CertificateFile entries (which must
// exist and hold a certificate) and FILE-cert.pub beside each identity FILE
// (used where it exists and holds one).
func loadCerts(r *resolved) ([]*ssh.Certificate, error) {
	var certs []*ssh.Certificate
	read := func(f string, named bool) error {
		data, err := os.ReadFile(f)
		if err != nil {
			if !named && errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("certificate %s: %w: %w", f, backends.ErrAuth, err)
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
		if err != nil {
			if !named {
				return nil // as OpenSSH, which skips a broken one it only guessed
			}
			return fmt.Errorf("certificate %s: %w: %w", f, backends.ErrAuth, err)
		}
		cert, ok := pub.(*ssh.Certificate)
		if !ok {
			if !named {
				return nil
			}
			return fmt.Errorf("certificate %s: %w: it holds a plain %s key, not a certificate", f, backends.ErrAuth, pub.Type())
		}
		certs = append(certs, cert)
		return nil
	}
	for _, f := range r.certFiles {
		if err := read(f, true); err != nil {
			return nil, err
		}
	}
	for _, f := range r.identities {
		if err := read(f+"-cert.pub", false); err != nil {
			return nil, err
		}
	}
	return certs, nil
}

// withCerts puts a certificate signer before each key that a certificate
// certifies, the order OpenSSH offers them in. A certificate whose key is
// not among the signers is left to ssh-agent, which offers the
// certificates it holds itself.
func withCerts(signers []ssh.Signer, certs []*ssh.Certificate) []ssh.Signer {
	if len(certs) == 0 {
		return signers
	}
	var out []ssh.Signer
	for _, s := range signers {
		pub := s.PublicKey().Marshal()
		for _, c := range certs {
			if bytes.Equal(c.Key.Marshal(), pub) {
				if cs, err := ssh.NewCertSigner(c, s); err == nil {
					out = append(out, cs)
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// authMethods offers the loaded keys, then ssh-agent's, then the password
// (plain, then keyboard-interactive), the order OpenSSH tries them in. The
// closer releases the agent connection once the handshake is over.
func (k *keys) authMethods(r *resolved) (methods []ssh.AuthMethod, closer func(), err error) {
	closer = func() {}
	if len(k.signers) > 0 {
		methods = append(methods, ssh.PublicKeys(k.signers...))
	}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if c, derr := net.Dial("unix", sock); derr == nil {
			closer = func() { c.Close() }
			signers := agent.NewClient(c).Signers
			if r.identitiesOnly {
				// As OpenSSH: the agent signs only for the identity files'
				// keys, so that its other keys do not use up the server's
				// MaxAuthTries before the right one.
				all := signers
				signers = func() ([]ssh.Signer, error) {
					ss, err := all()
					return k.ownOnly(ss), err
				}
			}
			methods = append(methods, ssh.PublicKeysCallback(signers))
		}
	}
	if r.Password != "" {
		methods = append(methods, ssh.Password(r.Password), ssh.KeyboardInteractive(answerPrompts(r.Password)))
	}
	if len(methods) == 0 {
		if k.note != "" {
			return nil, nil, fmt.Errorf("%s: %w", k.note, backends.ErrAuth)
		}
		return nil, nil, fmt.Errorf("no SSH key for %s@%s: give an identity file or start ssh-agent (SSH_AUTH_SOCK): %w", r.User, r.addr, backends.ErrAuth)
	}
	return methods, closer, nil
}

// answerPrompts answers a keyboard-interactive exchange with the password:
// rounds without questions (banners) get no answers, and the first round
// asking one hidden question gets the password. A second such round means
// the password was refused; a visible question (a user name) or several
// at once (a password and a one-time code) are ones the password does not
// answer. Those end the method rather than guess or resend the password.
// The errors name no answer.
func answerPrompts(password string) ssh.KeyboardInteractiveChallenge {
	sent := false
	return func(_, _ string, questions []string, echos []bool) ([]string, error) {
		switch {
		case len(questions) == 0:
			return nil, nil
		case len(questions) > 1:
			return nil, fmt.Errorf("keyboard-interactive: the server asks %d questions at once; a password answers one", len(questions))
		case echos[0]:
			return nil, fmt.Errorf("keyboard-interactive: the server asks %q, which a password does not answer", questions[0])
		case sent:
			return nil, errors.New("keyboard-interactive: the server asks again after the password")
		}
		sent = true
		return []string{password}, nil
	}
}
