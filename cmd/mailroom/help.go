package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"mailroom/config"
)

// command is one subcommand: how to run it and what its help says. The
// same table gives the usage summary, `mailroom help CMD`, `CMD -h` and
// the mailroom(8) manual page (manpage.go), so they cannot disagree.
type command struct {
	name string
	// usage lines, without "mailroom ".
	usage []string
	// summary is one sentence: what the command is for.
	summary string
	// actions are the verbs of commands that have them ("user add").
	actions []action
	// text is more about the command, in paragraphs (blank lines between).
	text string
	// exit describes the exit statuses, if more than 0 and 1.
	exit string
	// flagsOf are the argument lists (before "-h") whose flag sets make
	// the command's flags: {nil} for the command's own.
	flagsOf [][]string
	run     func(c *cmdIO) error
}

type action struct{ usage, text string }

// cmdIO is what a command reads and writes.
type cmdIO struct {
	args           []string
	stdin          io.Reader
	stdout, stderr io.Writer
}

// helpRequest is what parseInterspersed returns for -h: run prints the
// command's help on stdout and exits 0.
type helpRequest struct{ fs *flag.FlagSet }

func (h *helpRequest) Error() string { return "help requested" }

const configHelp = "configuration file (default $MAILROOM_CONFIG, then " + config.DefaultPath + ")"

