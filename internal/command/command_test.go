package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mailroom/internal/mailtest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var baseEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}

func TestExitStatus(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		command  string
		code     int
		wantErr  bool
		temp     bool
		status   string
		stderr   string
		contains []string // in Error()
	}{
		{name: "success", command: "exit 0", code: 0},
		{name: "success with stderr", command: "echo note >&2", code: 0, stderr: "note"},
		{name: "tempfail", command: "echo 'mailbox busy' >&2; exit 75", code: 75, wantErr: true, temp: true, status: "4.3.0", stderr: "mailbox busy",
			contains: []string{"status 75", "mailbox busy"}},
		{name: "failure", command: "echo '  no such list: x  ' >&2; echo second >&2; exit 1", code: 1, wantErr: true, status: "5.3.0", stderr: "no such list: x",
			contains: []string{`command "echo`, "exited with status 1: no such list: x"}},
		{name: "blank first line", command: "printf '\\n\\n  \\nreal error\\n' >&2; exit 2", code: 2, wantErr: true, status: "5.3.0", stderr: "real error"},
		{name: "nouser", command: "exit 67", code: 67, wantErr: true, status: "5.1.1", contains: []string{"status 67"}},
		{name: "control characters", command: "printf 'bad\\033[31m\\001x\\r\\n' >&2; exit 1", code: 1, wantErr: true, stderr: "bad?[31m?x"},
		{name: "not found", command: "/nonexistent/prog", code: 127, wantErr: true, status: "5.3.0", stderr: "/nonexistent/prog: not found"},
		{name: "signal", command: "kill -SEGV $$", code: -1, wantErr: true, status: "5.3.0", contains: []string{"killed by signal 11"}},
		{name: "syntax error", command: "if then", code: 2, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := Run(t.Context(), Options{Command: tc.command, Env: baseEnv})
			if res.ExitCode != tc.code {
				t.Errorf("exit code %d, want %d", res.ExitCode, tc.code)
			}
			if tc.stderr != "" && !strings.HasSuffix(res.Stderr, tc.stderr) {
				t.Errorf("stderr %q, want %q", res.Stderr, tc.stderr)
			}
			if !tc.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want an *Error", err)
			}
			if e.Temporary() != tc.temp {
				t.Errorf("Temporary() = %v", e.Temporary())
			}
			if tc.status != "" && e.Status() != tc.status {
				t.Errorf("Status() = %s, want %s", e.Status(), tc.status)
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if res.TimedOut || e.TimedOut {
				t.Error("TimedOut set")
			}
		})
	}
}

func TestEnvironmentAndDir(t *testing.T) {
	// Not parallel: t.Setenv checks that mailroom's own environment is
	// not passed on.
	t.Setenv("MAILROOM_COMMAND_LEAK", "leaked")
	out := filepath.Join(t.TempDir(), "out")
	env := append([]string{
		"OUT=" + out, "SENDER=bob@example.net", "RECIPIENT=alice+lists@example.org",
		"LOCAL=alice+lists", "DOMAIN=example.org", "EXTENSION=lists",
	}, baseEnv...)
	dir := t.TempDir()
	for _, tc := range []struct{ dir, want string }{{"", "/"}, {dir, dir}} {
		_, err := Run(t.Context(), Options{
			Command: `printf '%s|%s|%s|%s|%s|%s|%s\n' "$SENDER" "$RECIPIENT" "$LOCAL" "$DOMAIN" "$EXTENSION" "${MAILROOM_COMMAND_LEAK-unset}" "$(pwd)" > "$OUT"`,
			Env:     env,
			Dir:     tc.dir,
		})
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		want := "bob@example.net|alice+lists@example.org|alice+lists|example.org|lists|unset|" + tc.want + "\n"
		if string(b) != want {
			t.Errorf("got %q, want %q", b, want)
		}
	}
}

