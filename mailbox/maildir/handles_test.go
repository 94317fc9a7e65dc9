package maildir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"mailroom/mailbox"
)

// TestKeptHandlesFollowThePath: new/ and cur/ stay open between scans,
// but a folder renamed or replaced by another program is noticed at the
// next Sync, as when they were opened each time.
func TestKeptHandlesFollowThePath(t *testing.T) {
	t.Parallel()
	e := newIndexEnv(t)
	ctx := context.Background()
	f := e.folders(testHome)
	uids := appendN(t, f, "Sent", 2)
	if got := readMsg(t, f, "Sent", uids[0]); got != "Subject: 0\r\n\r\nbody 0\r\n" {
		t.Fatalf("content %q", got)
	}
	md := e.md(testHome)
	if err := os.Rename(filepath.Join(md, ".Sent"), filepath.Join(md, ".Elsewhere")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Sync(ctx, "Sent"); !errors.Is(err, mailbox.ErrNoFolder) {
		t.Errorf("Sync of a folder renamed away: %v", err)
	}
	if _, _, err := f.Open(ctx, "Sent", uids[0]); err == nil {
		t.Error("Open in a folder renamed away succeeded")
	}
	if s := mustSync(t, f, "Elsewhere"); len(s.Messages) != 2 {
		t.Errorf("Elsewhere: %d messages", len(s.Messages))
	}

	// Made again empty under the old name: the old handles are not used.
	if err := f.Create(ctx, "Sent"); err != nil {
		t.Fatal(err)
	}
	if s := mustSync(t, f, "Sent"); len(s.Messages) != 0 {
		t.Errorf("Sent made again: %d messages", len(s.Messages))
	}
	cur := filepath.Join(md, ".Elsewhere", "cur")
	os.Rename(cur, cur+".gone")
	os.Mkdir(cur, 0o700)
	if s := mustSync(t, f, "Elsewhere"); len(s.Messages) != 0 {
		t.Errorf("Elsewhere with cur/ replaced: %d messages", len(s.Messages))
	}
}
