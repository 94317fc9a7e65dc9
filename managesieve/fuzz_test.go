package managesieve

import (
	"bufio"
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"mailroom/internal/mailtest"
	"mailroom/sieve"
	"mailroom/sieve/sievestore"
)

var fuzzSeeds = []string{
	"CAPABILITY\r\n",
	"AUTHENTICATE \"PLAIN\" \"AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==\"\r\nLISTSCRIPTS\r\nPUTSCRIPT \"a\" {5+}\r\nkeep;\r\nSETACTIVE \"a\"\r\nGETSCRIPT \"a\"\r\n",
	"AUTHENTICATE \"LOGIN\"\r\n\"YWxpY2VAZXhhbXBsZS5vcmc=\"\r\n\"c2VjcmV0\"\r\nHAVESPACE \"x\" 10\r\nRENAMESCRIPT \"a\" \"b\"\r\nDELETESCRIPT \"b\"\r\n",
	"NOOP {3}\r\nabc\r\nCHECKSCRIPT \"if\"\r\nUNAUTHENTICATE\r\n",
	"STARTTLS\r\n",
	"PUTSCRIPT \"x\" {99999+}\r\n",
	"\"\\\"\r\n{}\r\n",
	"PUTSCRIPT \"a\\x\" {25+}\r\nDELETESCRIPT \"precious\"\r\n",
	"PUTSCRIPT \"a\" {9999999999999+}\r\nNOOP\r\n",
}

// FuzzSession runs whole sessions against the server over a pipe: no
// input may panic it or leave it silent.
func FuzzSession(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	root := f.TempDir()
	scripts, err := sievestore.New(sievestore.Options{MailRoot: root, MaxScriptSize: 4096})
	if err != nil {
		f.Fatal(err)
	}
	log := &mailtest.LockedBuffer{}
	srv := New(Options{Scripts: scripts, Auth: testAuth, Extensions: sieve.Extensions(), MaxScriptSize: 4096,
		Logger: slog.New(slog.NewTextHandler(log, nil)), Panics: mailtest.Panics})
	l := mailtest.NewPipeListener()
	go srv.Serve(l)
	f.Cleanup(func() { srv.Close(); scripts.Close() })
	f.Fuzz(func(t *testing.T, session []byte) {
		reply := mailtest.PlaySession(t, l, session, []byte("\r\nLOGOUT\r\n"))
		if !bytes.Contains(reply, []byte("OK \"mailroom ManageSieve server ready\"\r\n")) {
			t.Fatalf("no greeting: %q", reply)
		}
		if strings.Contains(log.String(), "event=panic") {
			t.Fatalf("a command panicked:\n%s", log)
		}
	})
}

// FuzzDecoder: any bytes are read as commands or refused with an error,
// and a string the encoder writes reads back as itself.
func FuzzDecoder(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), "a \"quoted\" \\ string")
	}
	f.Add([]byte("X\r\n"), "line\r\nbreak")
	f.Fuzz(func(t *testing.T, in []byte, s string) {
		d := decoder{br: bufio.NewReader(bytes.NewReader(in)), maxLiteral: 1024}
		for range 100 {
			cmd, err := d.readCommand()
			if err != nil {
				var se *syntaxError
				var tb *tooBigError
				if !errors.As(err, &se) && !errors.As(err, &tb) {
					break
				}
				continue
			}
			if cmd.name == "" || strings.ToUpper(cmd.name) != cmd.name {
				t.Fatalf("command name %q", cmd.name)
			}
		}
		var b bytes.Buffer
		e := encoder{bw: bufio.NewWriter(&b)}
		e.raw("X ").str(s).raw("\r\n").flush()
		d = decoder{br: bufio.NewReader(&b), maxLiteral: 1 << 20}
		cmd, err := d.readCommand()
		if err != nil {
			t.Fatalf("encoded %q does not read back: %v (%q)", s, err, b.String())
		}
		if len(cmd.args) != 1 || cmd.args[0].s != s {
			t.Fatalf("encoded %q reads back as %+v", s, cmd.args)
		}
	})
}
