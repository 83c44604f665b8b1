// Package seal encrypts the vault's secrets at rest with AES-256-GCM. Keys
// carry ids, so a sealed value names the key that opens it and keys can be
// rotated: new values use the newest key, old ones open with theirs until
// they are sealed again.
package seal

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// KeyEnv is the environment variable that, when set, holds the keys and
// takes precedence over the key file: "ID:BASE64KEY[,ID:BASE64KEY...]", the
// last one current.
const KeyEnv = "ALTERHOST_VAULT_KEY"

// ErrOpen is returned when a sealed value cannot be opened: wrong key,
// tampered bytes, or associated data that does not match (a value moved to
// another row).
var ErrOpen = errors.New("seal: cannot open sealed value")

// Keyring holds the vault's keys. It is safe for concurrent use.
type Keyring struct {
	mu      sync.RWMutex
	current string
	aeads   map[string]cipher.AEAD
	// file is the key file the ring came from, if any: when a value names
	// a key the ring lacks (another process rotated), the ring reads the
	// file again, at most once a second.
	file     string
	reloaded time.Time
}

// New builds a keyring from id → 32-byte key; current names the sealing key.
func New(keys map[string][]byte, current string) (*Keyring, error) {
	k := &Keyring{current: current, aeads: map[string]cipher.AEAD{}}
	for id, key := range keys {
		if !validID(id) {
			return nil, fmt.Errorf("seal: key id %q: use 1-32 letters, digits, '-' or '_'", id)
		}
		if len(key) != 32 {
			return nil, fmt.Errorf("seal: key %q is %d bytes; AES-256 needs 32", id, len(key))
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		if k.aeads[id], err = cipher.NewGCM(block); err != nil {
			return nil, err
		}
	}
	if _, ok := k.aeads[current]; !ok {
		return nil, fmt.Errorf("seal: the current key %q is not in the keyring", current)
	}
	return k, nil
}

func validID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Current returns the id of the key new values are sealed with.
func (k *Keyring) Current() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.current
}

// Seal encrypts plaintext with the current key, binding ad (associated
// data) to it, and returns the key id and nonce||ciphertext.
func (k *Keyring) Seal(plaintext, ad []byte) (keyID string, sealed []byte, err error) {
	k.mu.RLock()
	id, aead := k.current, k.aeads[k.current]
	k.mu.RUnlock()
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, err
	}
	return id, aead.Seal(nonce, nonce, plaintext, ad), nil
}

// aead returns the key keyID, reading the key file again if the ring lacks
// it: `alterhost vault rotate-key` may have added it while this process ran.
func (k *Keyring) aead(keyID string) (cipher.AEAD, bool) {
	k.mu.RLock()
	aead, ok := k.aeads[keyID]
	file, recent := k.file, time.Since(k.reloaded) < time.Second
	k.mu.RUnlock()
	if ok || file == "" || recent {
		return aead, ok
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.reloaded = time.Now()
	fresh, err := loadFile(file)
	if err != nil {
		return nil, false
	}
	k.current, k.aeads = fresh.current, fresh.aeads
	aead, ok = k.aeads[keyID]
	return aead, ok
}

// Open decrypts a value sealed with key keyID and associated data ad.
func (k *Keyring) Open(keyID string, sealed, ad []byte) ([]byte, error) {
	aead, ok := k.aead(keyID)
	if !ok {
		return nil, fmt.Errorf("%w: key %q is not in the keyring", ErrOpen, keyID)
	}
	n := aead.NonceSize()
	if len(sealed) < n+aead.Overhead() {
		return nil, ErrOpen
	}
	out, err := aead.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

// KeyFile is the key file's name inside the data directory.
const KeyFile = "vault.key"

// Load returns the keyring from $ALTERHOST_VAULT_KEY if set, otherwise from
// dataDir/vault.key, creating that file with one new key (mode 0600) on
// first start. A key file readable by others is refused.
func Load(dataDir string) (*Keyring, error) {
	if env := os.Getenv(KeyEnv); env != "" {
		return parse(strings.ReplaceAll(env, ",", "\n"), "$"+KeyEnv)
	}
	path := filepath.Join(dataDir, KeyFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if _, err := addKey(path); err != nil {
			return nil, err
		}
	}
	return loadFile(path)
}

// loadFile reads a key file, refusing one that others can read.
func loadFile(path string) (*Keyring, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("vault key: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("vault key %s is readable by others (mode %v); run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	k, err := parse(string(data), path)
	if err != nil {
		return nil, err
	}
	k.file = path
	return k, nil
}

// Rotate adds a new key to dataDir/vault.key and makes it current. The
// caller then re-seals every value (see vault.Rekey). It refuses when the
// keys come from the environment, which alterhost cannot rewrite.
func Rotate(dataDir string) (*Keyring, error) {
	if os.Getenv(KeyEnv) != "" {
		return nil, fmt.Errorf("the vault keys come from $%s: add a new ID:KEY at its end instead", KeyEnv)
	}
	path := filepath.Join(dataDir, KeyFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("vault key: %w", err)
	}
	if _, err := addKey(path); err != nil {
		return nil, err
	}
	return Load(dataDir)
}

// addKey appends "ID BASE64KEY" with a new random key to path, creating it
// with mode 0600.
func addKey(path string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	key := make([]byte, 32)
	idb := make([]byte, 4)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	if _, err := rand.Read(idb); err != nil {
		return "", err
	}
	id := "k" + hex.EncodeToString(idb)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("vault key: %w", err)
	}
	_, err = fmt.Fprintf(f, "%s %s\n", id, base64.StdEncoding.EncodeToString(key))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return id, err
}

// parse reads lines "ID KEY" or "ID:KEY"; the last key is current. Errors
// name the source and line but never print a key.
func parse(text, source string) (*Keyring, error) {
	keys := map[string][]byte{}
	current := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, enc, ok := strings.Cut(line, " ")
		if !ok {
			id, enc, ok = strings.Cut(line, ":")
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
		if !ok || err != nil {
			return nil, fmt.Errorf("%s line %d: want \"ID BASE64KEY\" (32 bytes, standard base64)", source, n)
		}
		if _, dup := keys[id]; dup {
			return nil, fmt.Errorf("%s line %d: key id %q appears twice", source, n, id)
		}
		keys[id] = bytes.Clone(key)
		current = id
	}
	if current == "" {
		return nil, fmt.Errorf("%s holds no key", source)
	}
	k, err := New(keys, current)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return k, nil
}
