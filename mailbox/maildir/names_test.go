package maildir

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"mailroom/mailbox"
	"mailroom/mailbox/index"
)

func TestFolderDir(t *testing.T) {
	t.Parallel()
	good := []struct{ name, canon, dir string }{
		{"INBOX", "INBOX", ""},
		{"inbox", "INBOX", ""},
		{"Inbox/Sub", "INBOX/Sub", ".INBOX.Sub"},
		{"Sent", "Sent", ".Sent"},
		{"Archive/2024", "Archive/2024", ".Archive.2024"},
		{"Entwürfe/A&B", "Entwürfe/A&B", ".Entw&APw-rfe.A&-B"},
		{"a b/~x", "a b/~x", ".a b.~x"},
	}
	for _, c := range good {
		canon, dir, err := folderDir(c.name)
		if err != nil || canon != c.canon || dir != c.dir {
			t.Errorf("folderDir(%q) = %q, %q, %v; want %q, %q", c.name, canon, dir, err, c.canon, c.dir)
		}
		if c.dir != "" {
			if back, ok := dirFolder(c.dir); !ok || back != c.canon {
				t.Errorf("dirFolder(%q) = %q, %v", c.dir, back, ok)
			}
		}
	}
	for _, bad := range badFolderNames {
		if _, dir, err := folderDir(bad); !errors.Is(err, mailbox.ErrBadFolderName) {
			t.Errorf("folderDir(%q) = %q, %v; want ErrBadFolderName", bad, dir, err)
		}
	}
	for _, dir := range []string{".", "..", "cur", ".a..b", ".&AGE-", ".inbox.x", ".INBOX", ".a\x01", ".é", ".a*"} {
		if name, ok := dirFolder(dir); ok {
			t.Errorf("dirFolder(%q) = %q, want not a folder", dir, name)
		}
	}
}

// badFolderNames are refused by every operation that takes a name.
var badFolderNames = []string{
	"", "..", ".", "a/..", "../x", "a/../../x", "/a", "a/", "/", "a//b", "a/./b", "a.b", ".hidden",
	"a\x00b", "a\nb", "a\x7fb", "a\u0085b", "\xff\xfe", "a*", "%", strings.Repeat("x", 256),
	strings.Repeat("ü/", 60) + "x", strings.Repeat("é", 120),
}

func FuzzFolderDir(f *testing.F) {
	for _, s := range append(badFolderNames, "INBOX", "Sent", "Archive/2024", "Entwürfe/A&B") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		canon, dir, err := folderDir(name)
		if err != nil {
			return
		}
		if canon == inbox {
			if dir != "" {
				t.Fatalf("INBOX dir %q", dir)
			}
			return
		}
		if !strings.HasPrefix(dir, ".") || strings.ContainsAny(dir, "/\x00") || strings.Contains(dir, "..") || len(dir) > maxDirName {
			t.Fatalf("folderDir(%q) = %q: unsafe directory name", name, dir)
		}
		if back, ok := dirFolder(dir); !ok || back != canon {
			t.Fatalf("folderDir(%q) = %q, %q; back %q, %v", name, canon, dir, back, ok)
		}
	})
}

