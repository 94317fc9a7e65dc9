package index

import (
	"slices"
	"testing"

	"mailroom/mailbox"
)

func uidsOf(msgs []mailbox.Message) []uint32 {
	out := make([]uint32, len(msgs))
	for i, m := range msgs {
		out[i] = m.UID
	}
	return out
}

// Delta after additions alone appends to the last snapshot's array; after
// updates and removals it copies; a snapshot that does not add up is
// refused; earlier snapshots never change.
func TestSnapshotDelta(t *testing.T) {
	t.Parallel()
	var s Snapshots
	c := Counters{UIDValidity: 7, UIDNext: 4, ModSeq: 1}
	msgs := Make(3)
	for i := range msgs {
		msgs[i] = mailbox.Message{UID: uint32(i + 1), Flags: s.Flags(0, nil)}
	}
	s1 := s.Set(c, msgs)
	if s1.UIDValidity != 7 || s1.UIDNext != 4 || s1.HighestModSeq != 1 || cap(s1.Messages) != 3 {
		t.Fatalf("Set = %+v", s1)
	}
	m := s.Delta(s1, 4, nil, []mailbox.Message{{UID: 4}}, nil)
	if !slices.Equal(uidsOf(m), []uint32{1, 2, 3, 4}) || &m[0] != &s1.Messages[0] {
		t.Fatalf("an addition: %v, shared array %v", uidsOf(m), &m[0] == &s1.Messages[0])
	}
	s2 := s.Set(c, m)
	seen := s.Flags(Seen, nil)
	m = s.Delta(s2, 3, []mailbox.Message{{UID: 2, Flags: seen}}, nil, []uint32{3})
	if !slices.Equal(uidsOf(m), []uint32{1, 2, 4}) || !slices.Equal(m[1].Flags, []string{`\Seen`}) || &m[0] == &s2.Messages[0] {
		t.Fatalf("an update and a removal: %v %v", uidsOf(m), m[1].Flags)
	}
	if len(s1.Messages) != 3 || len(s2.Messages) != 4 || len(s2.Messages[1].Flags) != 0 {
		t.Errorf("an earlier snapshot changed: %v %v", uidsOf(s1.Messages), s2.Messages[1].Flags)
	}
	if s.Delta(s2, 9, nil, nil, nil) != nil || s.Delta(nil, 0, nil, nil, nil) != nil {
		t.Error("Delta from a snapshot that does not add up")
	}
}

// Flags hands out one slice per distinct set.
func TestSnapshotFlags(t *testing.T) {
	t.Parallel()
	var s Snapshots
	a, b := s.Flags(Seen, []string{"$Junk"}), s.Flags(Seen, []string{"$Junk"})
	if &a[0] != &b[0] || !slices.Equal(a, []string{"$Junk", `\Seen`}) {
		t.Errorf("Flags = %v, %v (shared %v)", a, b, &a[0] == &b[0])
	}
	if got := s.Flags(Seen|Flagged, nil); !slices.Equal(got, []string{`\Flagged`, `\Seen`}) {
		t.Errorf("Flags = %v", got)
	}
	s.ForgetFlags()
	if c := s.Flags(Seen, []string{"$Junk"}); &c[0] == &a[0] {
		t.Error("ForgetFlags kept the lists")
	}
}
