package smtp

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailroom/mda"
)

// Reply maps a delivery error to its SMTP reply. Permanent failures are the
// sender's fault (unknown user, bad address, too big); anything else is
// temporary, because a 5xx for our own trouble would make the sender give
// up on mail we could have taken later.
func Reply(err error) *gosmtp.SMTPError {
	var se *gosmtp.SMTPError
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, mda.ErrNoSuchUser):
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	case errors.Is(err, mda.ErrNotLocal):
		return errRelayDenied
	case errors.Is(err, mda.ErrBadAddress):
		return &gosmtp.SMTPError{Code: 501, EnhancedCode: gosmtp.EnhancedCode{5, 1, 3}, Message: "Bad address syntax"}
	case errors.Is(err, mda.ErrTooBig):
		return &gosmtp.SMTPError{Code: 552, EnhancedCode: gosmtp.EnhancedCode{5, 3, 4}, Message: "Message too big"}
	case errors.Is(err, gosmtp.ErrTooLongLine):
		// RFC 5321 §4.5.3.1.6 allows 1000 octets a line; we take 2000.
		return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 6, 0}, Message: "Line too long"}
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}
	case errors.Is(err, context.Canceled):
		return &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 3, 2}, Message: "Shutting down, try again later"}
	default:
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, try again later"}
	}
}

var errSeq atomic.Uint64

func newErrID() string { return fmt.Sprintf("E%d-%d", time.Now().Unix(), errSeq.Add(1)) }
