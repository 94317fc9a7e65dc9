// Package mailtest holds the test helpers shared by every package: tools
// that must exist under CI, the mailroom binary built once per test
// process, and a running `mailroom serve` whose listening addresses are read
// from its log rather than guessed; polling with a deadline (Eventually)
// for what nothing signals. It imports no mailroom package, so that every
// package's own tests can use it; the in-process delivery stack is in
// mailtest/mailenv.
package mailtest

import (
	"bufio"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the tests run under CI, where a missing tool is a
// failure rather than a skip.
func InCI() bool { return os.Getenv("CI") != "" }

// NeedTool returns the path of a third-party program the test talks to. It
// fails the test under CI if the program is missing (.ci/run installs it)
// and skips it, loudly, elsewhere.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/lib/postfix/sbin", "/usr/lib/dovecot"} {
		if c := filepath.Join(dir, name); isExec(c) {
			return c
		}
	}
	if InCI() {
		t.Fatalf("%s is required but not installed (.ci/run installs it)", name)
	}
	t.Skipf("SKIP: %s is not installed; install it or run .ci/run (under CI=true this fails)", name)
	return ""
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// ModuleRoot is the repository root (where go.mod is).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary builds cmd/mailroom once per test process and returns its path.
// The binary lives in a fixed place under the temporary directory (one for
// race builds, one for plain, per checkout), replaced atomically, so that
// test processes running at once share it and no run leaves a new
// directory behind. The name includes a hash of the checkout's path:
// tests in two worktrees at once must not run each other's binary.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, _ := filepath.Abs(ModuleRoot(t))
		name := fmt.Sprintf("mailroom-test-bin-%08x", crc32.ChecksumIEEE([]byte(root)))
		args := []string{"build"}
		if raceEnabled {
			name += "-race"
			args = append(args, "-race")
		}
		buildPath = filepath.Join(os.TempDir(), name)
		tmp := fmt.Sprintf("%s.%d", buildPath, os.Getpid())
		cmd := exec.Command("go", append(args, "-o", tmp, "./cmd/mailroom")...)
		cmd.Dir = ModuleRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		buildErr = os.Rename(tmp, buildPath)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// WriteConfig writes configTOML, with %DATA% replaced by a fresh short
// temporary directory, to <dir>/mailroom.toml and returns the file and dir.
// Unless configTOML has an [accounts] table, it adds one with CheapBcrypt:
// at bcrypt's default cost each `user add` and each login of the race-built
// binary takes seconds, and the tests make hundreds.
func WriteConfig(t testing.TB, configTOML string) (path, dir string) {
	t.Helper()
	dir = ShortTempDir(t)
	path = filepath.Join(dir, "mailroom.toml")
	text := strings.ReplaceAll(configTOML, "%DATA%", dir)
	if !strings.Contains(text, "[accounts]") {
		text += "\n" + CheapBcrypt
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

// CheapBcrypt is an [accounts] table with bcrypt's least work factor, for
// the configurations of tests (the hashes are still bcrypt's, checked the
// same way).
const CheapBcrypt = "[accounts]\nbcrypt_cost = 4\n"

// Server is a `mailroom serve` process started for a test.
type Server struct {
	Config string // path of its configuration file
	Dir    string // its data_dir
	cmd    *exec.Cmd
	bin    string

	mu    sync.Mutex
	log   strings.Builder
	addrs map[string][]string // proto -> addresses, from "listening" records
	ready chan struct{}
	exit  chan struct{}
}

// listeningRE finds a "listening" record, in text or JSON ([log] format).
var listeningRE = regexp.MustCompile(`msg=listening proto=(\S+) addr=(\S+)|"msg":"listening","proto":"([^"]+)","addr":"([^"]+)"`)

// StartServer writes configTOML (with %DATA% replaced by a fresh data_dir)
// to a file, starts `mailroom serve` on it and waits until it has logged
// that it started. The server is stopped with SIGTERM at cleanup.
func StartServer(t testing.TB, configTOML string) *Server {
	t.Helper()
	cfgPath, dir := WriteConfig(t, configTOML)
	return StartServerConfig(t, cfgPath, dir)
}

func (s *Server) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	readyClosed := false
	for sc.Scan() {
		line := sc.Text()
		s.mu.Lock()
		s.log.WriteString(line + "\n")
		if m := listeningRE.FindStringSubmatch(line); m != nil {
			proto, addr := m[1]+m[3], m[2]+m[4]
			s.addrs[proto] = append(s.addrs[proto], addr)
		}
		s.mu.Unlock()
		if !readyClosed && (strings.Contains(line, `msg="mailroom started"`) || strings.Contains(line, `"msg":"mailroom started"`)) {
			close(s.ready)
			readyClosed = true
		}
	}
	s.cmd.Wait()
	close(s.exit)
}

// Log returns what the server has logged so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// Addr returns the first address the server listens on for proto
// ("lmtp", "ctl", ...) whose form matches: prefix "unix:" for a socket,
// "" for TCP.
func (s *Server) Addr(t testing.TB, proto string, unix bool) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.addrs[proto] {
		if strings.HasPrefix(a, "unix:") == unix {
			return strings.TrimPrefix(a, "unix:")
		}
	}
	t.Fatalf("server does not listen for %s (unix=%v); log:\n%s", proto, unix, s.log.String())
	return ""
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it.
func (s *Server) Kill(t testing.TB) {
	s.cmd.Process.Kill()
	<-s.exit
}

// PID is the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop sends SIGTERM and waits for the process to exit.
func (s *Server) Stop(t testing.TB) {
	select {
	case <-s.exit:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exit:
	case <-time.After(40 * time.Second):
		s.cmd.Process.Kill()
		<-s.exit
		t.Errorf("mailroom serve did not stop within 40s of SIGTERM")
	}
}

// Run runs a mailroom subcommand against this server's configuration and
// returns its combined output and exit status.
func (s *Server) Run(t testing.TB, stdin string, args ...string) (string, int) {
	t.Helper()
	return RunBinary(t, s.Config, stdin, args...)
}

// RunBinary runs the mailroom binary with -config cfg appended.
func RunBinary(t testing.TB, cfg, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(Binary(t), append(args, "-config", cfg)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("run mailroom %v: %v", args, err)
	}
	return string(out), 0
}

// ShortTempDir is t.TempDir under /tmp with a short name: unix socket
// paths are limited to 108 bytes, and t.TempDir's names can be long.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
