package lmtp

import (
	"strings"
	"testing"
)

// TestDataAfterReset: go-smtp runs a BDAT transfer in a goroutine of its
// own, so a pipelined "BDAT 0" then RSET can call Data or LMTPData after
// Reset ended the transaction; they must answer, not dereference nil.
func TestDataAfterReset(t *testing.T) {
	s := &session{srv: New(Options{})}
	if err := s.Data(strings.NewReader("x")); err != errNoTransaction {
		t.Fatalf("Data with no transaction = %v", err)
	}
	if err := s.LMTPData(strings.NewReader("x"), nil); err != errNoTransaction {
		t.Fatalf("LMTPData with no transaction = %v", err)
	}
}
