package smtp

import (
	gosmtp "github.com/emersion/go-smtp"

	"mailroom/internal/smtpconn"
)

// Reply maps a delivery error to its SMTP reply; see smtpconn.Reply. (The
// MX answers a foreign domain with 554 5.7.1 itself, in Rcpt.)
func Reply(err error) *gosmtp.SMTPError { return smtpconn.Reply(err) }