func TestStdin(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "out")
	msg := strings.Repeat("Subject: x\n\nline of the message\n", 50_000) // 1.5 MB, more than a pipe holds
	_, err := Run(t.Context(), Options{Command: `cat > "$OUT"`, Env: append([]string{"OUT=" + out}, baseEnv...), Stdin: strings.NewReader(msg)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != msg {
		t.Errorf("command received %d bytes, want %d", len(b), len(msg))
	}
}

func TestNoStdin(t *testing.T) {
	t.Parallel()
	res, err := Run(t.Context(), Options{Command: `n=$(cat | wc -c); test "$n" -eq 0`, Env: baseEnv})
	if err != nil {
		t.Fatal(res, err)
	}
}

// TestStdinNotRead: a command that exits (or closes stdin) without
// reading a message larger than the pipe neither hangs nor fails because
// of it; its exit status decides.
func TestStdinNotRead(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("x"), 32<<20)
	for _, tc := range []struct {
		command string
		code    int
	}{
		{"exit 0", 0},
		{"exec 0<&-; sleep 0.1; exit 0", 0},
		{"head -c 10 >/dev/null", 0},
		{"exit 3", 3},
	} {
		t.Run(tc.command, func(t *testing.T) {
			t.Parallel()
			res, err := Run(t.Context(), Options{Command: tc.command, Env: baseEnv, Stdin: bytes.NewReader(big), Timeout: time.Minute})
			if res.ExitCode != tc.code || res.TimedOut {
				t.Fatalf("%+v %v", res, err)
			}
			if (err != nil) != (tc.code != 0) {
				t.Fatalf("error %v for exit %d", err, tc.code)
			}
			var e *Error
			if err != nil && (!errors.As(err, &e) || e.Temporary() || e.Err != nil) {
				t.Errorf("got %#v", err)
			}
		})
	}
}

type errReader struct{ n int }

func (r *errReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("spool unreadable")
	}
	k := min(r.n, len(p))
	r.n -= k
	return k, nil
}

// TestStdinReadError: a message that cannot be read to the end is a
// temporary failure even if the command, seeing a truncated message,
// exits 0.
func TestStdinReadError(t *testing.T) {
	t.Parallel()
	_, err := Run(t.Context(), Options{Command: "cat >/dev/null", Env: baseEnv, Stdin: &errReader{n: 100 << 10}})
	var e *Error
	if !errors.As(err, &e) || !e.Temporary() || !strings.Contains(err.Error(), "spool unreadable") {
		t.Fatalf("got %v", err)
	}
}

// TestTimeoutKillsGroup: a command that never exits is killed at the
// limit with its children, and the failure is temporary.
func TestTimeoutKillsGroup(t *testing.T) {
	t.Parallel()
	pids := filepath.Join(t.TempDir(), "pids")
	start := time.Now()
	res, err := Run(t.Context(), Options{
		Command: `sleep 1000 & echo $! >> "$PIDS"; (sleep 1000; :) & echo $! >> "$PIDS"; echo $$ >> "$PIDS"; exec sleep 1000`,
		Env:     append([]string{"PIDS=" + pids}, baseEnv...),
		Stdin:   strings.NewReader("x"),
		Timeout: 500 * time.Millisecond,
	})
	if elapsed := time.Since(start); elapsed > 30*time.Second {
		t.Errorf("took %v", elapsed)
	}
	var e *Error
	if !errors.As(err, &e) || !e.Temporary() || !e.TimedOut || !res.TimedOut || res.ExitCode != -1 {
		t.Fatalf("got %+v, %v", res, err)
	}
	if !strings.Contains(err.Error(), "timed out after 500ms") {
		t.Errorf("error %q", err)
	}
	b, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b))
	if len(fields) != 3 {
		t.Fatalf("pids %q", b)
	}
	for _, f := range fields {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		waitGone(t, pid)
	}
}

// waitGone waits until pid is gone or a zombie (killed but not yet reaped
// by init, which is not ours to hurry). There is no event for the end of
// a process that is not our child, so this polls, with a deadline.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	mailtest.Eventually(t, 10*time.Second, fmt.Sprintf("process %d to end after the kill", pid), func() bool {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true // gone
		}
		// pid (comm) S ...: the state follows the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		return i > 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X')
	})
}

func TestContextCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	// The command says it runs by writing its pid into a FIFO.
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var res Result
	var err error
	go func() {
		defer close(done)
		res, err = Run(ctx, Options{Command: `echo $$ > "$FIFO"; exec sleep 1000`, Env: append([]string{"FIFO=" + fifo}, baseEnv...)})
	}()
	pidc := make(chan []byte, 1)
	go func() {
		b, _ := os.ReadFile(fifo) // blocks until the command writes
		pidc <- b
	}()
	var b []byte
	select {
	case b = <-pidc:
	case <-done:
		t.Fatalf("returned early: %+v %v", res, err)
	}
	cancel()
	<-done
	var e *Error
	if !errors.As(err, &e) || !e.Temporary() || e.TimedOut || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %+v %v", res, err)
	}
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	if perr != nil {
		t.Fatal(perr)
	}
	waitGone(t, pid)

	// Already cancelled: nothing runs.
	marker := filepath.Join(t.TempDir(), "ran")
	_, err = Run(ctx, Options{Command: `touch "$F"`, Env: append([]string{"F=" + marker}, baseEnv...)})
	if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Error("a command ran with a cancelled context")
	}
}

// TestStderrFlood: 1 GiB on stderr is drained, not kept: the run ends,
// Stderr is bounded and memory stays small. Not parallel, so that the
// allocation count is this test's own.
func TestStderrFlood(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := Run(t.Context(), Options{
		Command:   `yes 'flood line' | head -c 1073741824 >&2; exit 1`,
		Env:       baseEnv,
		MaxStderr: 1000,
		Timeout:   5 * time.Minute,
	})
	runtime.ReadMemStats(&after)
	if res.ExitCode != 1 || res.TimedOut {
		t.Fatalf("%+v %v", res, err)
	}
	if res.Stderr != "flood line" {
		t.Errorf("stderr %q", res.Stderr)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("allocated %d MiB while draining stderr", grew>>20)
	}

	// One endless line: Stderr holds at most MaxStderr bytes of it.
	res, _ = Run(t.Context(), Options{Command: `head -c 100000 /dev/zero | tr '\0' a >&2; exit 1`, Env: baseEnv, MaxStderr: 1000})
	if len(res.Stderr) != 1000 {
		t.Errorf("stderr of %d bytes, want 1000", len(res.Stderr))
	}
}

// TestBackgroundChildHoldsStderr: a command that exits but leaves a
// child holding stderr open is done when it exits (after a short grace),
// not when the child ends.
func TestBackgroundChildHoldsStderr(t *testing.T) {
	t.Parallel()
	start := time.Now()
	res, err := Run(t.Context(), Options{Command: `sleep 60 & echo $! >&2; exit 0`, Env: baseEnv, Stdin: strings.NewReader("x")})
	if err != nil {
		t.Fatal(err)
	}
	pid, perr := strconv.Atoi(res.Stderr)
	if perr != nil {
		t.Fatalf("stderr %q", res.Stderr)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	if elapsed := time.Since(start); elapsed > stderrGrace+5*time.Second {
		t.Errorf("took %v: waited for the background child", elapsed)
	}
}

func TestStartFailure(t *testing.T) {
	t.Parallel()
	res, err := Run(t.Context(), Options{Command: "exit 0", Dir: "/nonexistent/dir"})
	var e *Error
	if !errors.As(err, &e) || !e.Temporary() || res.ExitCode != -1 || !strings.Contains(err.Error(), "start /bin/sh") {
		t.Fatalf("got %+v %v", res, err)
	}
}

func TestCredential(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		if mailtest.InCI() {
			t.Fatal("this test needs root, which CI has")
		}
		t.Skip("SKIP: switching users needs root (CI runs as root)")
	}
	res, err := Run(t.Context(), Options{
		Command:    `echo "$(id -u) $(id -g) $(id -G)" >&2`,
		Env:        baseEnv,
		Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stderr != "65534 65534 65534" {
		t.Errorf("ran as %q", res.Stderr)
	}
}

func TestErrorText(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 80)
	e := &Error{Command: long, ExitCode: 1}
	if s := e.Error(); !strings.HasSuffix(s, `..." exited with status 1`) || len(s) > 160 {
		t.Errorf("%q", s)
	}
}
