package smtp_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailroom/internal/mailtest"
	"mailroom/internal/mailtest/mailenv"
	"mailroom/mda"
	"mailroom/mda/alias"
	"mailroom/smtp"
)

// TestSubmissionSenderNotByCatchAllOrOthersForward: an alias of the
// administrator's that reaches alice lets her send as it, but a catch-all
// (which would let her be anybody@ the domain who has no account) and
// another user's .forward naming her (bob's choice of where to read his
// mail, not leave to send as him) do not.
func TestSubmissionSenderNotByCatchAllOrOthersForward(t *testing.T) {
	table, err := alias.Parse(strings.NewReader("sales: alice, bob\nteam: bob, alice\n@example.org: alice\n"), "aliases")
	if err != nil {
		t.Fatal(err)
	}
	env := mailenv.NewEnv(t, mailenv.EnvOptions{Users: []string{"alice@example.org", "bob@example.org"},
		Adjust: func(o *mda.Options) { o.Aliases = table }})
	dir := filepath.Join(env.MailRoot, "example.org", "bob")
	os.MkdirAll(dir, 0o700)
	if err := os.WriteFile(filepath.Join(dir, ".forward"), []byte("alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, _ := mailenv.StartSMTP(t, env, smtp.Options{Role: smtp.Submission, TLS: tlsConfig(t), Queue: &fakeQueue{},
		Delimiter: "+", AuthFailureDelay: -1})
	d := mailtest.Dial(t, "tcp", addr)
	login(d)
	for _, c := range []struct{ from, want string }{
		{"sales@example.org", "250"},
		{"team@example.org", "250"},      // alice is named, after bob's .forward reached her
		{"ceo@example.org", "553 5.7.1"}, // only the catch-all reaches alice
		{"bob@example.org", "553 5.7.1"}, // bob's .forward reaches alice
		{"bob+x@example.org", "553 5.7.1"},
	} {
		d.Send("MAIL FROM:<" + c.from + ">")
		d.Expect(c.want)
		d.Send("RSET")
		d.Expect("250")
	}
}
