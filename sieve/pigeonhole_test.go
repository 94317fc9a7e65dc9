package sieve

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// pigeonhole runs Dovecot's sieve-test (Debian's dovecot-sieve), which
// prints the actions a script takes on a message without taking them.
type pigeonhole struct {
	bin  string
	conf string
	dir  string
}

func newPigeonhole(t *testing.T) *pigeonhole {
	bin := mailtest.NeedTool(t, "sieve-test")
	// sieve-test drops root privileges to mail_uid; as root, the files
	// it reads must be readable by that user.
	dir, err := os.MkdirTemp("", "sieve-diff-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"personal", "global", "mail"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	// The scripts that the corpus includes, where Pigeonhole looks.
	for _, loc := range []string{"personal", "global"} {
		files, _ := filepath.Glob(filepath.Join("testdata/pigeonhole/include", loc, "*.sieve"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, loc, filepath.Base(f)), b, 0o666); err != nil {
				t.Fatal(err)
			}
		}
	}
	conf := "mail_location = maildir:" + filepath.Join(dir, "mail") + "\n"
	if os.Geteuid() == 0 {
		conf += "mail_uid = nobody\nmail_gid = nogroup\n"
	}
	conf += "plugin {\n  sieve_extensions = +vacation-seconds\n" +
		"  sieve = file:" + filepath.Join(dir, "personal") + "\n" +
		"  sieve_global = file:" + filepath.Join(dir, "global") + "\n" +
		"  sieve_vacation_dont_check_recipient = no\n}\n"
	p := &pigeonhole{bin: bin, conf: filepath.Join(dir, "dovecot.conf"), dir: dir}
	if err := os.WriteFile(p.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// run returns Pigeonhole's actions in the form canonical writes ours.
func (p *pigeonhole) run(t *testing.T, name, script, msg string) []string {
	t.Helper()
	tmp, err := os.MkdirTemp(p.dir, "run-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	os.Chmod(tmp, 0o777)
	sf, mf := filepath.Join(tmp, name+".sieve"), filepath.Join(tmp, "msg.eml")
	if err := os.WriteFile(sf, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mf, []byte(msg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, "-c", p.conf, "-f", testEnvelope.From, "-r", testEnvelope.To, sf, mf)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, _ := cmd.CombinedOutput()
	return parsePigeonhole(string(out))
}

// parsePigeonhole reads sieve-test's report of the actions.
func parsePigeonhole(out string) []string {
	res := &Result{}
	var failed, compileErr bool
	var cur Action
	flush := func() {
		if cur != nil {
			res.Actions = append(res.Actions, cur)
			cur = nil
		}
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		trim := strings.TrimSpace(line)
		switch {
		case strings.Contains(line, "final result: failed"):
			failed = true
		case strings.Contains(line, "failed to compile") || strings.Contains(line, "Fatal: failed to compile"):
			compileErr = true
		case strings.HasPrefix(trim, "* store message in folder: "):
			flush()
			cur = FileInto{Mailbox: strings.TrimPrefix(trim, "* store message in folder: ")}
		case strings.HasPrefix(trim, "+ add IMAP flags: "):
			if f, ok := cur.(FileInto); ok {
				f.Flags = strings.Fields(strings.TrimPrefix(trim, "+ add IMAP flags: "))
				cur = f
			}
		case strings.HasPrefix(trim, "* redirect message to: "):
			flush()
			cur = Redirect{Address: strings.Trim(strings.TrimPrefix(trim, "* redirect message to: "), "<>")}
		case strings.HasPrefix(trim, "* reject message with reason: "):
			flush()
			cur = Reject{Reason: strings.TrimPrefix(trim, "* reject message with reason: ")}
		case trim == "* discard":
			flush()
			cur = Discard{}
		case strings.HasPrefix(trim, "* send vacation message:"):
			flush()
			cur = Vacation{}
		case strings.HasPrefix(trim, "=> subject : "):
			if v, ok := cur.(Vacation); ok {
				v.Subject = strings.TrimPrefix(trim, "=> subject : ")
				cur = v
			}
		case strings.HasPrefix(trim, "* "):
			flush()
			cur = FileInto{Mailbox: "UNKNOWN ACTION: " + trim}
		}
	}
	flush()
	if compileErr {
		return []string{"compile error"}
	}
	if failed {
		return canonical(&Result{Actions: []Action{Keep{Implicit: true}}}, fmt.Errorf("failed"))
	}
	return canonical(res, nil)
}

// TestPigeonhole runs every script of testdata/pigeonhole on every
// message there through this implementation and through Pigeonhole's
// sieve-test, and compares the actions.
func TestPigeonhole(t *testing.T) {
	p := newPigeonhole(t)
	scripts, _ := filepath.Glob("testdata/pigeonhole/*.sieve")
	msgs, _ := filepath.Glob("testdata/pigeonhole/*.eml")
	if len(scripts) < 10 || len(msgs) < 5 {
		t.Fatalf("corpus too small: %d scripts, %d messages", len(scripts), len(msgs))
	}
	for _, sf := range scripts {
		src, err := os.ReadFile(sf)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(sf), ".sieve")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, mf := range msgs {
				raw, err := os.ReadFile(mf)
				if err != nil {
					t.Fatal(err)
				}
				msg := string(raw)
				theirs := p.run(t, name, string(src), msg)
				ours := ourDiffRun(t, string(src), msg)
				if !slices.Equal(ours, theirs) {
					t.Errorf("%s on %s:\n ours:       %q\n pigeonhole: %q", name, filepath.Base(mf), ours, theirs)
				}
			}
		})
	}
}

// ourDiffRun is runTest with the time zone sieve-test runs in, and the
// compile error reported as Pigeonhole's is.
func ourDiffRun(t *testing.T, src, msg string) []string {
	s, err := Compile([]byte(src), Options{Name: "test", Loader: dirLoader("testdata/pigeonhole/include")})
	if err != nil {
		return []string{"compile error"}
	}
	res, err := s.Run(context.Background(), readTestMessage(t, msg), RunOptions{Envelope: testEnvelope, Location: time.UTC})
	return canonical(res, err)
}

// dirLoader loads included scripts from DIR/personal and DIR/global.
type dirLoader string

func (d dirLoader) Load(loc Location, name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(string(d), loc.String(), name+".sieve"))
	if os.IsNotExist(err) {
		return nil, ErrNotFound
	}
	return b, err
}

// TestPigeonholeRefuses checks that the scripts of testdata/pigeonhole/bad
// fail to compile here and in Pigeonhole alike.
func TestPigeonholeRefuses(t *testing.T) {
	p := newPigeonhole(t)
	files, _ := filepath.Glob("testdata/pigeonhole/bad/*.sieve")
	if len(files) < 20 {
		t.Fatalf("only %d bad scripts", len(files))
	}
	msg := "From: a@example.org\nSubject: x\n\nx\n"
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".sieve")
		if got := p.run(t, name, string(src), msg); !slices.Equal(got, []string{"compile error"}) {
			t.Errorf("%s: Pigeonhole compiled it (%q); the corpus is wrong", name, got)
		}
		if _, err := Compile(src, Options{Name: name, Loader: dirLoader("testdata/pigeonhole/include")}); err == nil {
			t.Errorf("%s: compiled here, refused by Pigeonhole", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
