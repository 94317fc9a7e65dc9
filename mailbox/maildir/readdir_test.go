package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestReadNames lists a directory larger than one getdents buffer, twice
// through the same handle, and one removed while open.
func TestReadNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var want []string
	for i := range 3000 {
		name := fmt.Sprintf("%d.M%dP1Q%d.a-fairly-long-host-name.example.org,S=100,W=104:2,S", 1700000000+i, i, i)
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o700)
	want = append(want, "sub")
	slices.Sort(want)
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for round := range 2 {
		got, err := readNames(d)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: %d names, want %d", round, len(got), len(want))
		}
	}
	empty := filepath.Join(t.TempDir(), "gone")
	os.Mkdir(empty, 0o700)
	g, err := os.Open(empty)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	os.Remove(empty)
	if got, err := readNames(g); err != nil || len(got) != 0 {
		t.Errorf("removed directory: %v, %v", got, err)
	}
}
