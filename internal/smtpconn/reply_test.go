package smtpconn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/mda"
)

func TestReply(t *testing.T) {
	cases := []struct {
		err  error
		code int
		enh  gosmtp.EnhancedCode
	}{
		{fmt.Errorf("x: %w", mda.ErrNoSuchUser), 550, gosmtp.EnhancedCode{5, 1, 1}},
		{mda.ErrNotLocal, 550, gosmtp.EnhancedCode{5, 1, 2}},
		{mda.ErrBadAddress, 501, gosmtp.EnhancedCode{5, 1, 3}},
		{fmt.Errorf("x: %w", mda.ErrBadSender), 501, gosmtp.EnhancedCode{5, 1, 7}},
		{mda.ErrTooBig, 552, gosmtp.EnhancedCode{5, 3, 4}},
		{gosmtp.ErrDataTooLarge, 552, gosmtp.EnhancedCode{5, 3, 4}},
		{fmt.Errorf("read message: %w", gosmtp.ErrDataTooLarge), 552, gosmtp.EnhancedCode{5, 3, 4}},
		{&os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}, 452, gosmtp.EnhancedCode{4, 3, 1}},
		{context.Canceled, 421, gosmtp.EnhancedCode{4, 3, 2}},
		{errors.New("secret internal detail"), 451, gosmtp.EnhancedCode{4, 3, 0}},
		{&os.PathError{Op: "open", Path: "/x", Err: syscall.EROFS}, 451, gosmtp.EnhancedCode{4, 3, 0}},
		{fmt.Errorf("read message: %w", gosmtp.ErrTooLongLine), 554, gosmtp.EnhancedCode{5, 6, 0}},
		{fmt.Errorf("deliver: %w", mda.ErrLoop), 554, gosmtp.EnhancedCode{5, 4, 6}},
		{&mda.PermanentError{Status: "5.3.0", Text: "command failed: no such list", Err: errors.New("secret")}, 550, gosmtp.EnhancedCode{5, 3, 0}},
		{&mda.PermanentError{Status: "2.0.0", Text: "bad status"}, 550, gosmtp.EnhancedCode{5, 0, 0}},
	}
	for _, c := range cases {
		r := Reply(c.err)
		if r.Code != c.code || r.EnhancedCode != c.enh {
			t.Errorf("Reply(%v) = %d %v, want %d %v", c.err, r.Code, r.EnhancedCode, c.code, c.enh)
		}
		if strings.Contains(r.Message, "secret") || strings.Contains(r.Message, "/x") {
			t.Errorf("Reply(%v) leaks internal text: %q", c.err, r.Message)
		}
	}
	r := Reply(&mda.PermanentError{Status: "5.3.0", Text: "exit 1: \x00bad\r\nline \xff"})
	if r.Message != "exit 1: ?bad??line ?" {
		t.Errorf("command text not made printable: %q", r.Message)
	}
}
