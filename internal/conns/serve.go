package conns

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// Serve is the accept loop of a server that runs its own sessions (IMAP,
// the socketmap, ManageSieve; go-smtp has a loop of its own): it accepts
// connections on l, a listener of Listen or ListenTLS, and runs handle on
// each in a goroutine of its own until the Set shuts down, when it returns
// nil, or until l fails for good. A temporary failure (out of file
// descriptors, a client gone before it was accepted) is retried after a
// pause that doubles up to a second, as net/http does, so that a server
// under a descriptor shortage neither spins nor gives up.
func (s *Set) Serve(l net.Listener, handle func(net.Conn)) error {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			select {
			case <-s.shutdown:
				return nil
			default:
			}
			if !temporary(err) {
				return err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "err", err, "delay", delay)
			select {
			case <-time.After(delay):
			case <-s.shutdown:
				return nil
			}
			continue
		}
		delay = 0
		go handle(c)
	}
}

// temporary reports whether an accept error may pass: descriptors or
// buffers run out, or a client left before it was accepted.
func temporary(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, errno) {
			return true
		}
	}
	// net's own test, deprecated for other uses but accurate here (as in
	// net/http's Server.Serve).
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}
