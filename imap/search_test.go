package imap

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"mailroom/internal/memfolders"
)

// appendRaw appends msg with LITERAL+ over a raw connection.
func (r *raw) appendMsg(folder, flags, date, msg string) {
	r.t.Helper()
	args := ""
	if flags != "" {
		args += " (" + flags + ")"
	}
	if date != "" {
		args += ` "` + date + `"`
	}
	r.ok("APPEND %s%s {%d+}\r\n%s", folder, args, len(msg), msg)
}

func searchFixture(t *testing.T, opts Options) *raw {
	ts := start(t, opts)
	r := dialRaw(t, ts.addr)
	r.login()
	r.appendMsg("INBOX", `\Seen \Flagged $Work`, "01-Jan-2024 10:00:00 +0000",
		"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nCc: carol@example.org\r\nSubject: Hello World\r\n"+
			"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nX-Tag: alpha\r\n\r\nThe quick brown fox\r\n")
	r.appendMsg("INBOX", `\Answered`, "15-Feb-2024 23:30:00 -0500",
		"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nTo: alice@example.org\r\nSubject: =?iso-8859-1?q?Gr=FC=DFe?=\r\n"+
			"Date: Thu, 15 Feb 2024 23:30:00 -0500\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"+
			"Content-Transfer-Encoding: quoted-printable\r\n\r\nWohnt in der Stra=C3=9Fe.\r\n")
	greek := base64.StdEncoding.EncodeToString([]byte("ΣΊΣΥΦΟΣ und σίσυφος"))
	r.appendMsg("INBOX", `\Deleted \Draft`, "20-Mar-2024 08:00:00 +0100",
		"From: bob@example.org\r\nTo: alice@example.org\r\nBcc: dave@example.org\r\nSubject: =?utf-8?b?"+
			base64.StdEncoding.EncodeToString([]byte("ΣΊΣΥΦΟΣ"))+"?=\r\nDate: Wed, 20 Mar 2024 08:00:00 +0100\r\n"+
			"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"+
			"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"+greek+"\r\n--b\r\n"+
			"Content-Type: application/octet-stream\r\n\r\n"+strings.Repeat("padding ", 250)+"\r\n--b--\r\n")
	r.appendMsg("INBOX", "", "01-Apr-2024 12:00:00 +0000", "Subject: Re: hello\r\n\r\nnothing\r\n")
	r.ok("SELECT INBOX")
	return r
}

func searchResp(t *testing.T, u []string) string {
	t.Helper()
	for _, l := range u {
		if strings.HasPrefix(l, "* SEARCH") {
			return strings.TrimSpace(strings.TrimPrefix(l, "* SEARCH"))
		}
	}
	t.Fatalf("no SEARCH response in %q", u)
	return ""
}

// TestSearchKeys runs every key on a store without a header cache, and
// twice on one with (filling it, then from it).
func TestSearchKeys(t *testing.T) {
	t.Parallel()
	for _, store := range []struct {
		name   string
		opts   Options
		rounds int
	}{
		{"plain", Options{}, 1},
		{"cached", Options{Store: memfolders.NewWithHeaderCache()}, 2},
	} {
		t.Run(store.name, func(t *testing.T) {
			t.Parallel()
			r := searchFixture(t, store.opts)
			for round := range store.rounds {
				t.Run(fmt.Sprint(round), func(t *testing.T) { testSearchKeys(t, r) })
			}
			if cs, ok := store.opts.Store.(*memfolders.Store); ok {
				if st := cs.CacheStats(); st.Hits == 0 || st.Stored != 4 {
					t.Errorf("header cache %+v: want hits, and the 4 messages stored once each", st)
				}
			}
		})
	}
}

