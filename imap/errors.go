package imap

import (
	"context"
	"errors"

	goimap "github.com/emersion/go-imap/v2"

	"mailroom/mailbox"
)

// Errors are turned into IMAP responses here and only here. The client
// sees a response code and a fixed text; the real error goes to the log.

func no(code goimap.ResponseCode, text string) *goimap.Error {
	return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: code, Text: text}
}

func bad(text string) *goimap.Error {
	return &goimap.Error{Type: goimap.StatusResponseTypeBad, Code: goimap.ResponseCodeClientBug, Text: text}
}

var (
	errReadOnly     = no(goimap.ResponseCodeCannot, "Mailbox is read-only (EXAMINE)")
	errBadName      = no(goimap.ResponseCodeCannot, "Invalid mailbox name")
	errTemporary    = no(goimap.ResponseCodeUnavailable, "Temporary failure, please try again later")
	errShuttingDown = no(goimap.ResponseCodeUnavailable, "Server shutting down")
	errExpunged     = no(goimap.ResponseCode("EXPUNGEISSUED"), "Some of the requested messages no longer exist")
	errAuthFailed   = no(goimap.ResponseCodeAuthenticationFailed, "Authentication failed")
)

// fail maps a store error of operation op to the client's answer.
func (s *session) fail(op string, err error) error {
	return s.mapErr(op, err, false)
}

// failTry is fail for APPEND, COPY and MOVE, where a missing destination
// is TRYCREATE (RFC 9051 §6.3.12).
func (s *session) failTry(op string, err error) error {
	return s.mapErr(op, err, true)
}

func (s *session) mapErr(op string, err error, tryCreate bool) error {
	var ie *goimap.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ie):
		return ie
	case errors.Is(err, mailbox.ErrNoFolder):
		if tryCreate {
			return no(goimap.ResponseCodeTryCreate, "No such mailbox")
		}
		return no(goimap.ResponseCodeNonExistent, "No such mailbox")
	case errors.Is(err, mailbox.ErrFolderExists):
		return no(goimap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, mailbox.ErrBadFolderName):
		return errBadName
	case errors.Is(err, mailbox.ErrNotAllowed):
		return no(goimap.ResponseCodeCannot, "Operation not allowed on this mailbox")
	case errors.Is(err, mailbox.ErrNoMessage):
		return errExpunged
	case errors.Is(err, context.Canceled) && s.ctx.Err() != nil:
		return errShuttingDown
	}
	s.log.Error(op+" failed", "err", err)
	return errTemporary
}
