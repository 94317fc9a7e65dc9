package dbcheck

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestMain(m *testing.M) {
	Main()
	os.Exit(m.Run())
}

// kv is one key of a database, under its bucket path.
type kv struct{ path, key, value string }

// sample writes a database shaped like mailroom's (accounts, a nested
// index with many small values, queue records big enough for overflow
// pages) and returns its path and every key in it.
func sample(t testing.TB) (string, map[kv]bool) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mailroom.db")
	db, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	all := map[kv]bool{}
	rng := rand.New(rand.NewPCG(1, 2))
	put := func(b *bolt.Bucket, path, k, v string) {
		if err := b.Put([]byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
		all[kv{path, k, v}] = true
	}
	err = db.Update(func(tx *bolt.Tx) error {
		acc, _ := tx.CreateBucket([]byte("accounts"))
		for i := range 60 {
			put(acc, "accounts", fmt.Sprintf("user%02d@example.org", i), fmt.Sprintf(`{"address":"user%02d@example.org","hash":"$2a$10$%040d"}`, i, i))
		}
		imap, _ := tx.CreateBucket([]byte("imap"))
		homes, _ := imap.CreateBucket([]byte("homes"))
		for h := range 3 {
			home, _ := homes.CreateBucket(fmt.Appendf(nil, "example.org/user%d", h))
			uids, _ := home.CreateBucket([]byte("uids"))
			uids.SetSequence(uint64(100 + h))
			for u := range 700 {
				put(uids, fmt.Sprintf("imap/homes/example.org/user%d/uids", h), string(binary.BigEndian.AppendUint32(nil, uint32(u+1))), fmt.Sprintf("%d.M%dP%d.mx:2,S", 1700000000+u, u, h))
			}
		}
		q, _ := tx.CreateBucket([]byte("queue"))
		for i := range 8 {
			v := make([]byte, 6000)
			for j := range v {
				v[j] = byte('a' + rng.IntN(26))
			}
			put(q, "queue", fmt.Sprintf("Q%03d", i), string(v))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return p, all
}

// contents reads every key of a sound database.
func contents(t *testing.T, p string) map[kv]bool {
	t.Helper()
	db, err := bolt.Open(p, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[kv]bool{}
	var walk func(b *bolt.Bucket, path string)
	walk = func(b *bolt.Bucket, path string) {
		b.ForEach(func(k, v []byte) error {
			if sub := b.Bucket(k); sub != nil {
				walk(sub, filepath.Join(path, string(k)))
			} else {
				out[kv{path, string(k), string(v)}] = true
			}
			return nil
		})
	}
	db.View(func(tx *bolt.Tx) error {
		walk(tx.Cursor().Bucket(), "")
		for err := range tx.Check() {
			t.Errorf("salvaged file fails bbolt's check: %v", err)
		}
		return nil
	})
	return out
}

func TestCheckSound(t *testing.T) {
	p, _ := sample(t)
	info, err := Check(t.Context(), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"accounts": 60, "imap": 1, "queue": 8}
	for b, n := range want {
		if info.Buckets[b] != n {
			t.Errorf("bucket %s: %d keys, want %d (%v)", b, info.Buckets[b], n, info.Buckets)
		}
	}
	if _, err := Check(t.Context(), filepath.Join(t.TempDir(), "none.db"), Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.db")
	os.WriteFile(empty, nil, 0o600)
	if info, err := Check(t.Context(), empty, Options{}); err != nil || info.Size != 0 || len(info.Buckets) != 0 {
		t.Errorf("empty file: %+v %v, want no buckets and no error", info, err)
	}
}

func TestCheckLocked(t *testing.T) {
	p, _ := sample(t)
	db, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Check(t.Context(), p, Options{LockWait: 50e6}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Check of a database open elsewhere: %v, want ErrLocked", err)
	}
}

func TestSalvageSound(t *testing.T) {
	p, all := sample(t)
	dst := filepath.Join(t.TempDir(), "new.db")
	rep, err := Salvage(t.Context(), p, dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Lost() || rep.Runs != 1 || rep.Keys != len(all)+10 {
		t.Errorf("report %+v: want everything in one run", rep)
	}
	got := contents(t, dst)
	if len(got) != len(all) {
		t.Errorf("salvaged %d keys, want %d", len(got), len(all))
	}
	for k := range all {
		if !got[k] {
			t.Errorf("lost %v", k.path+" "+k.key)
			break
		}
	}
	db, _ := bolt.Open(dst, 0o600, &bolt.Options{ReadOnly: true})
	db.View(func(tx *bolt.Tx) error {
		if s := tx.Bucket([]byte("imap")).Bucket([]byte("homes")).Bucket([]byte("example.org/user1")).Bucket([]byte("uids")).Sequence(); s != 101 {
			t.Errorf("bucket sequence %d, want 101", s)
		}
		return nil
	})
	db.Close()
}

// damage is one way a file can be broken.
type damage struct {
	name  string
	apply func(b []byte) []byte
	// exact: whatever is salvaged must be byte for byte what was there.
	// Not where pages were overwritten: bbolt has no checksum on data,
	// so a zeroed overflow page reads as a value of zeros.
	exact bool
}

func damages(size int) []damage {
	const page = 4096
	var ds []damage
	for _, n := range []int{0, 1, 100, page, 2 * page, 2*page + 17, 3 * page, 4 * page, size / 2, size - page, size - 1} {
		ds = append(ds, damage{fmt.Sprintf("truncated to %d", n), func(b []byte) []byte { return b[:n] }, true})
	}
	// Every page once, zeroed or random in turn (random bytes also
	// mostly fail bbolt's page type check, so both cover the same pages).
	for p := 0; p*page < size; p++ {
		if p%2 == 1 {
			ds = append(ds, damage{fmt.Sprintf("page %d random", p), func(b []byte) []byte {
				rng := rand.New(rand.NewPCG(uint64(p), 7))
				for i := p * page; i < min((p+1)*page, len(b)); i++ {
					b[i] = byte(rng.Uint32())
				}
				return b
			}, false})
			continue
		}
		ds = append(ds, damage{fmt.Sprintf("page %d zeroed", p), func(b []byte) []byte {
			clear(b[p*page : min((p+1)*page, len(b))])
			return b
		}, false})
	}
	for i := range 8 {
		ds = append(ds, damage{fmt.Sprintf("header of page %d garbled", 2+i*3), func(b []byte) []byte {
			off := (2 + i*3) * page
			if off+16 <= len(b) {
				binary.LittleEndian.PutUint64(b[off:], 0xdeadbeef)
				binary.LittleEndian.PutUint32(b[off+12:], 0xffff)
			}
			return b
		}, false})
	}
	return ds
}

// TestDamagedVariants breaks a database in many ways: Check must say
// damaged or sound (never crash the caller), a file it calls sound must
// open and read without a panic, and Salvage must save a sound file of
// keys that were there.
func TestDamagedVariants(t *testing.T) {
	p, all := sample(t)
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	damaged, sound := 0, 0
	for i, d := range damages(len(orig)) {
		t.Run(d.name, func(t *testing.T) {
			f := filepath.Join(dir, fmt.Sprintf("v%d.db", i))
			if err := os.WriteFile(f, d.apply(bytes.Clone(orig)), 0o600); err != nil {
				t.Fatal(err)
			}
			info, err := Check(t.Context(), f, Options{})
			var de *DamageError
			switch {
			case errors.As(err, &de):
				damaged++
				if de.Path != f || de.Reason == "" || bytes.ContainsAny([]byte(de.Reason), "\n") {
					t.Errorf("damage error %q: want the path and a one-line reason", de)
				}
			case err != nil:
				t.Fatalf("Check: %v, want a DamageError or nil", err)
			default:
				sound++
				if info.Size > 0 {
					// bbolt says sound: reading it must not panic.
					contents(t, f)
				}
			}
			out := filepath.Join(dir, fmt.Sprintf("v%d.new", i))
			rep, err := Salvage(context.Background(), f, out, Options{})
			if err != nil {
				t.Fatalf("Salvage: %v", err)
			}
			got := contents(t, out)
			if d.exact {
				for k := range got {
					if !all[k] {
						t.Errorf("salvaged a key that was not there: %q %q", k.path, k.key)
						break
					}
				}
			}
			if err == nil && de == nil && info.Size > 0 && len(got) != len(all) {
				t.Errorf("file checked sound, but salvage saved %d of %d keys (%+v)", len(got), len(all), rep)
			}
		})
	}
	t.Logf("%d variants damaged, %d sound", damaged, sound)
	if damaged < 15 {
		t.Errorf("only %d of the variants were found damaged", damaged)
	}
}

// TestSalvageKeepsWhatIsReadable zeroes one leaf page of the index: the
// other buckets come through whole, and the index loses only what that
// page held.
func TestSalvageKeepsWhatIsReadable(t *testing.T) {
	p, all := sample(t)
	b, _ := os.ReadFile(p)
	// Find a leaf page of user1's uids (its values name the files).
	const page = 4096
	target := -1
	for i := 2; i*page < len(b); i++ {
		pg := b[i*page : (i+1)*page]
		if binary.LittleEndian.Uint16(pg[8:]) == 0x02 && bytes.Contains(pg, []byte(".M350P1.mx")) {
			target = i
			break
		}
	}
	if target < 0 {
		t.Fatal("no leaf page of the index found")
	}
	clear(b[target*page : (target+1)*page])
	os.WriteFile(p, b, 0o600)
	if _, err := Check(t.Context(), p, Options{}); err == nil {
		t.Fatal("Check: a zeroed leaf page went unnoticed")
	}
	out := filepath.Join(t.TempDir(), "new.db")
	rep, err := Salvage(t.Context(), p, out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := contents(t, out)
	lostByPath := map[string]int{}
	for k := range all {
		if !got[k] {
			lostByPath[k.path]++
		}
	}
	if n := lostByPath["imap/homes/example.org/user1/uids"]; len(lostByPath) != 1 || n == 0 || n > 150 {
		t.Errorf("lost %v, want only the keys of one page of user1's uids", lostByPath)
	}
	if !rep.Lost() {
		t.Errorf("report %+v does not say something was lost", rep)
	}
	for _, br := range rep.Buckets {
		if !br.Complete && fmt.Sprint(br.Path) != "[imap homes example.org/user1 uids]" {
			t.Errorf("bucket %v reported incomplete", br.Path)
		}
	}
}

// FuzzDamage overwrites a sound database with the fuzzer's bytes at the
// fuzzer's offset (or cuts it there): Check must give a verdict and
// Salvage a sound file, whatever the damage.
func FuzzDamage(f *testing.F) {
	f.Add(uint32(0), []byte{0}, false)
	f.Add(uint32(2*4096+16), []byte{0xff, 0xff, 0xff, 0xff}, false)
	f.Add(uint32(3*4096), make([]byte, 4096), false)
	f.Add(uint32(8192), []byte(nil), true)
	p, _ := sample(f)
	orig, err := os.ReadFile(p)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, off uint32, patch []byte, cut bool) {
		b := bytes.Clone(orig)
		o := int(off) % len(b)
		if cut {
			b = b[:o]
		} else {
			copy(b[o:], patch)
		}
		file := filepath.Join(t.TempDir(), "f.db")
		os.WriteFile(file, b, 0o600)
		_, err := Check(t.Context(), file, Options{})
		var de *DamageError
		if err != nil && !errors.As(err, &de) {
			t.Fatalf("Check: %v", err)
		}
		if err == nil && len(b) > 0 {
			contents(t, file)
		}
		out := filepath.Join(t.TempDir(), "out.db")
		if _, err := Salvage(t.Context(), file, out, Options{}); err != nil {
			t.Fatalf("Salvage: %v", err)
		}
		contents(t, out)
	})
}