// commands is the table, made on each call: a function rather than a
// variable, since help (in it) reads it.
func commands() []*command {
	return []*command{
		{
			name:    "serve",
			usage:   []string{"serve [-config FILE] [-debug] [-dev]"},
			summary: "Run every configured listener (SMTP, submission, LMTP, IMAP) and the outbound queue until SIGTERM or SIGINT.",
			text: `SIGHUP reloads the accounts, the aliases file, the TLS certificate and the list of domains without dropping a connection; a new configuration with an error is refused and logged, and the old one stays in force. SIGTERM and SIGINT stop it gracefully: it stops accepting, lets deliveries in progress finish and answer (for up to 30 seconds) and closes the database last.

Before it opens mailroom.db, serve (like every command that opens it) has the file checked by bbolt's consistency check in a child process, and refuses a damaged file, or an empty one while mail homes exist, with one line that names the file and the recovery (check -repair, or restore).

-dev runs a private server on loopback under ./mailroom-dev with a ready account, for trying mailroom out.`,
			flagsOf: [][]string{nil},
			run:     func(c *cmdIO) error { return cmdServe(c.args, c.stdout, c.stderr) },
		},
		{
			name:    "deliver",
			usage:   []string{"deliver [-config FILE] [-f SENDER] RCPT..."},
			summary: "Deliver the message on standard input to each RCPT, as a local delivery agent (what a Postfix pipe(8) transport runs).",
			text:    `With several recipients it delivers to all or to none. It hands the message to the running server through its control socket, or without one opens mailroom.db itself; so it must run as the user mailroom runs as.`,
			exit:    "0 delivered, 67 (EX_NOUSER) unknown recipient, 75 (EX_TEMPFAIL) try again later; nothing is delivered unless the exit is 0.",
			flagsOf: [][]string{nil},
			run:     func(c *cmdIO) error { return cmdDeliver(c.args, c.stdin, c.stderr) },
		},
		{
			name:    "user",
			usage:   []string{"user add|passwd|del ADDRESS [-config FILE]", "user list [-config FILE]"},
			summary: "Manage the accounts.",
			actions: []action{
				{"add ADDRESS", "create an account in one of the configured domains, with its mail home"},
				{"passwd ADDRESS", "set a new password"},
				{"del ADDRESS", "delete the account; its mail home is kept"},
				{"list", "print every account and the day it was made"},
			},
			text:    `A password is read from standard input (one line) when it is not a terminal, or else prompted for twice without echo; it is stored as a bcrypt hash.`,
			exit:    "0 done, 64 usage, 65 the address or password is not acceptable (or the account exists), 67 no such account, 75 try again later.",
			flagsOf: [][]string{nil},
			run:     func(c *cmdIO) error { return cmdUser(c.args, c.stdin, c.stdout, c.stderr) },
		},
		{
			name: "sieve",
			usage: []string{"sieve list|deactivate USER [-config FILE]", "sieve get|activate|del USER NAME [-config FILE]",
				"sieve put [-name NAME] [-activate] USER FILE [-config FILE]", "sieve check USER [FILE] [-config FILE]"},
			summary: "Manage a user's Sieve scripts, as the user would over ManageSieve.",
			actions: []action{
				{"list USER", "print the user's scripts with their sizes, ACTIVE after the active one"},
				{"put USER FILE", "compile FILE (- for standard input, with -name) and store it as NAME, by default FILE's base name without .sieve; -activate makes it active"},
				{"get USER NAME", "print a script"},
				{"activate USER NAME", "make NAME the script deliveries to the user run"},
				{"deactivate USER", "leave the user without an active script (plain delivery)"},
				{"del USER NAME", "delete a script that is not active"},
				{"check USER [FILE]", "compile FILE as one of the user's scripts (includes resolved), without storing it; without FILE, every script a delivery to the user runs, the administrator's before and after scripts included"},
			},
			text:    `Scripts live in the user's mail home, under sieve/; a script that does not compile is refused with its line and column, and never stored.`,
			exit:    "0 done, 64 usage, 65 the script does not compile or is refused (name, size, quota, active), 67 no such account or script, 75 try again later.",
			flagsOf: [][]string{nil},
			run:     func(c *cmdIO) error { return cmdSieve(c.args, c.stdin, c.stdout, c.stderr) },
		},
		{
			name:    "route",
			usage:   []string{"route [-config FILE] ADDRESS"},
			summary: "Print how mail to ADDRESS would be delivered: the alias and .forward expansion as a tree, ending in mailboxes, files, commands and remote addresses. Nothing is delivered.",
			exit:    "0 deliverable, 67 undeliverable.",
			flagsOf: [][]string{nil},
			run:     func(c *cmdIO) error { return cmdRoute(c.args, c.stdout, c.stderr) },
		},
		{
			name:    "queue",
			usage:   []string{"queue list|flush [-config FILE]", "queue drop ID [-config FILE]"},
			summary: "Look at and act on the outbound queue.",
			actions: []action{
				{"list", "print each message: id, age, sender, recipients, attempts, next attempt, last error"},
				{"flush", "make every waiting recipient due now"},
				{"drop ID", "remove a message without sending or bouncing it"},
			},
			flagsOf: [][]string{nil},
			run:     func(c *cmdIO) error { return cmdQueue(c.args, c.stdout, c.stderr) },
		},
		{
			name:    "check",
			usage:   []string{"check [-config FILE]", "check -repair [-from BACKUP] [-config FILE]"},
			summary: "Validate the configuration, the aliases file and mailroom.db, and warn about settings that are probably not meant.",
			text: `Errors name the file and line and say what to change. Warnings cover a server that receives no mail, submission or IMAP without TLS off loopback, sockets the socket_group cannot reach, a data_dir that is not 0700 and domains without a postmaster. A socket_group that does not exist is an error.

-repair brings back a damaged or lost mailroom.db as far as the files allow, with serve stopped: it copies what bbolt can still read into a new file and keeps the old one aside (mailroom.db.damaged-TIME), moves queued messages whose records were lost to data_dir/queue-lost-TIME, takes accounts that are missing from the backup given with -from (their passwords too), makes an account without a password for every mail home still without one (so that its mail goes on being delivered; set a password with user passwd), and indexes every folder from the mail on disk. UIDs are kept where the salvaged index or a Maildir's dovecot-uidlist has them; a folder whose index was lost gets a new UIDVALIDITY, so that clients fetch it again. It says what it could not save.`,
			exit:    "0 valid (warnings may have been printed), 75 the database is damaged or locked, 78 (EX_CONFIG) the configuration has an error.",
			flagsOf: [][]string{nil},
			run:     func(c *cmdIO) error { return cmdCheck(c.args, c.stdout, c.stderr) },
		},
		{
			name:    "backup",
			usage:   []string{"backup [-config FILE] DIR", "backup -verify DIR"},
			summary: "Write a backup to DIR (a new or empty directory): a consistent copy of mailroom.db, the mail homes, the queue and the DKIM keys.",
			text:    `While serve runs the copy is made by it, through the control socket, so DIR must be writable by the user mailroom runs as. The database is copied first with bbolt's transactional copy; every message acknowledged before the backup began is in the copy. DIR/MANIFEST lists every file with its SHA-256 in sha256sum(1)'s format, so a copy kept elsewhere can be checked with "sha256sum -c MANIFEST" as well as with -verify, which also checks the database.`,
			exit:    "0 written (or sound), 65 the backup does not match its manifest, 75 it could not be written.",
			flagsOf: [][]string{nil},
			run:     func(c *cmdIO) error { return cmdBackup(c.args, c.stdout, c.stderr) },
		},
		{
			name:    "restore",
			usage:   []string{"restore [-force] [-keep-uids] [-config FILE] DIR"},
			summary: "Put the backup in DIR back into data_dir, with serve stopped.",
			text:    `The backup is verified first. A data_dir that already holds a database, mail or a queue is refused unless -force, which moves them aside (NAME.before-restore-TIME). The database is put in place last, so that a restore cut short leaves no database (which every command refuses) rather than one without its mail. Messages received after the backup are not in it. Every Maildir folder keeps its messages, UIDs, flags and keywords, under a new UIDVALIDITY (mbox folders keep theirs for now): mail clients may have seen UIDs handed out after the backup, to mail it does not hold, which the restored folder would hand out again; so they fetch each folder again instead of trusting their caches. -keep-uids keeps the UIDVALIDITY, for a backup after which no client saw any change (taken with the server stopped, to move it).`,
			exit:    "0 restored, 65 the backup is damaged or data_dir holds data, 75 it could not be written.",
			flagsOf: [][]string{nil},
			run:     func(c *cmdIO) error { return cmdRestore(c.args, c.stdout, c.stderr) },
		},
		{
			name:    "dkim",
			usage:   []string{"dkim keygen DOMAIN [-selector S] [-algo rsa|ed25519] [-config FILE]", "dkim check DOMAIN [-config FILE]"},
			summary: "Make and check the DKIM keys that sign mail leaving through the queue.",
			actions: []action{
				{"keygen DOMAIN", "write a new private key under data_dir/dkim (mode 0600, never over an existing one) and print the TXT record to publish"},
				{"check DOMAIN", "look up the published record of every key of DOMAIN and say whether it matches"},
			},
			exit:    "check: 0 every record matches, 1 one does not, 75 DNS could not answer.",
			flagsOf: [][]string{{"keygen"}, {"check"}},
			run:     func(c *cmdIO) error { return cmdDKIM(c.args, c.stdout, c.stderr) },
		},
		{
			name:    "dovecot",
			usage:   []string{"dovecot export [ADDRESS...] [-config FILE]"},
			summary: "Hand the Maildirs back to Dovecot with their UIDs: write a dovecot-uidlist into every folder of every account (or of those named), with serve stopped.",
			actions: []action{
				{"export [ADDRESS...]", "bring each folder's index up to date with the disk and write its UIDVALIDITY, next UID and every message's UID as Dovecot's dovecot-uidlist"},
			},
			text:    `Point Dovecot at the Maildirs next (mail_location = maildir:DATA_DIR/mail/%d/%n/Maildir), before anything delivers into them: Dovecot takes the UIDs over and IMAP clients keep their caches. Keywords set in mailroom stay behind (Dovecot reads them from file names). Moving from Dovecot needs no command: a folder's first index takes its dovecot-uidlist and dovecot-keywords over.`,
			exit:    "0 written, 67 no such account, 75 serve is running or the files could not be written.",
			flagsOf: [][]string{{"export"}},
			run:     func(c *cmdIO) error { return cmdDovecot(c.args, c.stdout, c.stderr) },
		},
		{
			name:    "convert",
			usage:   []string{"convert -to mbox|maildir [ADDRESS...] [-config FILE]"},
			summary: "Copy every account's mail (or that of those named) into the other store format, with serve stopped, check it, and move the old store aside.",
			text:    `Each folder is copied with its flags, keywords and internal dates, and its message count and bytes are checked on the copy; then the old store is renamed (Maildir.converted, or mbox.converted and mail.converted in the mail home), never deleted. Set [delivery] format to the new format before starting serve again. An mbox folder cannot hold both messages and folders: a Maildir folder that does is refused, and that account is left as it was.`,
			exit:    "0 converted, 64 no -to, 67 no such account, 75 serve is running, or a copy failed or did not check out.",
			run:     func(c *cmdIO) error { return cmdConvert(c.args, c.stdout, c.stderr) },
		},
		{
			name:    "version",
			usage:   []string{"version"},
			summary: "Print the module version and the VCS revision mailroom was built from, the Go version and the platform.",
			run:     func(c *cmdIO) error { return cmdVersion(c.stdout) },
		},
		{
			name:    "manpage",
			usage:   []string{"manpage mailroom.8|mailroom.toml.5"},
			summary: "Print a manual page, mailroom(8) (the commands) or mailroom.toml(5) (the configuration file), written from the same sources as the help, to be installed under man8 and man5.",
			text:    `For example: mailroom manpage mailroom.8 > /usr/local/share/man/man8/mailroom.8; mailroom manpage mailroom.toml.5 > /usr/local/share/man/man5/mailroom.toml.5.`,
			exit:    "0 written, 64 no such page.",
			run:     func(c *cmdIO) error { return cmdManpage(c.args, c.stdout) },
		},
		{
			name:    "help",
			usage:   []string{"help [COMMAND | config [KEY]]"},
			summary: "Print the usage of every command, of one command, every configuration key with its type and default, or what one key (limits.idle_timeout) or table (limits) does.",
			run:     func(c *cmdIO) error { return cmdHelp(c.args, c.stdout) },
		},
	}
}

