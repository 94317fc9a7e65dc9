package mailtest

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"mailroom/internal/panics"
)

// Panics records the panics recovered by the servers that this test
// process starts: give it as the servers' Options.Panics (mailenv's
// Start helpers do), and Main fails the run if it counted any.
var Panics = new(panics.Recorder)

// Main runs the tests of a package whose servers record into Panics and
// fails the run if any recovered a panic, even when every test passed (a
// panic in a session is recovered and logged, and the client sees only a
// dropped connection or a 421): TestMain(m) { mailtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if n := Panics.Count(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d panic(s) recovered during the tests; the first:\n", n)
		for _, p := range Panics.First() {
			fmt.Fprintln(os.Stderr, p)
		}
		code = 1
	}
	os.Exit(code)
}

// loggedPanic reports whether a server log (text or JSON) records a
// recovered panic (package panics logs event=panic).
func loggedPanic(log string) bool {
	return strings.Contains(log, "event=panic") || strings.Contains(log, `"event":"panic"`)
}
