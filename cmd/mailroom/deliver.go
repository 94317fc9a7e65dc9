package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"mailroom/internal/ctl"
	"mailroom/internal/smtpconn"
	"mailroom/mda"
)

type deliverArgs struct {
	From  string   `json:"from"`
	Rcpts []string `json:"rcpts"`
}

// cmdDeliver is the local delivery agent: a Postfix pipe(8) transport, an
// Exim pipe transport or fetchmail's mda run it with the message on stdin.
// Exit 0 means delivered to every recipient, 65 refused for good (a
// forwarding loop, too big, not allowed), 67 an unknown recipient, 75 try
// again later; on failure nothing is delivered. The first line of output
// then begins with the RFC 3463 status, which Postfix's pipe(8) puts in
// its bounce or delay notice in place of the one it would guess from the
// exit status (EX_DATAERR alone reads as 5.6.0 "data format error").
func cmdDeliver(args []string, stdin io.Reader, stderr io.Writer) error {
	fs, cf := newFlagSet("deliver", stderr)
	from := fs.String("f", "", "envelope sender (default, or \"\", or \"<>\": the null sender)")
	rcpts, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rcpts) == 0 {
		return withExit(exitUsage, errors.New("name at least one recipient"))
	}
	if *from == "<>" {
		*from = ""
	}
	cfg, err := cf.load()
	if err != nil {
		// A broken configuration is the administrator's to fix; the MTA
		// should keep the message meanwhile.
		return &dsnError{status: "4.3.5", exit: exitTempFail, err: err}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = call(ctx, cfg, "deliver", deliverArgs{From: *from, Rcpts: rcpts}, stdin, nil)
	var ce *ctl.Error
	var ee *exitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return dsnFromCtl(ce)
	case errors.As(err, &ee):
		return err
	}
	// Anything unexpected (socket trouble, I/O) is temporary.
	return &dsnError{status: "4.3.0", exit: exitTempFail, err: err}
}

// dsnError is a failed delivery as `mailroom deliver` reports it: an
// exit status and an RFC 3463 status that run prints first.
type dsnError struct {
	status string // "5.4.6"
	exit   int
	err    error
}

func (e *dsnError) Error() string { return e.err.Error() }
func (e *dsnError) Unwrap() error { return e.err }

// DSN is the RFC 3463 status that run writes at the start of the output.
func (e *dsnError) DSN() string { return e.status }

// dsnFromCtl splits the status off the message that deliverError made
// (possibly in the server, across the control socket).
func dsnFromCtl(ce *ctl.Error) error {
	status, text, ok := strings.Cut(ce.Msg, " ")
	if !ok || !isStatus(status) {
		status, text = "5.0.0", ce.Msg
		if ce.Exit == exitTempFail {
			status = "4.0.0"
		}
	}
	return &dsnError{status: status, exit: ce.Exit, err: errors.New(text)}
}

// isStatus reports whether s is an RFC 3463 status code: class 2, 4 or 5,
// a subject of 1 to 3 digits and a detail of 1 to 3 digits.
func isStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

// opDeliver resolves every recipient first, so that an unknown one stops
// the delivery before anything is written, then delivers to all or none.
func opDeliver(ctx context.Context, a *app, raw json.RawMessage, body io.Reader) (any, error) {
	args, err := decodeArgs[deliverArgs](raw)
	if err != nil {
		return nil, err
	}
	txn, err := a.mda.Begin(ctx, args.From, mda.Info{Proto: "local"})
	if err != nil {
		return nil, &ctl.Error{Exit: exitDataErr, Msg: err.Error()}
	}
	for _, r := range args.Rcpts {
		if err := txn.AddRcpt(ctx, r); err != nil {
			return nil, deliverError(a.log, err)
		}
	}
	return nil, deliverError(a.log, txn.DeliverAll(ctx, body))
}

// deliverError maps a delivery error to the sysexits status an MTA acts on,
// and a message that starts with the RFC 3463 status (split off again by
// dsnFromCtl). The message of a temporary failure says only what kind it
// is: an MTA copies a delivery command's output into its bounces and delay
// notices, and internal detail (file names) must not reach the sender. The
// detail goes to the log (the server's, when it did the delivery).
func deliverError(log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	r := smtpconn.Reply(err)
	status := fmt.Sprintf("%d.%d.%d", r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2])
	switch {
	case errors.Is(err, mda.ErrNoSuchUser), errors.Is(err, mda.ErrNotLocal), errors.Is(err, mda.ErrBadAddress):
		return &ctl.Error{Exit: exitNoUser, Msg: status + " " + err.Error()}
	case errors.Is(err, mda.ErrTooBig), errors.Is(err, mda.ErrLoop):
		// Not err.Error(): a loop's names the whole alias and .forward
		// chain, which is nobody's business outside.
		log.Info("delivery refused", "event", "rejected", "err", err)
		return &ctl.Error{Exit: exitDataErr, Msg: status + " " + r.Message}
	}
	var pe *mda.PermanentError
	if errors.As(err, &pe) {
		return &ctl.Error{Exit: exitDataErr, Msg: status + " " + r.Message}
	}
	log.Warn("delivery failed; nothing delivered", "event", "deferred", "err", err)
	if r.Code/100 != 4 {
		status = "4.3.0"
	}
	return &ctl.Error{Exit: exitTempFail, Msg: status + " temporary failure, nothing delivered: " + r.Message}
}
