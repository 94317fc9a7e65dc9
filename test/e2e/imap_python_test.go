package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/mailtest"
)

// The three messages TestIMAPPythonWalk delivers to INBOX, in this order.
// The script knows them by position: plain (1), multi (2), big (3).

var walkPlain = "From: Carol <carol@example.net>\n" +
	"Subject: Plain hello\n" +
	"To: Alice <alice@example.org>\n" +
	"Message-ID: <plain-1@example.net>\n" +
	"Date: Fri, 01 Mar 2024 12:00:00 +0000\n" +
	"\n" +
	"Hello Alice,\n" +
	"the quick brown fox jumps over the lazy dog.\n"

// The parts of walkMulti, in wire form (CRLF), as BODY[n], BODY[n.MIME]
// and BINARY[n] must return them. A part's body ends before the CRLF that
// precedes the boundary (RFC 2046 §5.1.1).
var (
	walkPart1MIME    = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
	walkPart1Body    = "Gr=C3=BC=C3=9Fe aus K=C3=B6ln,\r\nsch=C3=B6ne Zeit."
	walkPart1Decoded = "Grüße aus Köln,\r\nschöne Zeit."
	walkPart2MIME    = "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"blob.bin\"\r\n\r\n"
	// walkPart2Decoded has a NUL, so BINARY must send it as literal8.
	walkPart2Decoded = []byte("\x00\x01\x02 binary attachment \xff\xfe\r\n" + strings.Repeat("0123456789", 8))
	walkPart2Body    = wrap76(base64.StdEncoding.EncodeToString(walkPart2Decoded))
)

func wrap76(s string) string {
	var lines []string
	for len(s) > 76 {
		lines = append(lines, s[:76])
		s = s[76:]
	}
	return strings.Join(append(lines, s), "\r\n")
}

var walkMulti = lf("From: Dave <dave@example.com>\r\n" +
	"To: Alice <alice@example.org>\r\n" +
	"Subject: =?UTF-8?Q?=C3=84rger_im_B=C3=BCro?=\r\n" +
	"Message-ID: <multi-2@example.com>\r\n" +
	"Date: Sat, 01 Feb 2025 08:30:00 +0100\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1-boundary\"\r\n" +
	"\r\n" +
	"This is a multipart message.\r\n" +
	"--b1-boundary\r\n" + walkPart1MIME + walkPart1Body + "\r\n" +
	"--b1-boundary\r\n" + walkPart2MIME + walkPart2Body + "\r\n" +
	"--b1-boundary--\r\n")

var walkBig = func() string {
	var b strings.Builder
	b.WriteString("From: Bob <bob@example.org>\n" +
		"To: Alice <alice@example.org>\n" +
		"Subject: Large report\n" +
		"Message-ID: <big-3@example.org>\n" +
		"Date: Wed, 01 Jan 2020 09:00:00 +0000\n" +
		"\n")
	for i := range 80 {
		fmt.Fprintf(&b, "line %02d %s\n", i, strings.Repeat("lorem ipsum ", 5))
	}
	b.WriteString("end: zebracrossing\n")
	return b.String()
}()

const walkIdleSubject = "Delivered while idling"

// TestIMAPPythonWalk runs testdata/imap_walk.py, which walks the IMAP
// server with Python's imaplib: LOGIN, CAPABILITY, LIST, SELECT, FETCH of
// every item and section form, SEARCH, STORE, COPY, MOVE, EXPUNGE, UID
// EXPUNGE, APPEND, CREATE/RENAME/DELETE, SUBSCRIBE/LSUB, STATUS, and IDLE
// while this test delivers a message over LMTP: the EXISTS must come
// within 1 second of the delivery's 250. The script checks every answer
// against the messages delivered here, as stored in the Maildir.
func TestIMAPPythonWalk(t *testing.T) {
	t.Parallel()
	for _, f := range storeFormats {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			pythonWalk(t, f.name, f.config)
		})
	}
}

func pythonWalk(t *testing.T, format, config string) {
	python := mailtest.NeedTool(t, "python3")
	s := startIMAPServer(t, config, "alice@example.org")

	type specMessage struct {
		Name      string  `json:"name"`
		MessageID string  `json:"message_id"`
		Stored    string  `json:"stored"`    // the file in the Maildir, with CRLF: what BODY[] must be
		Delivered float64 `json:"delivered"` // Unix time of the 250
	}
	var msgs []specMessage
	for _, m := range []struct{ name, from, text, id string }{
		{"plain", "carol@example.net", walkPlain, "<plain-1@example.net>"},
		{"multi", "dave@example.com", walkMulti, "<multi-2@example.com>"},
		{"big", "bob@example.org", walkBig, "<big-3@example.org>"},
	} {
		before := storedMessages(t, s, format, "example.org/alice")
		at := deliverLMTP(t, s.LMTP, m.from, "alice@example.org", m.text)
		got := storedMessages(t, s, format, "example.org/alice")[len(before):]
		if len(got) != 1 {
			t.Fatalf("delivering %s: %d new messages in the store, want 1", m.name, len(got))
		}
		if tr := splitTrace(t, got[0].Data); tr.Rest != m.text {
			t.Fatalf("%s stored as %q, want %q after the trace fields", m.name, tr.Rest, m.text)
		}
		msgs = append(msgs, specMessage{m.name, m.id, crlf(got[0].Data), float64(at.UnixNano()) / 1e9})
	}
	spec := map[string]any{
		"messages": msgs,
		"multipart": map[string]string{
			"part1_mime":        walkPart1MIME,
			"part1_body":        walkPart1Body,
			"part1_decoded":     walkPart1Decoded,
			"part2_mime":        walkPart2MIME,
			"part2_body":        walkPart2Body,
			"part2_decoded_hex": hex.EncodeToString(walkPart2Decoded),
		},
		"idle_subject": walkIdleSubject,
	}
	specPath := filepath.Join(t.TempDir(), "spec.json")
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(specPath, data, 0o600); err != nil {
		t.Fatal(err)
	}

	script, err := filepath.Abs("testdata/imap_walk.py")
	if err != nil {
		t.Fatal(err)
	}
	host, port := hostPort(t, s.IMAP)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, script, host, port, "alice@example.org", smtpPassword, specPath)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr mailtest.LockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	var mu sync.Mutex
	sc := bufio.NewScanner(stdout)
	idled := false
	for sc.Scan() {
		line := sc.Text()
		mu.Lock()
		out.WriteString(line + "\n")
		mu.Unlock()
		if line == "IDLING" && !idled {
			idled = true
			idleMsg := "From: Erin <erin@example.net>\nTo: Alice <alice@example.org>\n" +
				"Subject: " + walkIdleSubject + "\nMessage-ID: <idle-4@example.net>\n\nwake up\n"
			at := deliverLMTP(t, s.LMTP, "erin@example.net", "alice@example.org", idleMsg)
			fmt.Fprintf(stdin, "DELIVERED %.6f\n", float64(at.UnixNano())/1e9)
		}
	}
	stdin.Close()
	err = cmd.Wait()
	t.Logf("imap_walk.py output:\n%s", out.String())
	if err != nil {
		t.Fatalf("imap_walk.py: %v\n%s\nstderr:\n%s", err, out.String(), stderr.String())
	}
	if !strings.Contains(out.String(), "ALL CHECKS PASSED") {
		t.Fatalf("imap_walk.py exited 0 without passing every check")
	}
}
