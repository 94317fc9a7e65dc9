// Package command runs the programs of "|command" delivery targets (aliases
// and .forward), as Postfix local(8) and sendmail do: the message on
// stdin, /bin/sh -c, an environment built by the caller, a time limit,
// and a verdict from the exit status (sysexits.h: 0 delivered, 75
// EX_TEMPFAIL try later, anything else a bounce).
//
// A delivery command is someone else's program and may misbehave: it may
// never exit, fork children that outlive it, ignore its stdin or write
// without end to stderr. Run therefore puts it in a process group of its
// own and kills the whole group at the time limit, keeps only the start
// of stderr while draining the rest, and never lets a command that stops
// reading stdin block the delivery.
//
// The package knows nothing of recipients, aliases or configuration; the
// caller decides what to run, as whom and with which environment.
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
	"unicode"

	"golang.org/x/sys/unix"
)

// Defaults for Options.
const (
	DefaultTimeout   = 10 * time.Minute
	DefaultMaxStderr = 4 << 10
)

// ExitTempFail is EX_TEMPFAIL from sysexits.h: the command asks for the
// delivery to be tried again later.
const ExitTempFail = 75

// stderrGrace is how long Run waits, after the shell has exited, for
// stderr to reach end of file. A background child of the command that
// still holds it open must not hold up the delivery.
const stderrGrace = time.Second

// Options describe one command to run.
type Options struct {
	// Command is run as /bin/sh -c Command.
	Command string
	// Env is the whole environment of the command (SENDER, RECIPIENT,
	// LOCAL, DOMAIN, EXTENSION, HOME, USER, PATH, SHELL, ...). Nothing is
	// inherited from mailroom: nil means an empty environment.
	Env []string
	// Dir is the working directory; "" means "/".
	Dir string
	// Stdin is the message; nil gives the command an empty stdin.
	Stdin io.Reader
	// Timeout bounds the run (default 10 minutes); at the limit the
	// command's whole process group is killed and the error is temporary.
	Timeout time.Duration
	// MaxStderr is how many bytes of stderr are kept (default 4 KiB); the
	// rest is read and thrown away, so the command never blocks on a full
	// pipe and a flood costs no memory.
	MaxStderr int
	// Credential, if set, runs the command as that user and group (with
	// exactly the supplementary groups listed), which needs root; nil
	// runs it as mailroom's own user.
	Credential *syscall.Credential
}

// Result is what is known of a run, whether or not it failed.
type Result struct {
	// ExitCode is the exit status, or -1 if the command was killed by a
	// signal (including at the time limit) or did not start.
	ExitCode int
	// Stderr is the first non-empty line of stderr, trimmed, with
	// control characters replaced, ready for a bounce.
	Stderr string
	// TimedOut is set when the command was killed at Options.Timeout.
	TimedOut bool
}

