package index

import (
	"slices"
	"testing"
)

func TestCounters(t *testing.T) {
	t.Parallel()
	c := Counters{UIDValidity: 1700000000, UIDNext: 5, ModSeq: 9}
	b := AppendCounters([]byte{1}, c)
	if len(b) != 1+CountersSize {
		t.Fatalf("%d bytes", len(b))
	}
	if got, ok := ReadCounters(b[1:]); !ok || got != c {
		t.Errorf("ReadCounters = %+v, %v", got, ok)
	}
	for _, bad := range [][]byte{b[1:10], AppendCounters(nil, Counters{UIDNext: 1}), AppendCounters(nil, Counters{UIDValidity: 1})} {
		if _, ok := ReadCounters(bad); ok {
			t.Errorf("ReadCounters(%x) ok", bad)
		}
	}
	for _, r := range []struct {
		uid    uint32
		modSeq uint64
		ok     bool
	}{{1, 9, true}, {4, 1, true}, {0, 1, false}, {5, 1, false}, {1, 10, false}} {
		if c.Holds(r.uid, r.modSeq) != r.ok {
			t.Errorf("Holds(%d, %d) = %v", r.uid, r.modSeq, !r.ok)
		}
	}
}

func TestKeywords(t *testing.T) {
	t.Parallel()
	kws := []string{"$Junk", "Work", ""}
	b := AppendKeywords([]byte("x"), kws)
	var got []string
	rest := b[1:]
	for len(rest) > 0 {
		k, r, ok := ReadKeyword(rest)
		if !ok {
			t.Fatalf("ReadKeyword(%x) failed", rest)
		}
		got, rest = append(got, k), r
	}
	if !slices.Equal(got, kws) {
		t.Errorf("read back %q", got)
	}
	for _, cut := range [][]byte{{5, 'a', 'b'}, {0x80}, nil} {
		if _, _, ok := ReadKeyword(cut); ok {
			t.Errorf("ReadKeyword(%x) ok", cut)
		}
	}
}
