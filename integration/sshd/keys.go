package sshd

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// newKey generates a private key of the given OpenSSH kind.
func newKey(kind string) (crypto.Signer, error) {
	switch kind {
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case "rsa":
		// 2048 bits keeps generation well under a second; strength is not
		// the point of a throwaway test key.
		return rsa.GenerateKey(rand.Reader, 2048)
	case "ecdsa":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("unknown key type %q (want ed25519, rsa or ecdsa)", kind)
}

// writeKeyPair writes key in OpenSSH format to path (0600) and its public half
// to path+".pub", encrypting the private key when passphrase is not empty.
func writeKeyPair(path string, key crypto.Signer, passphrase string) (ssh.PublicKey, error) {
	var block *pem.Block
	var err error
	if passphrase != "" {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(key, "ferry-test", []byte(passphrase))
	} else {
		block, err = ssh.MarshalPrivateKey(key, "ferry-test")
	}
	if err != nil {
		return nil, fmt.Errorf("marshal key %s: %w", path, err)
	}
	// sshd and ssh refuse private keys that others can read.
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("public key of %s: %w", path, err)
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
		return nil, fmt.Errorf("write public key: %w", err)
	}
	return pub, nil
}

// knownHostsLines returns one known_hosts line per host key for addr
// ("127.0.0.1:PORT", written "[127.0.0.1]:PORT" as OpenSSH does for a
// port other than 22).
func knownHostsLines(addr string, keys []ssh.PublicKey) string {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(knownhosts.Line([]string{knownhosts.Normalize(addr)}, k))
		b.WriteByte('\n')
	}
	return b.String()
}