// Error is a failed run. Its text names the command, its exit status or
// signal, and the first line of its stderr: it is written to be quoted in
// a bounce, as Postfix does.
type Error struct {
	Command  string
	ExitCode int            // -1 if killed by a signal or not started
	Signal   syscall.Signal // the signal that ended it, if any
	Stderr   string         // the first line of stderr
	TimedOut bool
	Timeout  time.Duration // the limit, when TimedOut
	// Err is the cause when the command could not be run to the end:
	// /bin/sh did not start, the context was cancelled, or the message
	// could not be read.
	Err  error
	temp bool
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "command %q", shorten(e.Command, 100))
	switch {
	case e.TimedOut:
		fmt.Fprintf(&b, " timed out after %v", e.Timeout)
	case e.Err != nil:
		fmt.Fprintf(&b, ": %v", e.Err)
	case e.Signal != 0:
		fmt.Fprintf(&b, " killed by signal %d (%v)", int(e.Signal), e.Signal)
	default:
		fmt.Fprintf(&b, " exited with status %d", e.ExitCode)
	}
	if e.Stderr != "" {
		fmt.Fprintf(&b, ": %s", e.Stderr)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the delivery should be retried: exit status
// 75 (EX_TEMPFAIL), the time limit, a cancelled context, a failure to
// start /bin/sh or to read the message. A command that ran and failed
// otherwise is permanent.
func (e *Error) Temporary() bool { return e.temp }

// Status is the RFC 3463 status code for a DSN, by the sysexits.h table
// of Postfix's sys_exits.c: "5.1.1" for EX_NOUSER, "4.3.0" for a
// temporary failure, "5.3.0" when nothing more specific applies.
func (e *Error) Status() string {
	if e.temp {
		return "4.3.0"
	}
	switch e.ExitCode {
	case 65: // EX_DATAERR
		return "5.6.0"
	case 67: // EX_NOUSER
		return "5.1.1"
	case 68: // EX_NOHOST
		return "5.1.2"
	case 73: // EX_CANTCREAT
		return "5.2.0"
	case 76: // EX_PROTOCOL
		return "5.5.0"
	case 77: // EX_NOPERM
		return "5.7.0"
	case 78: // EX_CONFIG
		return "5.3.5"
	}
	return "5.3.0"
}

// Run runs the command to its end and returns what happened. The error
// is nil for exit status 0 and an *Error otherwise. A command that exits
// without reading all of stdin is not an error by itself: the verdict is
// its exit status. When ctx ends, the command's process group is killed
// and the error is temporary.
//
// A child that leaves the process group (setsid) escapes the kill; only a
// cgroup could catch it, which is the service manager's job.
func Run(ctx context.Context, opts Options) (Result, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxStderr <= 0 {
		opts.MaxStderr = DefaultMaxStderr
	}
	res := Result{ExitCode: -1}
	fail := func(err error) (Result, error) {
		return res, &Error{Command: opts.Command, ExitCode: -1, Err: err, temp: true}
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}

	cmd := exec.Command("/bin/sh", "-c", opts.Command)
	cmd.Env = opts.Env
	if cmd.Env == nil {
		cmd.Env = []string{} // not nil: exec would pass on ours
	}
	cmd.Dir = opts.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: opts.Credential}

	errR, errW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("stderr pipe: %w", err))
	}
	defer errR.Close()
	cmd.Stderr = errW
	var inR, inW *os.File
	if opts.Stdin != nil {
		if inR, inW, err = os.Pipe(); err != nil {
			errW.Close()
			return fail(fmt.Errorf("stdin pipe: %w", err))
		}
		defer inW.Close()
		cmd.Stdin = inR
	}
	err = cmd.Start()
	// The child has its copies; ours must go, or EOF and EPIPE never come.
	errW.Close()
	if inR != nil {
		inR.Close()
	}
	if err != nil {
		return fail(fmt.Errorf("start /bin/sh: %w", err))
	}
	pid := cmd.Process.Pid

	stderrDone := make(chan []byte, 1)
	go func() { stderrDone <- readBounded(errR, opts.MaxStderr) }()
	stdinDone := make(chan error, 1)
	if inW != nil {
		go func() {
			stdinDone <- feed(inW, opts.Stdin)
			inW.Close() // EOF for the command
		}()
	} else {
		stdinDone <- nil
	}

	// The watchdog kills the process group at the time limit or when ctx
	// ends. It runs only while the shell is unreaped (a zombie at worst),
	// so its pid, and with it the process group id, cannot have been
	// reused by then.
	runCtx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	exited := make(chan struct{})
	killed := make(chan error, 1)
	go func() {
		select {
		case <-exited:
			killed <- nil
		case <-runCtx.Done():
			unix.Kill(-pid, unix.SIGKILL)
			killed <- runCtx.Err()
		}
	}()
	waitExited(pid)
	close(exited)
	killErr := <-killed
	werr := cmd.Wait()

	// A child that stopped reading stdin may be blocking the writer: the
	// command's verdict is known now, so drop the rest of the message.
	inW.Close()
	readErr := <-stdinDone
	var stderr []byte
	select {
	case stderr = <-stderrDone:
	case <-time.After(stderrGrace):
		errR.Close()
		stderr = <-stderrDone
	}
	res.Stderr = firstLine(stderr)

	e := &Error{Command: opts.Command, ExitCode: -1, Stderr: res.Stderr}
	if cmd.ProcessState == nil {
		// Wait itself failed (ECHILD: someone else reaped it).
		e.Err, e.temp = fmt.Errorf("wait: %w", werr), true
		return res, e
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Signal = ws.Signal()
	} else {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	e.ExitCode = res.ExitCode
	if e.Signal == 0 {
		// The shell exited on its own, perhaps just before the kill: its
		// exit status is the verdict, not the time limit.
		killErr = nil
	}
	switch {
	case killErr != nil && errors.Is(killErr, context.DeadlineExceeded) && ctx.Err() == nil:
		res.TimedOut = true
		e.TimedOut, e.Timeout, e.temp = true, opts.Timeout, true
	case killErr != nil:
		e.Err, e.temp = ctx.Err(), true
		if e.Err == nil {
			e.Err = killErr
		}
	case readErr != nil:
		// The command saw a truncated message; whatever it said, the
		// delivery must be tried again.
		e.Err, e.temp = readErr, true
	case res.ExitCode == 0:
		return res, nil
	case res.ExitCode == ExitTempFail:
		e.temp = true
	}
	return res, e
}

// waitExited returns once the process has exited, without reaping it, so
// that its pid stays reserved until cmd.Wait.
func waitExited(pid int) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return // exited, or an error cmd.Wait will report
		}
	}
}

// feed copies the message to the command's stdin. Write errors mean the
// command closed its end (EPIPE) or Run gave up on it, and are not
// errors; a failure to read the message is.
func feed(w io.Writer, r io.Reader) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the message: %w", err)
		}
	}
}

// readBounded keeps the first max bytes of r and discards the rest, until
// end of file or an error (such as the pipe being closed by Run).
func readBounded(r io.Reader, max int) []byte {
	buf := make([]byte, max)
	n, _ := io.ReadFull(r, buf)
	if n == max {
		io.Copy(io.Discard, r)
	}
	return buf[:n]
}

// firstLine is the first non-blank line of b, trimmed, in valid UTF-8
// with control characters replaced by '?', fit for a bounce.
func firstLine(b []byte) string {
	for len(b) > 0 {
		line, rest, _ := bytes.Cut(b, []byte("\n"))
		b = rest
		s := strings.TrimSpace(strings.ToValidUTF8(string(line), "?"))
		if s == "" {
			continue
		}
		return strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return '?'
			}
			return r
		}, s)
	}
	return ""
}

// shorten cuts s to at most n bytes (on a rune boundary) with "...".
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = strings.ToValidUTF8(s[:n], "")
	return s + "..."
}
