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
	"os/user"
	"strconv"
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

func main() {
	// When started by internal/dbcheck to read a database that may be
	// damaged, do that and nothing else.
	dbcheck.Main()
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process: tests call it directly.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// Flags before the command: -config (passed on to it), -version,
	// -h.
	var configFlag []string
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
		switch {
		case name == "version":
			args = append([]string{"version"}, args[1:]...)
		case name == "h" || name == "help":
			args = append([]string{"help"}, args[1:]...)
		case name == "config" && hasValue:
			configFlag, args = []string{"-config", value}, args[1:]
		case name == "config" && len(args) > 1:
			configFlag, args = []string{"-config", args[1]}, args[2:]
		default:
			fmt.Fprintf(stderr, "mailroom: %s before the command: only -config FILE, -version and -h go there\n%s", args[0], usageText())
			return exitUsage
		}
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText())
		return exitUsage
	}
	c := lookupCommand(args[0])
	if c == nil {
		fmt.Fprintf(stderr, "mailroom: unknown command %q\n%s", args[0], usageText())
		return exitUsage
	}
	cmdArgs := args[1:]
	if configFlag != nil {
		if c.flagsOf == nil {
			fmt.Fprintf(stderr, "mailroom: %s takes no -config\n", c.name)
			return exitUsage
		}
		// After the command's first word for those with actions
		// ("dkim keygen"), whose flags belong to the action.
		if len(c.flagsOf[0]) > 0 && len(cmdArgs) > 0 {
			cmdArgs = append([]string{cmdArgs[0]}, append(configFlag, cmdArgs[1:]...)...)
		} else {
			cmdArgs = append(configFlag, cmdArgs...)
		}
	}
	if len(cmdArgs) > 0 && isHelpFlag(cmdArgs[0]) && len(c.flagsOf) > 0 && len(c.flagsOf[0]) > 0 {
		// "dkim -h": the command takes an action first.
		c.writeHelp(stdout)
		return exitOK
	}
	err := c.run(&cmdIO{args: cmdArgs, stdin: stdin, stdout: stdout, stderr: stderr})
	var hr *helpRequest
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &hr):
		c.writeHelp(stdout)
		return exitOK
	}
	var de interface{ DSN() string }
	if errors.As(err, &de) {
		// A delivery agent's output begins with the RFC 3463 status:
		// Postfix's pipe(8) takes it over the exit status's.
		fmt.Fprintf(stderr, "%s mailroom %s: %v\n", de.DSN(), c.name, err)
	} else {
		fmt.Fprintf(stderr, "mailroom %s: %v\n", c.name, err)
	}
	return exitCode(err)
}

func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

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
	// -h is answered by run with the whole help, on stdout; a bad flag
	// by parseInterspersed's one line.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	cf := &commonFlags{}
	fs.StringVar(&cf.config, "config", "", configHelp)
	return fs, cf
}

// parseInterspersed parses flags that may come before or after the
// positional arguments ("user add ADDR -config F" as well as
// "user add -config F ADDR").
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			return nil, &helpRequest{fs: fs}
		} else if err != nil {
			top, _, _ := strings.Cut(strings.TrimPrefix(fs.Name(), "mailroom "), " ")
			return nil, withExit(exitUsage, fmt.Errorf("%w (mailroom help %s explains its flags)", err, top))
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
	if g := cfg.LMTP.SocketGroup; g != "" {
		if _, err := lookupGroup(g); err != nil {
			return withExit(exitConfig, fmt.Errorf("%s: lmtp.socket_group %q: no such group on this system: create it (Postfix's package does) or name an existing one", cf.path(), g))
		}
	}
	if err := checkDB(context.Background(), cfg, stdout); err != nil {
		return err
	}
	if err := checkSieve(cfg); err != nil {
		return withExit(exitConfig, err)
	}
	warnings := append(cfg.Warnings(), postmasterWarnings(cfg, aliases)...)
	if st, err := os.Stat(cfg.DataDir); err == nil && st.Mode().Perm() != 0o700 {
		warnings = append(warnings, fmt.Sprintf("data_dir %s is mode %04o: make it 0700 (chmod 700 %s); it holds password hashes, DKIM keys and everyone's mail", cfg.DataDir, st.Mode().Perm(), cfg.DataDir))
	}
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

// lookupGroup finds a group by name or number.
func lookupGroup(g string) (*user.Group, error) {
	if _, err := strconv.Atoi(g); err == nil {
		return user.LookupGroupId(g)
	}
	return user.LookupGroup(g)
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
