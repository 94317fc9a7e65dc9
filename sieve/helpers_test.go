package sieve

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

// testEnvelope is the envelope every table and differential test uses.
var testEnvelope = Envelope{From: "sender@example.org", To: "me+tag@example.com"}

func readTestMessage(t testing.TB, msg string) *Message {
	t.Helper()
	m, err := ReadMessage(func() io.Reader { return strings.NewReader(msg) }, int64(len(msg)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustCompile(t testing.TB, src string, opts Options) *Script {
	t.Helper()
	s, err := Compile([]byte(src), opts)
	if err != nil {
		t.Fatalf("compile: %v\n%s", err, src)
	}
	return s
}

// canonical writes a result as sorted lines, the form the differential
// test compares with Pigeonhole's: stores into one folder are one line
// (the implicit keep with an explicit store into INBOX too), flags lower
// case and sorted, a discard only when nothing else happens.
func canonical(res *Result, err error) []string {
	var out []string
	if err != nil {
		out = append(out, "error")
	}
	stores := map[string][]string{}
	var order []string
	store := func(folder string, flags []string) {
		if _, ok := stores[folder]; !ok {
			order = append(order, folder)
			stores[folder] = []string{}
		}
		for _, f := range flags {
			f = strings.ToLower(f)
			if !slices.Contains(stores[folder], f) {
				stores[folder] = append(stores[folder], f)
			}
		}
	}
	var other []string
	for _, a := range res.Actions {
		switch x := a.(type) {
		case Keep:
			store("INBOX", x.Flags)
		case FileInto:
			store(folderKey(strings.TrimSpace(x.Mailbox)), x.Flags)
		case Redirect:
			other = append(other, "redirect "+strings.ToLower(x.Address))
		case Reject:
			other = append(other, "reject "+strings.TrimSpace(x.Reason))
		case Discard:
			other = append(other, "discard")
		case Vacation:
			other = append(other, fmt.Sprintf("vacation subject=%q", x.Subject))
		}
	}
	for _, f := range order {
		fl := stores[f]
		slices.Sort(fl)
		out = append(out, fmt.Sprintf("store %s flags=%s", f, strings.Join(fl, " ")))
	}
	out = append(out, other...)
	if len(out) > 1 {
		out = slices.DeleteFunc(out, func(s string) bool { return s == "discard" })
	}
	slices.Sort(out)
	return out
}
