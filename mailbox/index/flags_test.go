package index

import (
	"slices"
	"strings"
	"testing"

	"mailroom/mailbox"
)

func TestParseFlags(t *testing.T) {
	t.Parallel()
	sys, kws := ParseFlags([]string{`\seen`, `\FLAGGED`, `\Recent`, `\Unknown`, "$Junk", "$junk", "a(b", "", "Work"})
	if sys != Seen|Flagged || strings.Join(kws, " ") != "$Junk Work" {
		t.Fatalf("ParseFlags = %v, %q", sys, kws)
	}
}

// TestApply: STORE's three forms; keywords compare without case, and
// Passed (no IMAP name) survives a replace.
func TestApply(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		sys     Flags
		kws     []string
		op      mailbox.FlagOp
		addSys  Flags
		addKw   []string
		wantSys Flags
		wantKw  []string
	}{
		{"set keeps Passed", Seen | Passed, []string{"a"}, mailbox.FlagsSet, Flagged, []string{"b"}, Flagged | Passed, []string{"b"}},
		{"add", Seen, []string{"b"}, mailbox.FlagsAdd, Deleted, []string{"B", "a"}, Seen | Deleted, []string{"a", "b"}},
		{"remove", Seen | Deleted, []string{"Work", "x"}, mailbox.FlagsRemove, Deleted, []string{"work"}, Seen, []string{"x"}},
	} {
		sys, kws := Apply(c.sys, c.kws, c.op, c.addSys, c.addKw)
		if sys != c.wantSys || !slices.Equal(kws, c.wantKw) {
			t.Errorf("%s: %v %v, want %v %v", c.name, sys, kws, c.wantSys, c.wantKw)
		}
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	got := List(Draft|Passed|Seen|Answered|Flagged|Deleted, []string{"$Junk"})
	want := []string{"$Junk", `\Answered`, `\Deleted`, `\Draft`, `\Flagged`, `\Seen`}
	if !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
}

// A Change says which messages it leaves as they were.
func TestChange(t *testing.T) {
	t.Parallel()
	c := NewChange(mailbox.FlagsAdd, []string{`\Seen`, "Work"})
	if sys, kws, ok := c.To(Flagged, nil); !ok || sys != Flagged|Seen || !slices.Equal(kws, []string{"Work"}) {
		t.Errorf("To = %v %v %v", sys, kws, ok)
	}
	if _, _, ok := c.To(Seen, []string{"work"}); ok {
		t.Error("a message that has the flags already is changed")
	}
}
