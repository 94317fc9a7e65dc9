// Package ctl is the control socket: how `mailroom user`, `deliver`,
// `route` and `queue` reach a running `mailroom serve`, which holds the
// exclusive lock on mailroom.db.
//
// The protocol is one JSON request line, optionally followed by a body (a
// message for `deliver`) in chunks with an end marker (chunked.go), then one
// JSON response line. The socket is mode 0600 in data_dir:
// whoever can connect can manage accounts, as whoever can open mailroom.db.
package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"mailroom/internal/listen"
	"mailroom/internal/panics"
)

// Handler serves one operation. body is empty unless the client sent one.
type Handler func(ctx context.Context, args json.RawMessage, body io.Reader) (any, error)

// Error is an error with the exit status the CLI should use (sysexits:
// 67 unknown user, 75 try again later, 1 otherwise). Handlers return it;
// clients receive it.
type Error struct {
	Exit int    `json:"exit"`
	Msg  string `json:"error"`
}

func (e *Error) Error() string { return e.Msg }

// ErrNoServer means no `serve` answers on the socket: the caller should do
// the work itself.
var ErrNoServer = errors.New("no running server")

type request struct {
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
	Body bool            `json:"body,omitempty"`
}

type response struct {
	Exit   int             `json:"exit,omitempty"`
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// Server answers requests on the control socket.
type Server struct {
	mu       sync.Mutex
	handlers map[string]Handler
	log      *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	l        net.Listener
	panics   *panics.Recorder
}

// NewServer returns a Server with no operations. A panic in a handler is
// recovered (the request fails) and recorded in rec (nil: the server's own
// count).
func NewServer(log *slog.Logger, rec *panics.Recorder) *Server {
	if rec == nil {
		rec = new(panics.Recorder)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{handlers: map[string]Handler{}, log: log.With("proto", "ctl"), ctx: ctx, cancel: cancel, panics: rec}
}

// Handle registers op.
func (s *Server) Handle(op string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[op] = h
}

// Listen opens the socket at path with mode 0600.
func Listen(path string) (net.Listener, error) {
	return listen.Unix(path, listen.UnixOptions{Mode: 0o600})
}

// Serve answers connections on l until Close. A listener handed over
// after Close is closed at once, so that a shutdown arriving during startup
// cannot leave Serve accepting for ever. Accept errors that may pass
// (descriptors running out) are retried with a growing pause.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		l.Close()
		return net.ErrClosed
	}
	s.l = l
	s.mu.Unlock()
	var pause time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return net.ErrClosed
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			s.log.Warn("control socket accept failed; retrying", "err", err, "pause", pause)
			select {
			case <-time.After(pause):
			case <-s.ctx.Done():
			}
			continue
		}
		pause = 0
		s.mu.Lock()
		if s.ctx.Err() != nil {
			// Close has begun (and may be waiting): no new handler.
			s.mu.Unlock()
			c.Close()
			return net.ErrClosed
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
		}()
	}
}

// Close stops accepting, cancels running handlers and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	s.cancel()
	l := s.l
	s.mu.Unlock()
	var err error
	if l != nil {
		err = l.Close()
	}
	s.wg.Wait()
	return err
}

func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	defer func() {
		if r := recover(); r != nil {
			s.panics.Record(s.log, "control handler", r)
		}
	}()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	br := bufio.NewReader(c)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return
	}
	var req request
	var body io.Reader = eofReader{}
	resp := response{}
	if err := json.Unmarshal(line, &req); err != nil {
		resp = response{Exit: 1, Error: "bad request: " + err.Error()}
	} else if h := s.handler(req.Op); h == nil {
		resp = response{Exit: 1, Error: fmt.Sprintf("unknown operation %q (is serve older than this command?)", req.Op)}
	} else {
		body = eofReader{}
		if req.Body {
			// A message may take a while to arrive over a pipe.
			c.SetReadDeadline(time.Now().Add(10 * time.Minute))
			body = &chunkedReader{r: br}
		}
		result, err := h(s.ctx, req.Args, body)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				ce = &Error{Exit: 1, Msg: err.Error()}
			}
			resp = response{Exit: ce.Exit, Error: ce.Msg}
		} else if result != nil {
			resp.Result, err = json.Marshal(result)
			if err != nil {
				resp = response{Exit: 1, Error: err.Error()}
			}
		}
	}
	// Read what the handler left of the body (it may have refused the
	// request early), so that the client can finish sending and read the
	// answer rather than fail on a broken pipe.
	io.Copy(io.Discard, body)
	out, _ := json.Marshal(resp)
	c.SetWriteDeadline(time.Now().Add(time.Minute))
	c.Write(append(out, '\n'))
}

func (s *Server) handler(op string) Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handlers[op]
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// Call sends op with args (and body, if not nil) to the server at path and
// decodes the result into result (if not nil). It returns ErrNoServer if
// nothing listens there, and *Error for an error the server reported.
func Call(ctx context.Context, path, op string, args any, body io.Reader, result any) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if listen.IsNoServer(err) {
			return ErrNoServer
		}
		return fmt.Errorf("connect to control socket %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()

	rawArgs, err := json.Marshal(args)
	if err != nil {
		return err
	}
	line, _ := json.Marshal(request{Op: op, Args: rawArgs, Body: body != nil})
	if _, err := c.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("control socket: send request: %w", err)
	}
	var sendErr error
	if body != nil {
		if err := writeChunked(c, body); err != nil {
			// The end marker was not sent, so the server cannot take a
			// truncated body for a whole one.
			return fmt.Errorf("control socket: send body: %w", err)
		}
	}
	if err := c.(*net.UnixConn).CloseWrite(); err != nil && sendErr == nil {
		sendErr = fmt.Errorf("control socket: %w", err)
	}
	// Even if sending failed, the server may have answered already (it
	// refused the request before reading it all): its answer says more.
	respLine, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		if sendErr != nil {
			return sendErr
		}
		return fmt.Errorf("control socket: read response: %w", err)
	}
	var resp response
	if err := json.Unmarshal(respLine, &resp); err != nil {
		return fmt.Errorf("control socket: bad response: %w", err)
	}
	if resp.Error != "" {
		return &Error{Exit: resp.Exit, Msg: resp.Error}
	}
	if result != nil && resp.Result != nil {
		return json.Unmarshal(resp.Result, result)
	}
	return nil
}
