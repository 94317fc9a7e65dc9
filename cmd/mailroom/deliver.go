package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"mailroom/internal/ctl"
	"mailroom/internal/smtpconn"
	"mailroom/mda"
)

type deliverArgs struct {
	From  string   `json:"from"`
	Rcpts []string `json:"rcpts"`
}

// cmdDeliver is the local delivery agent: Postfix's mailbox_command, an
// Exim pipe transport or fetchmail's mda run it with the message on stdin.
// Exit 0 means delivered to every recipient, 67 an unknown recipient
// (nothing delivered), 75 try again later (nothing delivered).
func cmdDeliver(args []string, stdin io.Reader, stderr io.Writer) error {
	fs, cf := newFlagSet("deliver", stderr)
	from := fs.String("f", "", "envelope sender (default: the null sender <>)")
	rcpts, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rcpts) == 0 {
		return withExit(exitUsage, errors.New("name at least one recipient"))
	}
	cfg, err := cf.load()
	if err != nil {
		// A broken configuration is the administrator's to fix; the MTA
		// should keep the message meanwhile.
		return withExit(exitTempFail, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = call(ctx, cfg, "deliver", deliverArgs{From: *from, Rcpts: rcpts}, stdin, nil)
	var ce *ctl.Error
	var ee *exitError
	if err != nil && !errors.As(err, &ce) && !errors.As(err, &ee) {
		// Anything unexpected (socket trouble, I/O) is temporary.
		return withExit(exitTempFail, err)
	}
	return err
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

// deliverError maps a delivery error to the sysexits status an MTA acts on.
// The message of a temporary failure says only what kind it is: an MTA
// copies a delivery command's output into its bounces and delay notices,
// and internal detail (file names) must not reach the sender. The detail
// goes to the log (the server's, when it did the delivery).
func deliverError(log *slog.Logger, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mda.ErrNoSuchUser), errors.Is(err, mda.ErrNotLocal), errors.Is(err, mda.ErrBadAddress):
		return &ctl.Error{Exit: exitNoUser, Msg: err.Error()}
	case errors.Is(err, mda.ErrTooBig), errors.Is(err, mda.ErrLoop):
		// Not err.Error(): a loop's names the whole alias and .forward
		// chain, which is nobody's business outside.
		log.Info("delivery refused", "event", "rejected", "err", err)
		return &ctl.Error{Exit: exitDataErr, Msg: smtpconn.Reply(err).Message}
	}
	var pe *mda.PermanentError
	if errors.As(err, &pe) {
		return &ctl.Error{Exit: exitDataErr, Msg: smtpconn.Reply(err).Message}
	}
	log.Warn("delivery failed; nothing delivered", "event", "deferred", "err", err)
	return &ctl.Error{Exit: exitTempFail, Msg: "temporary failure, nothing delivered: " + smtpconn.Reply(err).Message}
}