func testSearchKeys(t *testing.T, r *raw) {
	lit := func(s string) string { return fmt.Sprintf("{%d+}\r\n%s", len(s), s) }
	for _, tc := range []struct{ key, want string }{
		{"ALL", "1 2 3 4"},
		{"SEEN", "1"}, {"UNSEEN", "2 3 4"},
		{"ANSWERED", "2"}, {"UNANSWERED", "1 3 4"},
		{"DELETED", "3"}, {"UNDELETED", "1 2 4"},
		{"DRAFT", "3"}, {"UNDRAFT", "1 2 4"},
		{"FLAGGED", "1"}, {"UNFLAGGED", "2 3 4"},
		{"KEYWORD $Work", "1"}, {"KEYWORD $work", "1"}, {"UNKEYWORD $Work", "2 3 4"},
		// This session is the first to select them: all are \Recent
		// (RFC 3501 §2.3.2), NEW is RECENT UNSEEN.
		{"NEW", "2 3 4"}, {"RECENT", "1 2 3 4"}, {"OLD", ""}, {"NOT RECENT", ""}, {"OR OLD SEEN", "1"},
		{"BEFORE 15-Feb-2024", "1"}, {"ON 15-Feb-2024", "2"}, {"SINCE 15-Feb-2024", "2 3 4"},
		{"SENTBEFORE 15-Feb-2024", "1"}, {"SENTON 15-Feb-2024", "2"}, {"SENTSINCE 15-Feb-2024", "2 3"},
		{"LARGER 1500", "3"}, {"SMALLER 1500", "1 2 4"},
		{"FROM alice", "1"}, {"FROM ALICE@EXAMPLE", "1"}, {"TO alice", "2 3"}, {"CC carol", "1"}, {"BCC dave", "3"},
		{"CHARSET UTF-8 FROM " + lit("JÜRGEN"), "2"},
		{"SUBJECT hello", "1 4"},
		{"CHARSET UTF-8 SUBJECT " + lit("grüße"), "2"},
		{"CHARSET UTF-8 SUBJECT " + lit("GRÜSSE"), "2"},  // full case folding: ß = ss
		{"CHARSET UTF-8 SUBJECT " + lit("σίσυφος"), "3"}, // final sigma
		{"HEADER X-Tag alpha", "1"}, {`HEADER X-Tag ""`, "1"}, {"HEADER X-Missing x", ""},
		{"BODY fox", "1"}, {"BODY FOX", "1"},
		{"CHARSET UTF-8 BODY " + lit("straße"), "2"}, // quoted-printable decoded
		{"BODY STRASSE", "2"},
		{"CHARSET UTF-8 BODY " + lit("Σίσυφος"), "3"}, // base64 decoded
		{"BODY hello", ""}, {"TEXT hello", "1 4"}, {"TEXT fox", "1"}, {"TEXT carol", "1"},
		{"UID 2:3", "2 3"}, {"UID 2:*", "2 3 4"}, {"UID 1,3", "1 3"}, {"2:*", "2 3 4"}, {"*", "4"},
		{"NOT SEEN", "2 3 4"}, {"OR SEEN DRAFT", "1 3"}, {"NOT OR SEEN DRAFT", "2 4"},
		{"OR FLAGGED (ANSWERED SUBJECT Gr)", "1 2"},
		{"UNDELETED FROM alice", "1"}, {"(UNSEEN (SMALLER 1500)) NOT TO alice", "4"},
		{"CHARSET US-ASCII SUBJECT world", "1"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			if got := searchResp(t, r.ok("SEARCH %s", tc.key)); got != tc.want {
				t.Errorf("SEARCH %s = %q, want %q", tc.key, got, tc.want)
			}
		})
	}
	if got := searchResp(t, r.ok("UID SEARCH SEEN")); got != "1" {
		t.Errorf("UID SEARCH SEEN = %q", got)
	}
	if _, st := r.cmd("SEARCH CHARSET ISO-8859-7 SUBJECT x"); !strings.HasPrefix(st, "NO [BADCHARSET") {
		t.Errorf("unknown charset: %q", st)
	}
}

func TestESearchAndSearchRes(t *testing.T) {
	t.Parallel()
	r := searchFixture(t, Options{})
	u := r.ok("SEARCH RETURN (MIN MAX COUNT) UNSEEN")
	if len(u) != 1 || !strings.Contains(u[0], "MIN 2 MAX 4 COUNT 3") {
		t.Errorf("ESEARCH: %q", u)
	}
	u = r.ok("UID SEARCH RETURN (ALL) UNSEEN")
	if len(u) != 1 || !strings.Contains(u[0], "UID ALL 2:4") {
		t.Errorf("ESEARCH ALL: %q", u)
	}
	r.ok("SEARCH RETURN (SAVE) OR FLAGGED DRAFT")
	u = r.ok("FETCH $ (UID)")
	if strings.Join(u, "|") != "* 1 FETCH (UID 1)|* 3 FETCH (UID 3)" {
		t.Errorf("FETCH $: %q", u)
	}
	if got := searchResp(t, r.ok("SEARCH $ SEEN")); got != "1" {
		t.Errorf("SEARCH $ SEEN: %q", got)
	}
	r.ok("SEARCH RETURN (SAVE MAX) ALL")
	if u := r.ok("UID FETCH $ (FLAGS)"); len(u) != 1 || !strings.HasPrefix(u[0], "* 4 FETCH") {
		t.Errorf("SAVE with MAX saved %q", u)
	}
}
