package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailroom/mailbox/mbox"
)

// viewBySubject is a folder as "subject flags" lines by subject, which
// survive a conversion (the UIDs do not).
func viewBySubject(v folderView) map[string]bool {
	out := map[string]bool{}
	for _, s := range v.byUID {
		out[s] = true
	}
	return out
}

// TestConvert: `mailroom convert -to mbox` copies every account's
// Maildir into mbox files (flags kept, a folder with its message), moves
// the Maildir aside, and `-to maildir` brings it all back; it refuses
// while a target already exists, and without -to.
func TestConvert(t *testing.T) {
	cfgPath, dataDir, _ := populated(t)
	want := mailroomView(t, cfgPath, "example.org/alice") // 4 messages, one flagged
	sess, done := openFolders(t, cfgPath, "example.org/alice")
	if _, _, err := sess.Append(t.Context(), "Archive", strings.NewReader("Subject: archived\n\nold\n"), []string{`\Seen`, "$Work"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	done()
	if out, code := cli(t, "", "convert", "-config", cfgPath); code != exitUsage {
		t.Errorf("convert without -to: %d %s", code, out)
	}
	out, code := cli(t, "", "convert", "-to", "mbox", "-config", cfgPath)
	if code != 0 || !strings.Contains(out, "alice@example.org: ") || !strings.Contains(out, "checked") {
		t.Fatalf("convert -to mbox: %d\n%s", code, out)
	}
	home := filepath.Join(dataDir, "mail", "example.org", "alice")
	if _, err := os.Stat(filepath.Join(home, "Maildir.converted")); err != nil {
		t.Errorf("the Maildir was not moved aside: %v", err)
	}
	f, err := os.Open(filepath.Join(home, "mbox"))
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := mbox.Split(f)
	f.Close()
	if err != nil || len(msgs) != 4 {
		t.Fatalf("alice's mbox: %d messages, %v", len(msgs), err)
	}
	arch, err := os.ReadFile(filepath.Join(home, "mail", "Archive"))
	if err != nil || !strings.Contains(string(arch), "Subject: archived\nStatus: RO\nX-Keywords: $Work\n") {
		t.Errorf("mail/Archive: %q, %v", arch, err)
	}
	// Back again: the same messages and flags in a Maildir.
	if out, code := cli(t, "", "convert", "-to", "maildir", "-config", cfgPath); code != 0 {
		t.Fatalf("convert -to maildir: %d\n%s", code, out)
	}
	sess, done = openFolders(t, cfgPath, "example.org/alice")
	got := readView(t, sess)
	if w, g := viewBySubject(want), viewBySubject(got); len(w) != len(g) || len(g) != 4 {
		t.Errorf("after the round trip %v, want %v", g, w)
	} else {
		for s := range w {
			if !g[s] {
				t.Errorf("after the round trip %v, want %v", g, w)
			}
		}
	}
	snap, err := sess.Sync(t.Context(), "Archive")
	if err != nil || len(snap.Messages) != 1 || strings.Join(snap.Messages[0].Flags, " ") != `$Work \Seen` {
		t.Errorf("Archive after the round trip: %+v, %v", snap, err)
	}
	done()
	// The old store of the first conversion is still aside: refused
	// before anything is copied.
	out, code = cli(t, "", "convert", "-to", "mbox", "-config", cfgPath)
	if code != exitTempFail || !strings.Contains(out, "Maildir.converted") {
		t.Errorf("convert -to mbox with Maildir.converted there: %d %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(home, "mbox")); err == nil {
		t.Error("a refused conversion made an mbox")
	}
}