func TestParseFileName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		key          string
		s, w         int64
		info         bool
		flags        sysFlags
		other, canon string
	}{
		{"1700000000.M1P2Q3.host,S=17,W=20", "1700000000.M1P2Q3.host,S=17,W=20", 17, 20, false, 0, "", ":2,"},
		{"123.abc:2,SR", "123.abc", -1, -1, true, flagS | flagR, "", ":2,RS"},
		{"123.abc,S=5:2,TPFDSR", "123.abc,S=5", 5, -1, true, flagD | flagF | flagP | flagR | flagS | flagT, "", ":2,DFPRST"},
		{"k,W=9,S=x:2,Sab", "k,W=9,S=x", -1, 9, true, flagS, "ab", ":2,Sab"},
		{"k:2,", "k", -1, -1, true, 0, "", ":2,"},
		{"k:1,foo", "k", -1, -1, false, 0, "", ":2,"},
		{"k:2,S:2,F", "k", -1, -1, true, flagS | flagF, "", ":2,FS"},
		{"k,S=-1,W=99999999999999999999", "k,S=-1,W=99999999999999999999", -1, -1, false, 0, "", ":2,"},
		{"k:2,zaSz,9", "k", -1, -1, true, flagS, "az", ":2,Saz"},
	}
	for _, c := range cases {
		fn := parseFileName(c.name)
		if fn.key != c.key || fn.sizeS != c.s || fn.sizeW != c.w || fn.hasInfo != c.info || fn.flags != c.flags || fn.other != c.other {
			t.Errorf("parseFileName(%q) = %+v", c.name, fn)
		}
		if got := infoSuffix(fn.flags, fn.other); got != c.canon {
			t.Errorf("infoSuffix of %q = %q, want %q", c.name, got, c.canon)
		}
	}
}

func FuzzParseFileName(f *testing.F) {
	for _, s := range []string{"1.M1P1Q1.h,S=1,W=2", "a:2,FS", "a:2,", "a,S=5:2,Tz", "::2,", ",W=,S=:2,SSS"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		fn := parseFileName(name)
		if strings.Contains(fn.key, ":") || !strings.HasPrefix(name, fn.key) {
			t.Fatalf("key %q of %q", fn.key, name)
		}
		// Writing the flags back and parsing again gives the same flags:
		// a rename for a STORE keeps what it does not change.
		again := parseFileName(fn.key + infoSuffix(fn.flags, fn.other))
		if again.key != fn.key || again.flags != fn.flags || again.other != fn.other || !again.hasInfo ||
			again.sizeS != fn.sizeS || again.sizeW != fn.sizeW {
			t.Fatalf("%q: %+v, after a rename %+v", name, fn, again)
		}
	})
}

func TestKeywordLimit(t *testing.T) {
	t.Parallel()
	var many []string
	for i := range 3 * index.MaxKeywords {
		many = append(many, fmt.Sprintf("kw%04d", i))
	}
	_, kws := index.ParseFlags(many)
	if len(kws) != index.MaxKeywords {
		t.Fatalf("imapFlags kept %d keywords", len(kws))
	}
	_, kws = index.Apply(0, kws, mailbox.FlagsAdd, 0, []string{"another", "more"})
	if len(kws) != index.MaxKeywords {
		t.Fatalf("applyFlags kept %d keywords", len(kws))
	}
	e := &entry{uid: 1, name: "x:2,", kws: kws, modSeq: 1}
	if d, err := decodeEntry(1, e.encode()); err != nil || len(d.kws) != index.MaxKeywords {
		t.Fatalf("decode: %v", err)
	}
}

// FuzzDecodeEntry: an index record, however damaged, decodes or fails
// cleanly (a failure rebuilds the folder's index), and what decodes
// encodes back to the same record.
func FuzzDecodeEntry(f *testing.F) {
	f.Add((&entry{uid: 1, modSeq: 7, date: 1e9, size: 20, disk: 17, flags: flagS, name: "1.M1P1Q1.h,S=17,W=20:2,S", kws: []string{"$Junk", "a"}}).encode())
	f.Add((&entry{uid: 2, inNew: true, date: -5, name: "x"}).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(3, b)
		if err != nil {
			return
		}
		again, err := decodeEntry(3, e.encode())
		if err != nil || again.name != e.name || again.modSeq != e.modSeq || again.date != e.date ||
			again.size != e.size || again.disk != e.disk || again.flags != e.flags || again.inNew != e.inNew ||
			strings.Join(again.kws, "\x00") != strings.Join(e.kws, "\x00") {
			t.Fatalf("%+v re-encoded as %+v, %v", e, again, err)
		}
	})
}
