package mailbox

import "fmt"

// FormatError is a mail home that holds mail in another format than the
// one configured ([delivery] format): storing mail beside it would start
// a second store that neither mail readers nor the IMAP server would see
// together with the first, so the store refuses, temporarily (the mail
// waits in the queue while the administrator moves the home to the
// configured format or sets the format back).
type FormatError struct {
	Home   string // the mail home, relative to the mail root
	Found  string // what it holds, such as "a Maildir (Maildir/)"
	Format string // the configured format
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("mail home %s holds %s, but [delivery] format is %q: refusing to start a second store beside it; move its mail to %s or set format back", e.Home, e.Found, e.Format, e.Format)
}

// Temporary reports true: nothing is bounced while the setup is fixed.
func (e *FormatError) Temporary() bool { return true }
