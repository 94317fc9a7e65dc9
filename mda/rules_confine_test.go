package mda_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailroom/mailbox/mbox"
	"mailroom/mda"
	"mailroom/mda/alias"
)

// TestForwardFileTargetsStayInTheMailHome: with allow_files, a .forward
// may name mbox files, but only inside its owner's mail home: mailroom
// writes them with its own rights, so a path elsewhere (another user's
// mailbox, the aliases file, the database) or a symlink leading out of
// the home is refused and bounced, and nothing outside is touched.
func TestForwardFileTargetsStayInTheMailHome(t *testing.T) {
	e := newRulesEnv(t, "", func(o *mda.Options) { o.AllowFiles = true })
	home := filepath.Join(e.MailRoot, "example.org", "alice")
	bobs := filepath.Join(e.MailRoot, "example.org", "bob", "mbox")
	os.MkdirAll(filepath.Dir(bobs), 0o700)
	os.MkdirAll(home, 0o700)
	if err := os.Symlink(e.out, filepath.Join(home, "out")); err != nil {
		t.Fatal(err)
	}
	e.forward(t, "alice", strings.Join([]string{
		`\alice`,
		home + "/archive",     // fine
		"$OUT/stolen",         // outside
		bobs,                  // another user's
		e.aliases,             // the administrator's
		home + "/out/through", // a symlink leading out
		home + "/.forward",    // mail appended there would become rules
		"/dev/null",           // throwing a copy away is fine
	}, "\n")+"\n")

	rc, err := e.MDA.Route(context.Background(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rc.Route.Format(&b)
	if strings.Count(b.String(), "not allowed") < 4 {
		t.Errorf("route does not show the refused files:\n%s", b.String())
	}

	res := e.deliver(t, "sender@remote.example", plainMsg, "alice@example.org")
	if res[0] != nil {
		t.Fatalf("result %v, want success (her mailbox and archive got it)", res[0])
	}
	if msgs := readMbox(t, filepath.Join(home, "archive")); msgs != 1 {
		t.Errorf("archive in the mail home has %d messages, want 1", msgs)
	}
	for _, p := range []string{filepath.Join(e.out, "stolen"), filepath.Join(e.out, "through"), bobs} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was written through alice's .forward", p)
		}
	}
	if b, _ := os.ReadFile(e.aliases); len(b) != 0 {
		t.Errorf("the aliases file was appended to: %q", b)
	}
	if len(e.fwd.bounces) != 1 || len(e.fwd.bounces[0]) != 5 {
		t.Fatalf("bounces %+v, want one listing the five refused files", e.fwd.bounces)
	}
	for _, f := range e.fwd.bounces[0] {
		if !errors.Is(f.Err, alias.ErrNotAllowed) && !errors.Is(f.Err, mbox.ErrOutside) {
			t.Errorf("bounced piece %v: want a refusal", f.Err)
		}
	}
}

func readMbox(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count("\n"+string(b), "\nFrom ")
}