func lookupCommand(name string) *command {
	all := commands()
	i := slices.IndexFunc(all, func(c *command) bool { return c.name == name })
	if i < 0 {
		return nil
	}
	return all[i]
}

// usageText is the summary of every command.
func usageText() string {
	var b strings.Builder
	b.WriteString("usage:\n")
	for _, c := range commands() {
		for _, u := range c.usage {
			fmt.Fprintf(&b, "  mailroom %s\n", u)
		}
	}
	b.WriteString("\n" + wrap("-config defaults to $MAILROOM_CONFIG, then "+config.DefaultPath+"; it may also come before the command. "+
		"mailroom help COMMAND (or COMMAND -h) explains one command; mailroom help config lists every key of the configuration file.", 78, "") + "\n")
	return b.String()
}

// flagSets returns the flag sets of c, got by running it with -h (it
// parses its flags before doing anything else).
func (c *command) flagSets() []*flag.FlagSet {
	var out []*flag.FlagSet
	for _, pre := range c.flagsOf {
		err := c.run(&cmdIO{args: append(slices.Clone(pre), "-h"), stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard})
		var hr *helpRequest
		if errors.As(err, &hr) {
			out = append(out, hr.fs)
		}
	}
	return out
}

// writeHelp prints c's help as `help CMD` and `CMD -h` show it.
func (c *command) writeHelp(w io.Writer) {
	for i, u := range c.usage {
		prefix := "usage: "
		if i > 0 {
			prefix = "       "
		}
		fmt.Fprintf(w, "%smailroom %s\n", prefix, u)
	}
	fmt.Fprintf(w, "\n%s\n", wrap(c.summary, 78, ""))
	if len(c.actions) > 0 {
		fmt.Fprintf(w, "\nactions:\n")
		width := 0
		for _, a := range c.actions {
			width = max(width, len(a.usage))
		}
		for _, a := range c.actions {
			fmt.Fprintf(w, "  %-*s  %s\n", width, a.usage, wrap(a.text, 76-width, strings.Repeat(" ", width+4)))
		}
	}
	var flags []*flag.Flag
	for _, fs := range c.flagSets() {
		fs.VisitAll(func(f *flag.Flag) {
			if !slices.ContainsFunc(flags, func(g *flag.Flag) bool { return g.Name == f.Name }) {
				flags = append(flags, f)
			}
		})
	}
	if len(flags) > 0 {
		fmt.Fprintf(w, "\nflags:\n")
		for _, f := range flags {
			fmt.Fprintf(w, "  %s\n        %s\n", flagUsage(f), wrap(f.Usage, 70, "        "))
		}
	}
	for _, p := range paragraphs(c.text) {
		fmt.Fprintf(w, "\n%s\n", wrap(p, 78, ""))
	}
	if c.exit != "" {
		fmt.Fprintf(w, "\nexit status: %s\n", wrap(c.exit, 65, "  "))
	}
}

