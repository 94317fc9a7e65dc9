// Command mailroom is the whole mail server: `serve` runs the listeners,
// and the other subcommands (deliver, user, check) work whether or not
// `serve` is running, talking to it over the control socket when it is.
// This package only wires: config -> Options -> servers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"mailroom/config"
	"mailroom/internal/address"
	"mailroom/internal/ctl"
	"mailroom/internal/dbcheck"
	"mailroom/mda/alias"
)

// Exit statuses from sysexits.h, which MTAs interpret for a delivery agent.
const (
	exitOK       = 0
	exitFail     = 1
	exitUsage    = 64 // EX_USAGE
	exitDataErr  = 65 // EX_DATAERR
	exitNoUser   = 67 // EX_NOUSER
	exitTempFail = 75 // EX_TEMPFAIL
	exitConfig   = 78 // EX_CONFIG
)

const usage = `usage:
  mailroom serve   [-config FILE] [-dev]
  mailroom deliver [-config FILE] [-f SENDER] RCPT...
  mailroom user    add|passwd|del|list [-config FILE] [ADDRESS]
  mailroom queue   list|flush|drop ID [-config FILE]
  mailroom route   [-config FILE] ADDRESS
  mailroom check   [-config FILE]
  mailroom dkim    keygen DOMAIN [-selector S] [-algo rsa|ed25519] [-config FILE]
  mailroom dkim    check DOMAIN [-config FILE]

-config defaults to $MAILROOM_CONFIG, then ` + config.DefaultPath + `.
`

func main() {
	// When started by internal/dbcheck to read a database that may be
	// damaged, do that and nothing else.
	dbcheck.Main()
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process: tests call it directly.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, args := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(args, stdout, stderr)
	case "deliver":
		err = cmdDeliver(args, stdin, stderr)
	case "user":
		err = cmdUser(args, stdin, stdout, stderr)
	case "queue":
		err = cmdQueue(args, stdout, stderr)
	case "route":
		err = cmdRoute(args, stdout, stderr)
	case "check":
		err = cmdCheck(args, stdout, stderr)
	case "backup":
		err = cmdBackup(args, stdout, stderr)
	case "restore":
		err = cmdRestore(args, stdout, stderr)
	case "dkim":
		err = cmdDKIM(args, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "mailroom: unknown command %q\n%s", cmd, usage)
		return exitUsage
	}
	if err == nil {
		return exitOK
	}
	var de interface{ DSN() string }
	if errors.As(err, &de) {
		// A delivery agent's output begins with the RFC 3463 status:
		// Postfix's pipe(8) takes it over the exit status's.
		fmt.Fprintf(stderr, "%s mailroom %s: %v\n", de.DSN(), cmd, err)
	} else {
		fmt.Fprintf(stderr, "mailroom %s: %v\n", cmd, err)
	}
	return exitCode(err)
}

// exitError carries an exit status up to run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withExit(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

func exitCode(err error) int {
	var ee *exitError
	var ce *ctl.Error
	var de *dsnError
	switch {
	case errors.As(err, &de):
		// Before exitError, which it may wrap (a configuration error
		// is 78 elsewhere, but 75 for a delivery).
		return de.exit
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ce) && ce.Exit != 0:
		return ce.Exit
	case errors.Is(err, flag.ErrHelp):
		return exitUsage
	}
	return exitFail
}

// commonFlags are accepted by every subcommand.
type commonFlags struct {
	config string
}

func newFlagSet(name string, stderr io.Writer) (*flag.FlagSet, *commonFlags) {
	fs := flag.NewFlagSet("mailroom "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := &commonFlags{}
	fs.StringVar(&cf.config, "config", "", "configuration file (default $MAILROOM_CONFIG, then "+config.DefaultPath+")")
	return fs, cf
}

// parseInterspersed parses flags that may come before or after the
// positional arguments ("user add ADDR -config F" as well as
// "user add -config F ADDR").
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, withExit(exitUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (cf *commonFlags) path() string {
	if cf.config != "" {
		return cf.config
	}
	if p := os.Getenv("MAILROOM_CONFIG"); p != "" {
		return p
	}
	return config.DefaultPath
}

func (cf *commonFlags) load() (*config.Config, error) {
	cfg, err := config.Load(cf.path())
	return cfg, withExit(exitConfig, err)
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs, cf := newFlagSet("check", stderr)
	doRepair := fs.Bool("repair", false, "salvage a damaged mailroom.db, make accounts for mail homes without one, and index every folder (serve must be stopped)")
	from := fs.String("from", "", "with -repair: a backup directory (or a copy of mailroom.db) to take lost accounts from")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	if *from != "" && !*doRepair {
		return withExit(exitUsage, errors.New("-from goes with -repair"))
	}
	if *doRepair {
		return repair(context.Background(), cfg, *from, stdout)
	}
	aliases, err := alias.Load(cfg.Delivery.Aliases)
	if err != nil {
		return withExit(exitConfig, fmt.Errorf("delivery.aliases: %w", err))
	}
	if err := checkDB(context.Background(), cfg, stdout); err != nil {
		return err
	}
	warnings := append(cfg.Warnings(), postmasterWarnings(cfg, aliases)...)
	for _, w := range warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "%s: ok\n", cf.path())
	return nil
}

// checkDB checks mailroom.db: through the running server, which has it
// open, or else in a child process (dbguard.go).
func checkDB(ctx context.Context, cfg *config.Config, stdout io.Writer) error {
	var res dbCheckResult
	err := ctl.Call(ctx, cfg.ControlSocket(), "db.check", nil, nil, &res)
	if errors.Is(err, ctl.ErrNoServer) {
		if err := vetDB(ctx, cfg, 2*time.Second); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: sound\n", cfg.DBPath())
		return nil
	}
	if err != nil {
		return withExit(exitTempFail, err)
	}
	fmt.Fprintf(stdout, "%s: sound (checked by the running server)\n", cfg.DBPath())
	return nil
}

// postmasterWarnings names the local domains where postmaster@ reaches
// nobody: RFC 5321 §4.5.1 requires it to work.
func postmasterWarnings(cfg *config.Config, aliases *alias.Table) []string {
	var users []userInfo
	// Accounts count too; if the database cannot be read, aliases alone
	// decide (the warning then says so).
	dbErr := call(context.Background(), cfg, "user.list", nil, nil, &users)
	var out []string
	for _, d := range cfg.Domains {
		pm := address.Address{Local: "postmaster", Domain: d}
		if aliases.Defines(pm) {
			continue
		}
		found := false
		for _, u := range users {
			found = found || strings.EqualFold(u.Address, pm.String())
		}
		if found {
			continue
		}
		w := fmt.Sprintf("%s has no postmaster: add \"postmaster: you@%s\" to the aliases file (delivery.aliases); RFC 5321 §4.5.1 requires it", d, d)
		if dbErr != nil {
			w += fmt.Sprintf(" (accounts not checked: %v)", dbErr)
		}
		out = append(out, w)
	}
	return out
}
