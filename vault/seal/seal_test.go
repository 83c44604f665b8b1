package seal_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alterhost/alterhost/vault/seal"
)

func TestSealOpen(t *testing.T) {
	t.Setenv(seal.KeyEnv, "")
	dir := t.TempDir()
	k, err := seal.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, seal.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	id, sealed, err := k.Seal([]byte("gho_secret"), []byte("alice|github|g1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("gho_secret")) {
		t.Fatal("the plaintext is visible in the sealed value")
	}
	if got, err := k.Open(id, sealed, []byte("alice|github|g1")); err != nil || string(got) != "gho_secret" {
		t.Fatalf("open = %q, %v", got, err)
	}
	// A value moved to another row, or tampered with, does not open.
	if _, err := k.Open(id, sealed, []byte("mallory|github|g1")); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("other associated data: %v; want ErrOpen", err)
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := k.Open(id, sealed, []byte("alice|github|g1")); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("tampered: %v; want ErrOpen", err)
	}

	// The same data dir gives the same key; rotation keeps the old one.
	again, err := seal.Load(dir)
	if err != nil || again.Current() != id {
		t.Fatalf("reload: %v, current %q; want %q", err, again.Current(), id)
	}
	_, old, _ := k.Seal([]byte("v"), nil)
	rotated, err := seal.Rotate(dir)
	if err != nil || rotated.Current() == id {
		t.Fatalf("rotate: %v, current %q", err, rotated.Current())
	}
	if got, err := rotated.Open(id, old, nil); err != nil || string(got) != "v" {
		t.Errorf("the old key stopped working after rotation: %v", err)
	}
}

func TestLoadRejects(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	for _, tc := range []struct{ env, want string }{
		{"k1:" + key, ""},
		{"k1:" + key + ",k2:" + key, ""},
		{"k1:notbase64!", "line 1"},
		{"k1:" + base64.StdEncoding.EncodeToString([]byte("short")), "needs 32"},
		{"bad!:" + key, "key id"},
		{"k1:" + key + ",k1:" + key, "appears twice"},
	} {
		t.Setenv(seal.KeyEnv, tc.env)
		k, err := seal.Load(t.TempDir())
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.env, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v; want %q", tc.env, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), key) {
			t.Errorf("the error shows the key: %v", err)
		}
		_ = k
	}
	t.Setenv(seal.KeyEnv, "")
	dir := t.TempDir()
	if _, err := seal.Load(dir); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, seal.KeyFile), 0o644)
	if _, err := seal.Load(dir); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("a world-readable key file: %v", err)
	}
}

// TestRotationSeenByRunningProcess: a keyring loaded before another process
// rotated the key file opens values sealed with the new key, and seals with
// it from then on.
func TestRotationSeenByRunningProcess(t *testing.T) {
	t.Setenv(seal.KeyEnv, "")
	dir := t.TempDir()
	running, err := seal.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := running.Current()
	rotated, err := seal.Rotate(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, sealed, _ := rotated.Seal([]byte("new"), nil)
	if got, err := running.Open(id, sealed, nil); err != nil || string(got) != "new" {
		t.Fatalf("running keyring cannot open a value sealed after rotation: %v", err)
	}
	if running.Current() == old {
		t.Error("the running keyring still seals with the old key")
	}
}