// flagUsage is "-name ARG" (ARG from the flag's default kind).
func flagUsage(f *flag.Flag) string {
	if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
		return "-" + f.Name
	}
	var arg string
	switch f.Name {
	case "config":
		arg = "FILE"
	case "f":
		arg = "SENDER"
	case "from":
		arg = "BACKUP"
	default:
		arg = strings.ToUpper(f.Name)
	}
	return "-" + f.Name + " " + arg
}

func paragraphs(s string) []string {
	var out []string
	for _, p := range strings.Split(s, "\n\n") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, strings.Join(strings.Fields(p), " "))
		}
	}
	return out
}

// wrap breaks s into lines of at most width, the later ones indented.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	n := 0
	for i, word := range strings.Fields(s) {
		switch {
		case i == 0:
		case n+1+len(word) > width:
			b.WriteString("\n" + indent)
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}

func cmdHelp(args []string, stdout io.Writer) error {
	switch {
	case len(args) == 0:
		fmt.Fprint(stdout, usageText())
		return nil
	case len(args) == 1 && args[0] == "config":
		writeConfigHelp(stdout)
		return nil
	case len(args) == 2 && args[0] == "config":
		return writeKeyHelp(stdout, args[1])
	case len(args) == 1:
		if c := lookupCommand(args[0]); c != nil {
			c.writeHelp(stdout)
			return nil
		}
	}
	return withExit(exitUsage, fmt.Errorf("no help for %q: say a command (%s) or config", strings.Join(args, " "), commandNames()))
}

func commandNames() string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}

