package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"mailroom/config"
)

// The manual pages are written from the same sources as the help: the
// command table (help.go) for mailroom(8) and the configuration's keys
// with their doc comments (config.Keys) for mailroom.toml(5), so that
// neither can say something the program does not do.

// manPages are the pages `mailroom manpage` writes, by file name (a
// function, since mailroom(8) reads the command table that names this).
func manPages() map[string]func(io.Writer) {
	return map[string]func(io.Writer){
		"mailroom.8":      writeMan8,
		"mailroom.toml.5": writeMan5,
	}
}

func manPageNames() string {
	names := make([]string, 0, len(manPages()))
	for n := range manPages() {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func cmdManpage(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return withExit(exitUsage, fmt.Errorf("say which page: %s", manPageNames()))
	}
	write := manPages()[args[0]]
	if write == nil {
		return withExit(exitUsage, fmt.Errorf("no page %q: say one of %s", args[0], manPageNames()))
	}
	write(stdout)
	return nil
}

// roff escapes s for a text line: backslashes, and a control character
// ('.' or "'") at the start of the line.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// roffOpt writes a flag or a usage line: options in bold with real
// minus signs, upper-case arguments in italics.
func roffOpt(s string) string {
	var words []string
	for _, w := range strings.Fields(s) {
		switch {
		case strings.HasPrefix(w, "[-"):
			words = append(words, `[\fB\-`+roff(w[2:])+`\fR`)
		case strings.HasPrefix(w, "-"):
			words = append(words, `\fB\-`+roff(w[1:])+`\fR`)
		case strings.ToUpper(strings.Trim(w, "[]|.")) == strings.Trim(w, "[]|.") && strings.Trim(w, "[]|.") != "":
			words = append(words, `\fI`+roff(w)+`\fR`)
		default:
			words = append(words, `\fB`+roff(w)+`\fR`)
		}
	}
	return strings.Join(words, " ")
}

func manHeader(w io.Writer, title, section, name, what string) {
	fmt.Fprintf(w, ".\\\" Written by mailroom manpage %s, from the program's own help: do not edit.\n", strings.ToLower(title)+"."+section)
	fmt.Fprintf(w, ".TH %s %s \"\" \"mailroom %s\" \"mailroom\"\n", title, section, roff(strings.Fields(version())[0]))
	fmt.Fprintf(w, ".nh\n.SH NAME\n%s \\- %s\n", name, roff(what))
}

func paras(w io.Writer, text string) {
	for i, p := range paragraphs(text) {
		if i > 0 {
			fmt.Fprintln(w, ".PP")
		}
		fmt.Fprintln(w, roff(p))
	}
}

func writeMan8(w io.Writer) {
	manHeader(w, "MAILROOM", "8", "mailroom", "mail server: SMTP MX and submission, LMTP, local delivery, Sieve and IMAP in one program")
	fmt.Fprintln(w, ".SH SYNOPSIS\n.nf")
	for _, c := range commands() {
		for _, u := range c.usage {
			fmt.Fprintf(w, "\\fBmailroom\\fR %s\n", roffOpt(u))
		}
	}
	fmt.Fprintln(w, ".fi")
	fmt.Fprintln(w, ".SH DESCRIPTION")
	paras(w, `mailroom receives mail for the domains of its configuration file, mailroom.toml(5): as a domain's MX on SMTP, from users on submission, or from an MTA in front of it over LMTP or as its local delivery agent (deliver). It delivers it into Maildirs (or mbox files, with [delivery] format = "mbox") in the mail homes under data_dir, through aliases, .forward files and Sieve scripts, sends mail for other domains out through its queue, and serves the mailboxes over IMAP.

"serve" runs the server. The other commands work whether it runs or not: while it runs they ask it through the control socket in data_dir, and otherwise they open mailroom.db themselves, so they must run as the user mailroom runs as.

-config FILE may come before the command as well as after it. "mailroom help COMMAND" and "mailroom COMMAND -h" print what this page says about one command; "mailroom help config" lists every key of the configuration file.`)
	fmt.Fprintln(w, ".SH COMMANDS")
	for _, c := range commands() {
		writeManCommand(w, c)
	}
	fmt.Fprintln(w, ".SH ENVIRONMENT\n.TP\n.B MAILROOM_CONFIG")
	fmt.Fprintf(w, "The configuration file when no \\fB\\-config\\fR is given; without either, %s.\n", roff(config.DefaultPath))
	fmt.Fprintln(w, ".TP\n.B NOTIFY_SOCKET\nSet by systemd for a unit of Type=notify: serve reports READY, RELOADING and STOPPING on it.")
	fmt.Fprintln(w, ".SH FILES")
	for _, f := range [][2]string{
		{config.DefaultPath, "the configuration file, mailroom.toml(5)"},
		{"DATA_DIR/mailroom.db", "accounts, the mailbox index (UIDs, flags), the queue's records and Sieve state, in one bbolt file; back it up with mailroom backup, never by copying it while serve runs"},
		{"DATA_DIR/mail/DOMAIN/USER/", "a mail home: its Maildir++ (Maildir/ with cur, new, tmp and .Folder directories) or mbox files, .forward and sieve/"},
		{"DATA_DIR/queue/", "the bodies of queued outgoing messages"},
		{"DATA_DIR/dkim/DOMAIN/SELECTOR.key", "DKIM private keys written by mailroom dkim keygen"},
		{"DATA_DIR/control.sock", "the control socket through which commands reach a running serve"},
	} {
		fmt.Fprintf(w, ".TP\n.I %s\n%s\n", roff(f[0]), roff(f[1]))
	}
	fmt.Fprintln(w, ".SH EXIT STATUS")
	paras(w, `As sysexits(3) has them, which MTAs read from a delivery agent: 0 success, 1 failure, 64 (EX_USAGE) a wrong command line, 65 (EX_DATAERR) bad input, 67 (EX_NOUSER) no such user, 75 (EX_TEMPFAIL) temporary trouble, try again later (a locked or damaged mailroom.db among it), 78 (EX_CONFIG) an error in the configuration. Each command above says which it uses.`)
	fmt.Fprintln(w, ".SH SEE ALSO\nmailroom.toml(5), postfix(1), pipe(8), lmtp(8), socketmap_table(5), systemd.service(5)")
	fmt.Fprintln(w, ".PP\nThe administrator's guide: docs/admin.md in mailroom's source.")
}

func writeManCommand(w io.Writer, c *command) {
	fmt.Fprintf(w, ".SS %s\n.nf\n", roff(c.name))
	for _, u := range c.usage {
		fmt.Fprintf(w, "\\fBmailroom\\fR %s\n", roffOpt(u))
	}
	fmt.Fprintln(w, ".fi\n.PP")
	fmt.Fprintln(w, roff(c.summary))
	for _, a := range c.actions {
		fmt.Fprintf(w, ".TP\n%s\n%s\n", roffOpt(a.usage), roff(a.text))
	}
	var seen []string
	for _, fs := range c.flagSets() {
		fs.VisitAll(func(f *flag.Flag) {
			if slices.Contains(seen, f.Name) {
				return
			}
			seen = append(seen, f.Name)
			fmt.Fprintf(w, ".TP\n%s\n%s\n", roffOpt(flagUsage(f)), roff(f.Usage))
		})
	}
	if c.text != "" {
		fmt.Fprintln(w, ".PP")
		paras(w, c.text)
	}
	if c.exit != "" {
		fmt.Fprintf(w, ".PP\nExit status: %s\n", roff(c.exit))
	}
}

func writeMan5(w io.Writer) {
	manHeader(w, "MAILROOM.TOML", "5", "mailroom.toml", "configuration file of mailroom(8)")
	fmt.Fprintln(w, ".SH SYNOPSIS")
	fmt.Fprintf(w, ".I %s\n", roff(config.DefaultPath))
	fmt.Fprintln(w, ".SH DESCRIPTION")
	paras(w, `The file is TOML (https://toml.io): keys at the top, then tables such as [smtp] whose keys follow their heading. Every key is optional unless said otherwise, except hostname, data_dir and domains, which have to make sense for this server. A key that mailroom does not know is an error (with the nearest known key suggested), never ignored; so is a value of the wrong type. Relative paths are taken from the file's directory.

"mailroom check" validates the file, names the line of every error and warns about settings that are probably not meant; "serve" refuses to start with an error, and a reload (SIGHUP) with one keeps the configuration in force. "mailroom help config" lists every key with its type and default. examples/mailroom.toml in the source sets every key, commented.

Each key below gives what it takes and its default, which is what leaving it out means.`)
	section := ""
	for _, k := range config.Keys() {
		if k.Table {
			heading := "[" + k.Name + "]"
			if strings.HasPrefix(k.Type, "an array") {
				heading = "[[" + k.Name + "]]"
			}
			if !strings.Contains(k.Name, ".") {
				fmt.Fprintf(w, ".SH %s\n", roff(heading))
			} else {
				fmt.Fprintf(w, ".SS %s\n", roff(heading))
			}
			section = k.Name
			paras(w, k.Doc)
			continue
		}
		if section == "" {
			fmt.Fprintln(w, ".SH TOP-LEVEL KEYS")
			section = "."
		}
		name := k.Name[strings.LastIndex(k.Name, ".")+1:]
		what := k.Type
		if k.Default != "" {
			what += ", default " + k.Default
		}
		fmt.Fprintf(w, ".TP\n\\fB%s\\fR (%s)\n", roff(name), roff(what))
		for i, p := range paragraphs(k.Doc) {
			if i > 0 {
				fmt.Fprintln(w, ".IP")
			}
			fmt.Fprintln(w, roff(p))
		}
	}
	fmt.Fprintln(w, ".SH FILES\n.TP")
	fmt.Fprintf(w, ".I %s\nthe file, unless \\fB\\-config\\fR or MAILROOM_CONFIG names another.\n", roff(config.DefaultPath))
	fmt.Fprintln(w, ".SH SEE ALSO\nmailroom(8), aliases(5), postconf(5)")
}
