package maildir

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"mailroom/mailbox"
)

// TestInternalDateWhenAsked: files named with both sizes are indexed
// without their dates, which InternalDates reads from the mtimes then
// and the index keeps (a restart shows them without reading the files);
// a file without the sizes in its name gets its date from the scan.
func TestInternalDateWhenAsked(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	ctx := context.Background()
	f := e.folders(testHome)
	e.deliver(testHome, "Subject: a\r\n\r\na\r\n")
	e.deliver(testHome, "Subject: b\r\n\r\nb\r\n")
	s := mustSync(t, f, inbox)
	for _, m := range s.Messages {
		if !m.InternalDate.IsZero() {
			t.Errorf("uid %d: date %v read by the scan", m.UID, m.InternalDate)
		}
	}
	newDir := filepath.Join(e.md(testHome), "new")
	when := time.Date(2019, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, n := range files(t, newDir) {
		if err := os.Chtimes(filepath.Join(newDir, n), when, when); err != nil {
			t.Fatal(err)
		}
	}
	// One message changes name (a flag change) before its date is read.
	if _, err := f.SetFlags(ctx, inbox, []uint32{1}, mailbox.FlagsAdd, []string{mailbox.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	got, err := f.(mailbox.LazyDates).InternalDates(ctx, inbox, []uint32{1, 2, 99})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[1].Equal(when) || !got[2].Equal(when) {
		t.Errorf("InternalDates = %v, want both %v", got, when)
	}
	for _, m := range mustSync(t, f, inbox).Messages {
		if !m.InternalDate.Equal(when) {
			t.Errorf("uid %d: snapshot date %v after reading, want %v", m.UID, m.InternalDate, when)
		}
	}

	// Kept in the index: a later mtime is not read again after a restart.
	later := when.Add(48 * time.Hour)
	curDir := filepath.Join(e.md(testHome), "cur")
	for _, d := range []string{newDir, curDir} {
		for _, n := range files(t, d) {
			os.Chtimes(filepath.Join(d, n), later, later)
		}
	}
	// A file put in by hand, without sizes in its name: dated by the scan.
	hand := filepath.Join(curDir, "1700000000.hand.host:2,")
	if err := os.WriteFile(hand, []byte("Subject: c\n\nc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(hand, later, later)
	e.reopen()
	s = mustSync(t, e.folders(testHome), inbox)
	if len(s.Messages) != 3 {
		t.Fatalf("after a restart: %d messages, want 3", len(s.Messages))
	}
	var dates []time.Time
	for _, m := range s.Messages {
		dates = append(dates, m.InternalDate.UTC())
	}
	if want := []time.Time{when, when, later}; !slices.EqualFunc(dates, want, time.Time.Equal) {
		t.Errorf("after a restart: dates %v, want %v", dates, want)
	}
}
