package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mailroom/config"
	"mailroom/internal/mailtest"
)

// populated makes an installation with accounts, delivered mail and a
// queued message, stops there (no server) and returns its config file,
// data_dir and a copy of its mailroom.db.
func populated(t *testing.T) (cfgPath, dataDir string, _ []byte) {
	t.Helper()
	cfgPath = writeConfig(t)
	dataDir = filepath.Join(filepath.Dir(cfgPath), "data")
	for _, u := range []string{"alice", "bob", "carol"} {
		if out, code := cli(t, "pw-"+u+"\n", "user", "add", u+"@example.org", "-config", cfgPath); code != 0 {
			t.Fatalf("user add: %d %s", code, out)
		}
	}
	for i := range 5 {
		msg := fmt.Sprintf("Subject: message %d\n\nbody %d\n", i, i)
		if out, code := cli(t, msg, "deliver", "-config", cfgPath, "-f", "x@remote.example", "alice@example.org", "bob@example.org"); code != 0 {
			t.Fatalf("deliver: %d %s", code, out)
		}
	}
	// Index the folders, as an IMAP login would, so that the database
	// holds the index too.
	a := testApp(t, cfgPath)
	if err := reindex(t.Context(), a, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.queue.Enqueue(t.Context(), "alice@example.org", []string{"friend@remote.example"}, strings.NewReader("Subject: out\r\n\r\nqueued\r\n")); err != nil {
		t.Fatal(err)
	}
	a.Close()
	db, err := os.ReadFile(filepath.Join(dataDir, "mailroom.db"))
	if err != nil {
		t.Fatal(err)
	}
	return cfgPath, dataDir, db
}

// testApp opens the installation of the configuration file cfgPath, as
// a command run without a server does; the caller closes it.
func testApp(t *testing.T, cfgPath string) *app {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a, err := openApp(cfg, slog.New(slog.DiscardHandler), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// damagedDB is one way mailroom.db can be found: apply returns the
// damaged file, or nil for none at all.
type damagedDB struct {
	name  string
	apply func(db []byte) []byte
}

// damagedDBs lists the damages the command-level tests apply to db: the
// file removed, cut short, its meta pages lost, and the pages
// samplePages picks overwritten with random bytes.
func damagedDBs(db []byte) []damagedDB {
	ds := []damagedDB{
		{"removed", func([]byte) []byte { return nil }},
		{"truncated to 0", func([]byte) []byte { return []byte{} }},
		{"truncated to 100", func(db []byte) []byte { return db[:100] }},
		{"truncated to 8192", func(db []byte) []byte { return db[:2*page] }},
		{"truncated to half", func(db []byte) []byte { return db[:len(db)/2/page*page] }},
		{"meta pages zeroed", func(db []byte) []byte { return append(make([]byte, 2*page), db[2*page:]...) }},
	}
	for _, p := range samplePages(db) {
		ds = append(ds, damagedDB{fmt.Sprintf("page %d random", p), func(db []byte) []byte {
			b := bytes.Clone(db)
			rng := rand.New(rand.NewPCG(uint64(p), 3))
			for i := p * page; i < min((p+1)*page, len(b)); i++ {
				b[i] = byte(rng.Uint32())
			}
			return b
		}})
	}
	return ds
}

// page is bbolt's page size on the machines the tests run on.
const page = 4096

// samplePages picks the pages of db that the command-level tests damage:
// the first and the last page of each kind (branch, leaf, meta, freelist,
// by the flags in bbolt's page header) and of the overflow pages that
// continue a long value. Every command meets each kind of damage; every
// page is damaged in turn by internal/dbcheck's TestDamagedVariants,
// where it costs one Check and one Salvage instead of a run of every
// command (five to seven commands, each checking the file in a child
// process, for each of some 60 pages took most of this package's time).
func samplePages(db []byte) []int {
	first, last := map[string]int{}, map[string]int{}
	see := func(kind string, p int) {
		if _, ok := first[kind]; !ok {
			first[kind] = p
		}
		last[kind] = p
	}
	for p := 2; (p+1)*page <= len(db); p++ {
		hdr := db[p*page:]
		kind := fmt.Sprintf("flags %#x", binary.LittleEndian.Uint16(hdr[8:]))
		see(kind, p)
		if n := int(binary.LittleEndian.Uint32(hdr[12:])); n > 0 {
			see("overflow", p+1)
			p += n
		}
	}
	var out []int
	for kind, p := range first {
		out = append(out, p)
		if last[kind] != p {
			out = append(out, last[kind])
		}
	}
	slices.Sort(out)
	return out
}

func writeDamaged(t *testing.T, path string, d damagedDB, db []byte) {
	t.Helper()
	b := d.apply(db)
	if b == nil {
		os.Remove(path)
		return
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedDatabaseRefused: whatever happened to mailroom.db, every
// command either works or refuses with one line naming the file and the
// way out, exit 75 (so that an MTA retries a delivery), and leaves the
// file as it found it; no command panics (dovecot export did, with
// SIGBUS in bbolt's freelist, until it checked the file as the others do;
// convert opened the file unchecked too).
func TestDamagedDatabaseRefused(t *testing.T) {
	cfgPath, dataDir, db := populated(t)
	dbPath := filepath.Join(dataDir, "mailroom.db")
	refused := 0
	for _, d := range damagedDBs(db) {
		t.Run(d.name, func(t *testing.T) {
			writeDamaged(t, dbPath, d, db)
			before, _ := os.ReadFile(dbPath)
			for _, cmd := range [][]string{
				{"user", "list"},
				{"check"},
				{"deliver", "-f", "x@remote.example", "alice@example.org"},
				{"queue", "list"},
				{"route", "alice@example.org"},
				{"dovecot", "export"},
				{"convert", "-to", "maildir"},
				{"backup", filepath.Join(t.TempDir(), "b")},
			} {
				out, code := cli(t, "Subject: s\n\nb\n", append(cmd, "-config", cfgPath)...)
				for _, bad := range []string{"panic", "goroutine ", "fatal error", "runtime."} {
					if strings.Contains(out, bad) {
						t.Fatalf("%v: %q in the output:\n%s", cmd, bad, out)
					}
				}
				if code == 0 {
					continue
				}
				refused++
				lines := strings.Split(strings.TrimSpace(out), "\n")
				last := lines[len(lines)-1]
				if code != exitTempFail || !strings.Contains(last, dbPath) || !strings.Contains(last, "mailroom check -repair") {
					t.Errorf("%v: exit %d %q; want 75 and one line naming %s and the repair", cmd, code, out, dbPath)
				}
				if cmd[0] != "check" && len(lines) != 1 {
					t.Errorf("%v: %d lines of output, want one:\n%s", cmd, len(lines), out)
				}
				after, _ := os.ReadFile(dbPath)
				if !bytes.Equal(before, after) {
					t.Fatalf("%v changed the file it refused", cmd)
				}
			}
		})
	}
	if refused == 0 {
		t.Fatal("no variant was refused")
	}
	// A new install (no file, no mail homes) still starts.
	fresh := writeConfig(t)
	if out, code := cli(t, "", "user", "list", "-config", fresh); code != 0 {
		t.Fatalf("new install: %d %s", code, out)
	}
}

// TestRepair: after any damage, check -repair leaves a database that
// every command takes, with an account for every mail home and every
// message indexed; the damaged file is kept aside, and queued messages
// whose records were lost are kept too.
func TestRepair(t *testing.T) {
	tmplCfg, _, db := populated(t)
	for _, d := range damagedDBs(db) {
		t.Run(d.name, func(t *testing.T) {
			// A copy of the installation for each variant.
			dir := mailtest.ShortTempDir(t)
			if err := os.CopyFS(dir, os.DirFS(filepath.Dir(tmplCfg))); err != nil {
				t.Fatal(err)
			}
			cfgPath, dataDir := filepath.Join(dir, filepath.Base(tmplCfg)), filepath.Join(dir, "data")
			dbPath := filepath.Join(dataDir, "mailroom.db")
			writeDamaged(t, dbPath, d, db)
			out, code := cli(t, "", "check", "-repair", "-config", cfgPath)
			if code != 0 || !strings.Contains(out, "repair done: 10 messages indexed") {
				t.Fatalf("check -repair: exit %d\n%s", code, out)
			}
			if strings.Contains(out, "damaged (") != strings.Contains(out, "kept the damaged file as ") {
				t.Errorf("a damaged file must be kept aside:\n%s", out)
			}
			list, code := cli(t, "", "user", "list", "-config", cfgPath)
			for _, u := range []string{"alice", "bob"} {
				if code != 0 || !strings.Contains(list, u+"@example.org") {
					t.Errorf("after repair, user list: %d %q, want %s (its mail home exists)", code, list, u)
				}
			}
			if out, code := cli(t, "Subject: after\n\nb\n", "deliver", "-config", cfgPath, "bob@example.org"); code != 0 {
				t.Errorf("deliver after repair: %d %s", code, out)
			}
			if out, code := cli(t, "", "check", "-config", cfgPath); code != 0 {
				t.Errorf("check after repair: %d %s", code, out)
			}
			queued, _ := cli(t, "", "queue", "list", "-config", cfgPath)
			lost, _ := filepath.Glob(filepath.Join(dataDir, "queue-lost-*", "*"))
			if strings.Contains(queued, "friend@remote.example") == (len(lost) == 1) {
				t.Errorf("the queued message must be in the queue or kept aside, once: queue %q, kept %v", queued, lost)
			}
		})
	}
}
