package mda

// Delivery to the targets other than mailboxes: mbox files, commands and
// remote addresses (through the Forwarder).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"mailroom/internal/address"
	"mailroom/internal/command"
	"mailroom/mailbox/mbox"
	"mailroom/mda/alias"
)

// deliverOther delivers to a file, a command or remote addresses.
func (t *Txn) deliverOther(ctx context.Context, u *unit, sp *spool, now time.Time) error {
	l := u.leaf
	switch l.Kind {
	case alias.File:
		path, mo := l.Path, mbox.Options{Logger: t.log}
		if userFile(&l) {
			// A user's file: inside their mail home, and no symlink
			// may lead out of it (see confineFiles).
			rel, ok := t.d.inHome(&l)
			if !ok {
				return &PermanentError{Status: "5.7.1", Text: "Delivery to this target is not allowed here",
					Err: fmt.Errorf("%s: %w: outside the mail home", l.Path, alias.ErrNotAllowed)}
			}
			root, err := os.OpenRoot(t.d.homeDir(l.Home))
			if err != nil {
				return fmt.Errorf("open the mail home of %s: %w", l.Rcpt, err)
			}
			defer root.Close()
			path, mo.Root = rel, root
		}
		err := mbox.Append(ctx, path, t.from, now, sp.withHeader(t.traceHeaders(u, now)), mo)
		if err != nil {
			if temporary(err) {
				return err // it names the file
			}
			// Not the path: that is the administrator's or the user's.
			return &PermanentError{Status: "5.3.0", Text: "Cannot append to the mailbox file", Err: err}
		}
		return nil
	case alias.Pipe:
		return t.runCommand(ctx, u, sp, now)
	case alias.Remote:
		if t.d.opts.Forwarder == nil {
			return errors.New("forward: no queue to send it")
		}
		from := t.from
		if t.d.opts.SRS != nil && from != "" {
			if rewritten, err := t.d.opts.SRS.Forward(from); err == nil {
				from = rewritten
			} else {
				t.log.Warn("sender not rewritten with SRS", "from", from, "err", err)
			}
		}
		hdr := fmt.Sprintf("Delivered-To: %s\n", l.Rcpt) +
			ReceivedHeader(t.info, t.d.opts.Hostname, t.id, t.rcpts[u.rcpts[0]].Address.String(), now)
		id, err := t.d.opts.Forwarder.Enqueue(ctx, from, u.remotes, sp.withHeader(hdr))
		if err != nil {
			return fmt.Errorf("forward for %s: %w", l.Rcpt, err)
		}
		t.log.Info("forwarded", "event", "forwarded", "rcpt", l.Rcpt.String(), "to", u.remotes, "from", from, "forward_id", id)
		return nil
	}
	return fmt.Errorf("unknown target kind %v", l.Kind)
}

func (t *Txn) runCommand(ctx context.Context, u *unit, sp *spool, now time.Time) error {
	l := u.leaf
	base, ext := address.StripExtension(l.Rcpt.Local, t.d.opts.Delimiter)
	home := "/"
	if l.Home != "" && t.d.opts.MailRoot != "" {
		home = filepath.Join(t.d.opts.MailRoot, filepath.FromSlash(l.Home))
	}
	user := l.User
	if user == "" {
		user = base
	}
	env := []string{
		"SENDER=" + t.from,
		"RECIPIENT=" + l.Rcpt.String(),
		"LOCAL=" + l.Rcpt.Local,
		"DOMAIN=" + l.Rcpt.Domain,
		"EXTENSION=" + ext,
		"HOME=" + home,
		"USER=" + user,
		"LOGNAME=" + user,
		"SHELL=/bin/sh",
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"LANG=C",
	}
	// The command starts in the mail home when it can enter it: not
	// when it runs as another user (nobody, when mailroom is root),
	// since mail homes are mailroom's alone and the chdir, done after
	// the switch of user, would fail the start every time.
	dir := home
	if _, err := os.Stat(dir); err != nil || t.d.opts.CommandCredential != nil {
		dir = "/"
	}
	_, err := command.Run(ctx, command.Options{
		Command:    l.Command,
		Env:        env,
		Dir:        dir,
		Stdin:      sp.withHeader(t.traceHeaders(u, now)),
		Timeout:    t.d.opts.CommandTimeout,
		Credential: t.d.opts.CommandCredential,
	})
	if err == nil {
		return nil
	}
	if temporary(err) {
		return fmt.Errorf("command for %s: %w", l.Rcpt, err)
	}
	st, text := "5.3.0", "Command failed"
	var ce *command.Error
	if errors.As(err, &ce) {
		st = ce.Status()
		// As Postfix's bounce does, with the status and the command's
		// own first line of stderr, but not the command line, which may
		// hold paths or tokens.
		switch {
		case ce.Signal != 0:
			text = fmt.Sprintf("Command killed by signal %d", int(ce.Signal))
		case ce.ExitCode >= 0:
			text = fmt.Sprintf("Command failed with exit status %d", ce.ExitCode)
		}
		if ce.Stderr != "" {
			text += ": " + ce.Stderr
		}
	}
	return &PermanentError{Status: st, Text: text, Err: err}
}
