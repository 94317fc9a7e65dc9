package imap

import (
	"strings"
	"testing"
)

// containsFold agrees with folding the whole text, on ASCII and non-ASCII
// texts and terms.
func TestContainsFold(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		text, term string
		want       bool
	}{
		{"The Quick Brown Fox", "quick brown", true},
		{"The Quick Brown Fox", "QUICK", true},
		{"The Quick Brown Fox", "quick  brown", false},
		{"Wohnt in der Straße.", "STRASSE", true},  // ß folds to ss
		{"Wohnt in der Strasse.", "straße", true},  // and the other way
		{"273 \u212a is cold", "273 k", true},      // KELVIN SIGN folds to k
		{"plain ascii text", "stra\u00dfe", false}, // a non-ASCII term in ASCII text
		{"ΣΊΣΥΦΟΣ und σίσυφος", "σίσυφοσ", true},
		{"", "x", false},
		{"bad utf-8 \xff\xfe here", "HERE", true},
	} {
		var low []byte
		want := fold(tc.term)
		got := containsFold([]byte(tc.text), want, &low)
		if got != tc.want {
			t.Errorf("containsFold(%q, %q) = %v, want %v", tc.text, tc.term, got, tc.want)
		}
		if ref := strings.Contains(fold(tc.text), want); got != ref {
			t.Errorf("containsFold(%q, %q) = %v, folding the whole text gives %v", tc.text, tc.term, got, ref)
		}
	}
}

// BODY with several terms finds them in different parts, and a term in a
// non-text part (or only in the header) is not found.
func TestSearchBodyParts(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{})
	r := dialRaw(t, ts.addr)
	r.login()
	r.appendMsg("INBOX", "", "", "Subject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"+
		"--b\r\nContent-Type: text/plain\r\n\r\nfirst alpha\r\n"+
		"--b\r\nContent-Type: application/octet-stream\r\n\r\nhidden gamma\r\n"+
		"--b\r\nContent-Type: text/html\r\n\r\n<p>second BETA</p>\r\n--b--\r\n")
	r.ok("SELECT INBOX")
	for _, tc := range []struct{ key, want string }{
		{"BODY alpha", "1"}, {"BODY beta", "1"}, {"BODY alpha BODY beta", "1"},
		{"BODY gamma", ""}, {"BODY parts", ""}, {"TEXT parts", "1"}, {"TEXT beta", "1"},
		{"BODY alpha BODY gamma", ""}, {"OR BODY gamma BODY beta", "1"},
	} {
		if got := searchResp(t, r.ok("SEARCH %s", tc.key)); got != tc.want {
			t.Errorf("SEARCH %s = %q, want %q", tc.key, got, tc.want)
		}
	}
}

// scratch.contains, the header matcher, agrees with containsFold.
func TestScratchContains(t *testing.T) {
	t.Parallel()
	var sc scratch
	for _, tc := range []struct{ v, term string }{
		{"Hello World", "WORLD"}, {"Hello World", "worlds"}, {"Grüße", "GRÜSSE"},
		{"Straße", "strasse"}, {"plain", "plaiN"}, {"\u212a", "k"}, {"", ""}, {"abc", ""},
	} {
		want := sc.fold(tc.term)
		var low []byte
		if got, ref := sc.contains(tc.v, want), containsFold([]byte(tc.v), want, &low) || want == ""; got != ref {
			t.Errorf("contains(%q, %q) = %v, containsFold %v", tc.v, tc.term, got, ref)
		}
	}
}
