// Command sievebench measures the CPU one Sieve script run costs, in
// mailroom's interpreter and in Pigeonhole's sieve-test, for
// bench/sieve.sh; and puts a script into mail homes for its LMTP runs.
//
//	sievebench run -script S -msg M [-n N]         mailroom: read the header, run S
//	sievebench pigeonhole -script S -msg M [-k K]  sieve-test with S K times and once
//	sievebench homes -root R -domain D -users N -script S
//
// Each prints one "RESULT key=value ..." line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mailroom/sieve"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runMailroom(os.Args[2:])
	case "pigeonhole":
		err = runPigeonhole(os.Args[2:])
	case "homes":
		err = runHomes(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sievebench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: sievebench run|pigeonhole|homes [flags]  (-h for flags)")
	os.Exit(2)
}

// cpu is the process's user and system CPU time so far.
func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runMailroom runs the compiled script N times over the message, each
// time reading its header anew as a delivery does, on one thread, and
// reports the CPU per run (the process's, garbage collection included).
func runMailroom(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	script := fs.String("script", "", "Sieve script")
	msgFile := fs.String("msg", "", "message")
	n := fs.Int("n", 20000, "runs")
	fs.Parse(args)
	src, err := os.ReadFile(*script)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(*msgFile)
	if err != nil {
		return err
	}
	runtime.GOMAXPROCS(1)
	s, err := sieve.Compile(src, sieve.Options{Name: filepath.Base(*script)})
	if err != nil {
		return err
	}
	msg := string(raw)
	env := sieve.RunOptions{Envelope: sieve.Envelope{From: "sender@remote.example", To: "alice@example.org"}}
	var actions int
	once := func() error {
		m, err := sieve.ReadMessage(func() io.Reader { return strings.NewReader(msg) }, int64(len(msg)))
		if err != nil {
			return err
		}
		res, err := s.Run(context.Background(), m, env)
		actions = len(res.Actions)
		return err
	}
	for range 1000 { // warm up
		if err := once(); err != nil {
			return err
		}
	}
	runtime.GC()
	c0, t0 := cpu(), time.Now()
	for range *n {
		if err := once(); err != nil {
			return err
		}
	}
	c1, t1 := cpu(), time.Now()
	fmt.Printf("RESULT mode=mailroom runs=%d cpu_us=%.2f wall_us=%.2f msg_bytes=%d actions=%d\n", *n,
		float64(c1-c0)/float64(*n)/1e3, float64(t1.Sub(t0))/float64(*n)/1e3, len(msg), actions)
	return nil
}

// runPigeonhole runs sieve-test with the script given K more times as
// -s scripts (Pigeonhole runs each in turn while the implicit keep
// holds, as for sieve_before), and with the script alone; the
// difference of their CPU over K is one more run of the script
// (loading its compiled binary, which sieve-test saves beside it, and
// executing it), without the process's start.
func runPigeonhole(args []string) error {
	fs := flag.NewFlagSet("pigeonhole", flag.ExitOnError)
	script := fs.String("script", "", "Sieve script")
	msgFile := fs.String("msg", "", "message")
	k := fs.Int("k", 2000, "extra runs in the long process")
	reps := fs.Int("r", 5, "repetitions of each process (the minimum CPU counts)")
	bin := fs.String("sieve-test", "sieve-test", "Pigeonhole's sieve-test")
	fs.Parse(args)
	dir, err := os.MkdirTemp("", "sievebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// sieve-test drops root to mail_uid: everything must be readable
	// (and the directory writable, for the binaries it saves).
	os.Chmod(dir, 0o777)
	sf, mf := filepath.Join(dir, "script.sieve"), filepath.Join(dir, "msg.eml")
	for _, c := range []struct{ from, to string }{{*script, sf}, {*msgFile, mf}} {
		b, err := os.ReadFile(c.from)
		if err != nil {
			return err
		}
		if err := os.WriteFile(c.to, b, 0o666); err != nil {
			return err
		}
	}
	conf := filepath.Join(dir, "dovecot.conf")
	cs := "mail_location = maildir:" + filepath.Join(dir, "mail") + "\n"
	if os.Geteuid() == 0 {
		cs += "mail_uid = nobody\nmail_gid = nogroup\n"
	}
	if err := os.WriteFile(conf, []byte(cs), 0o644); err != nil {
		return err
	}
	run := func(extra int) (time.Duration, error) {
		a := []string{"-c", conf, "-f", "sender@remote.example", "-r", "alice@example.org"}
		for range extra {
			a = append(a, "-s", sf)
		}
		a = append(a, sf, mf)
		best := time.Duration(-1)
		for range *reps {
			cmd := exec.Command(*bin, a...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				return 0, fmt.Errorf("sieve-test: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "final result: success") {
				return 0, fmt.Errorf("sieve-test did not succeed:\n%s", out)
			}
			c := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			if best < 0 || c < best {
				best = c
			}
		}
		return best, nil
	}
	if _, err := run(0); err != nil { // compiles and saves the binary
		return err
	}
	one, err := run(0)
	if err != nil {
		return err
	}
	long, err := run(*k)
	if err != nil {
		return err
	}
	if long <= one {
		return errors.New("the long sieve-test took no more CPU than the short one: raise -k")
	}
	fmt.Printf("RESULT mode=pigeonhole k=%d cpu_us=%.2f process_cpu_us=%.0f\n", *k,
		float64(long-one)/float64(*k)/1e3, float64(one)/1e3)
	return nil
}

// runHomes makes the script the active one of user0..userN-1's mail
// homes below root, as `mailroom sieve put -activate` would.
func runHomes(args []string) error {
	fs := flag.NewFlagSet("homes", flag.ExitOnError)
	root := fs.String("root", "", "mail root (data_dir/mail)")
	domain := fs.String("domain", "example.org", "domain")
	users := fs.Int("users", 16, "users user0.. to give the script")
	script := fs.String("script", "", "Sieve script")
	fs.Parse(args)
	src, err := os.ReadFile(*script)
	if err != nil {
		return err
	}
	if _, err := sieve.Compile(src, sieve.Options{}); err != nil {
		return err
	}
	for u := range *users {
		d := filepath.Join(*root, *domain, "user"+strconv.Itoa(u), "sieve")
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "main.sieve"), src, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, ".active"), []byte("main\n"), 0o600); err != nil {
			return err
		}
	}
	fmt.Printf("RESULT mode=homes users=%d\n", *users)
	return nil
}
