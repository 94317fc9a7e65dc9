package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	goimap "github.com/emersion/go-imap/v2"

	"mailroom/internal/mailtest"
)

// TestIMAPNastyMessagesByHand drops the nasty corpus (imap/testdata/nasty:
// bad MIME, 8-bit and huge headers, no headers, NUL bytes, nesting 60 deep,
// truncation) into a Maildir by hand, as another program could, and
// fetches every item of each over IMAP with go-imap's client: every FETCH
// is answered OK, BODY[] is the file (with CRLF line ends) and as long as
// RFC822.SIZE says, and the session survives to the end.
func TestIMAPNastyMessagesByHand(t *testing.T) {
	t.Parallel()
	s := startIMAPServer(t, "", "alice@example.org")
	const user = "alice@example.org"
	c := imapLogin(t, s.IMAP, user, nil)
	selectState(t, c, "INBOX") // makes the Maildir

	dir := filepath.Join(mailtest.ModuleRoot(t), "imap", "testdata", "nasty")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{} // by corpus file name
	var names []string
	for i, e := range entries {
		if !strings.HasSuffix(e.Name(), ".eml") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		// Unique names that sort in corpus order, so UIDs follow it.
		name := fmt.Sprintf("1700000000.M%03dP1.nasty-%s", i, strings.TrimSuffix(e.Name(), ".eml"))
		dropFile(t, s.maildir("example.org/alice"), "new", name, string(data))
		files[e.Name()] = data
		names = append(names, e.Name())
	}

	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatalf("SELECT after dropping the corpus: %v", err)
	}
	if int(sel.NumMessages) != len(names) {
		t.Fatalf("INBOX has %d messages after dropping %d files", sel.NumMessages, len(names))
	}
	for i, name := range names {
		seq := uint32(i + 1)
		t.Run(name, func(t *testing.T) {
			msgs, err := c.Fetch(goimap.SeqSetNum(seq), &goimap.FetchOptions{
				UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
				BodyStructure: &goimap.FetchItemBodyStructure{Extended: true},
				BodySection: []*goimap.FetchItemBodySection{
					{Peek: true},
					{Peek: true, Specifier: goimap.PartSpecifierHeader},
					{Peek: true, Specifier: goimap.PartSpecifierText},
					{Peek: true, Part: []int{1}},
					{Peek: true, Part: []int{1}, Specifier: goimap.PartSpecifierMIME},
					{Peek: true, Part: []int{2, 1}},
					{Peek: true, Specifier: goimap.PartSpecifierHeader, HeaderFields: []string{"Subject", "From"}},
				},
			}).Collect()
			if err != nil {
				t.Fatalf("FETCH %d (every item): %v", seq, err)
			}
			if len(msgs) != 1 {
				t.Fatalf("FETCH %d: %d responses", seq, len(msgs))
			}
			m := msgs[0]
			body := m.FindBodySection(&goimap.FetchItemBodySection{})
			if int64(len(body)) != m.RFC822Size {
				t.Errorf("RFC822.SIZE %d, but BODY[] has %d bytes", m.RFC822Size, len(body))
			}
			// The file as served: LF line ends become CRLF. (A bare CR is
			// the server's to decide; compare only where there is none.)
			if want := crlfBytes(files[name]); !bytes.Contains(files[name], []byte("\r")) && !bytes.Equal(body, want) {
				t.Errorf("BODY[] differs from the file: %d bytes, want %d", len(body), len(want))
			}
			if m.BodyStructure == nil {
				t.Errorf("no BODYSTRUCTURE")
			}
			// BINARY may be refused for an unknown transfer encoding
			// (NO [UNKNOWN-CTE], RFC 3516); anything else is answered.
			_, err = c.Fetch(goimap.SeqSetNum(seq), &goimap.FetchOptions{
				BinarySection:     []*goimap.FetchItemBinarySection{{Peek: true}, {Peek: true, Part: []int{1}}},
				BinarySectionSize: []*goimap.FetchItemBinarySectionSize{{Part: []int{1}}},
			}).Collect()
			if err != nil && !strings.Contains(err.Error(), "UNKNOWN-CTE") {
				t.Errorf("FETCH %d (BINARY[] BINARY[1] BINARY.SIZE[1]): %v", seq, err)
			}
		})
	}
	// The same session goes on: a search over every message and a flag.
	if _, err := c.Search(&goimap.SearchCriteria{Body: []string{"zzz-not-there"}}, nil).Wait(); err != nil {
		t.Errorf("SEARCH BODY over the corpus: %v", err)
	}
	if _, err := c.Search(&goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "Subject", Value: "x"}}}, nil).Wait(); err != nil {
		t.Errorf("SEARCH HEADER Subject over the corpus: %v", err)
	}
	if err := c.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true,
		Flags: []goimap.Flag{goimap.FlagSeen}}, nil).Close(); err != nil {
		t.Errorf("STORE after the corpus: %v", err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Errorf("NOOP after the corpus: %v", err)
	}
}

// crlfBytes turns every LF not preceded by CR into CRLF.
func crlfBytes(b []byte) []byte {
	return bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
}
