package alias

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestIncludeFanOutIsLinear: include files that name the next one several
// times (as a list of lists kept by hand may) are each read once per
// expansion; otherwise nine levels of three would be 3^9 reads, and a
// list owner could stall every delivery to the alias.
func TestIncludeFanOutIsLinear(t *testing.T) {
	files := map[string]string{}
	for i := range 9 {
		files[fmt.Sprintf("/f%d", i)] = strings.Repeat(fmt.Sprintf(":include:/f%d\n", i+1), 3) + "bob\n"
	}
	files["/f9"] = "carol\n"
	opens := 0
	read := fakeFiles(files)
	opts := Options{MaxDepth: 20, ReadInclude: func(p string) (io.ReadCloser, error) { opens++; return read(p) }}
	root, err := Expand(context.Background(), mustParse(t, "list: :include:/f0\n"), mustAddr(t, "list@example.org"), newResolver(nil), opts)
	if err != nil {
		t.Fatal(err)
	}
	if opens > 10 {
		t.Errorf("%d include files opened for 10 distinct files", opens)
	}
	if got, want := leavesString(root), "mailbox:example.org/carol<carol@example.org> mailbox:example.org/bob<bob@example.org>"; got != want {
		t.Errorf("leaves %s, want %s", got, want)
	}
	var b strings.Builder
	root.Format(&b)
	if !strings.Contains(b.String(), "include /f1: duplicate, expanded above") {
		t.Errorf("route does not say the include was expanded above:\n%s", b.String())
	}
}