// writeConfigHelp lists every key of the configuration file with what it
// takes and its default.
func writeConfigHelp(w io.Writer) {
	fmt.Fprintf(w, "Every key of the configuration file (mailroom.toml(5) explains each):\n\n")
	for _, k := range config.Keys() {
		if k.Table {
			if strings.HasPrefix(k.Type, "an array") {
				fmt.Fprintf(w, "\n[[%s]]\n", k.Name)
			} else {
				fmt.Fprintf(w, "\n[%s]\n", k.Name)
			}
			continue
		}
		name := k.Name[strings.LastIndex(k.Name, ".")+1:]
		def := ""
		if k.Default != "" {
			def = ", default " + k.Default
		}
		fmt.Fprintf(w, "  %-24s %s%s\n", name, k.Type, def)
	}
}

// writeKeyHelp prints what the key or table name does, as
// mailroom.toml(5) says it.
func writeKeyHelp(w io.Writer, name string) error {
	keys := config.Keys()
	i := slices.IndexFunc(keys, func(k config.Key) bool { return k.Name == name })
	if i < 0 {
		return withExit(exitUsage, fmt.Errorf("no key %q: mailroom help config lists every key", name))
	}
	k := keys[i]
	head := k.Name + ": " + k.Type
	if k.Default != "" {
		head += ", default " + k.Default
	}
	fmt.Fprintln(w, head)
	for _, p := range paragraphs(k.Doc) {
		fmt.Fprintf(w, "\n%s\n", wrap(p, 78, ""))
	}
	if k.Table {
		fmt.Fprintln(w, "\nkeys:")
		for _, sub := range keys {
			if strings.HasPrefix(sub.Name, k.Name+".") {
				fmt.Fprintf(w, "  %s\n", sub.Name)
			}
		}
	}
	return nil
}
