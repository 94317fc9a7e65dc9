package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/bcrypt"

	"mailroom/account"
	"mailroom/internal/mailtest"
)

// TestBcryptCost: `user add` and `user passwd` hash with
// accounts.bcrypt_cost, and bcrypt's default without the key.
func TestBcryptCost(t *testing.T) {
	for _, c := range []struct {
		name, table string
		want        int
	}{
		{"default", "", bcrypt.DefaultCost},
		{"set", mailtest.CheapBcrypt, 4},
		{"five", "[accounts]\nbcrypt_cost = 5\n", 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := mailtest.ShortTempDir(t)
			cfg := filepath.Join(dir, "mailroom.toml")
			os.WriteFile(cfg, []byte("hostname = \"mx.test\"\ndata_dir = \"data\"\ndomains = [\"example.org\"]\n"+c.table), 0o600)
			for _, args := range [][]string{{"user", "add", "alice@example.org"}, {"user", "passwd", "alice@example.org"}} {
				if out, code := cli(t, "pw\n", append(args, "-config", cfg)...); code != 0 {
					t.Fatalf("%v: %d %s", args, code, out)
				}
				if got := storedCost(t, filepath.Join(dir, "data", "mailroom.db"), "alice@example.org"); got != c.want {
					t.Errorf("%v: hash of cost %d, want %d", args, got, c.want)
				}
			}
		})
	}
}

// storedCost reads the bcrypt cost of addr's stored password hash.
func storedCost(t *testing.T, dbPath, addr string) int {
	t.Helper()
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rec struct {
		Hash []byte `json:"hash"`
	}
	err = db.View(func(tx *bolt.Tx) error {
		return json.Unmarshal(tx.Bucket([]byte(account.Bucket)).Get([]byte(addr)), &rec)
	})
	if err != nil {
		t.Fatal(err)
	}
	cost, err := bcrypt.Cost(rec.Hash)
	if err != nil {
		t.Fatal(err)
	}
	return cost
}
