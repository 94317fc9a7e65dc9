package smtp

import (
	"errors"
	"io"
	"strings"

	"mailroom/internal/spool"
	"mailroom/mailauth/dkim"
)

// MailAuth is what a Server does for mail authentication and filtering,
// beyond the SMTP protocol itself.
type MailAuth struct {
	// Signer DKIM-signs every submitted message whose From: domain has a
	// key (Submission only; mail received on the MX is never signed).
	// *dkim.Signer implements it.
	Signer Signer
	// SpoolDir holds messages too large for memory while they are
	// signed, checked or filtered ("" for the system's temporary
	// directory). Files there are unlinked at once.
	SpoolDir string
}

// Signer returns the DKIM-Signature fields for a message, "" when its
// From: domain has no key; an error wrapping dkim.ErrNoFrom means the
// message cannot be attributed to a domain and goes out unsigned.
type Signer interface {
	Sign(msg io.Reader) (string, error)
}

// sign reads the submitted message msg into a spool and returns it with
// its DKIM signatures in front. The caller closes the spool after
// delivery. A message whose author cannot be told (no usable From:) is
// passed on unsigned, as Postfix with opendkim does: the receiving side
// judges it, and refusing the user's mail would help nobody.
func (s *session) sign(msg io.Reader) (io.Reader, *spool.Spool, error) {
	sp := spool.New(s.srv.opts.Auth.SpoolDir, 0)
	if _, err := sp.ReadFrom(msg); err != nil {
		sp.Close()
		return nil, nil, err
	}
	sig, err := s.srv.opts.Auth.Signer.Sign(sp.Reader(0))
	switch {
	case errors.Is(err, dkim.ErrNoFrom):
		s.log.Info("not DKIM-signed: no usable From: field", "err", err)
	case err != nil:
		sp.Close()
		return nil, nil, err
	case sig == "":
		s.log.Debug("not DKIM-signed: no key for the From: domain")
	}
	return io.MultiReader(strings.NewReader(sig), sp.Reader(0)), sp, nil
}
