package main

import (
	"context"
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"mailroom/config"
	"mailroom/internal/address"
	"mailroom/internal/durable"
	"mailroom/internal/resolve"
	"mailroom/mailauth/dkim"
)

// defaultSelector is `mailroom dkim keygen`'s selector for algo, one per
// algorithm so that an RSA and an Ed25519 key can sign side by side.
func defaultSelector(algo string) string {
	if algo == dkim.Ed25519 {
		return "mailroom-ed25519"
	}
	return "mailroom"
}

func cmdDKIM(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return withExit(exitUsage, errors.New("usage: mailroom dkim keygen|check DOMAIN [-config FILE]"))
	}
	switch args[0] {
	case "keygen":
		return dkimKeygen(args[1:], stdout, stderr)
	case "check":
		return dkimCheck(args[1:], stdout, stderr)
	}
	return withExit(exitUsage, fmt.Errorf("unknown dkim command %q: use keygen or check", args[0]))
}

// dkimConfig reads the configuration without insisting that the keys it
// names exist: keygen is how they come to exist.
func dkimConfig(cf *commonFlags, domainArg string) (*config.Config, string, error) {
	data, err := os.ReadFile(cf.path())
	if err != nil {
		return nil, "", withExit(exitConfig, fmt.Errorf("read configuration: %w", err))
	}
	cfg, err := config.Parse(cf.path(), data)
	if err != nil {
		return nil, "", withExit(exitConfig, err)
	}
	domain, err := address.NormalizeDomain(domainArg)
	if err != nil {
		return nil, "", withExit(exitUsage, fmt.Errorf("%q is not a domain: %w", domainArg, err))
	}
	if !slices.ContainsFunc(cfg.Domains, func(d string) bool { return strings.EqualFold(d, domain) }) {
		return nil, "", withExit(exitUsage, fmt.Errorf("%s is not one of the domains in %s: mailroom signs only mail from its own domains", domain, cfg.Path))
	}
	return cfg, domain, nil
}

// dkimKeygen writes a new private key under data_dir (0600, never over an
// existing one) and prints the TXT record to publish on stdout, as
// opendkim-genkey does, with what to do next on stderr.
func dkimKeygen(args []string, stdout, stderr io.Writer) error {
	fs, cf := newFlagSet("dkim keygen", stderr)
	selector := fs.String("selector", "", "selector: the key's record is SELECTOR._domainkey.DOMAIN (default mailroom, or mailroom-ed25519)")
	algo := fs.String("algo", dkim.RSA, "key algorithm: rsa (2048 bits) or ed25519 (RFC 8463)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return withExit(exitUsage, errors.New("usage: mailroom dkim keygen DOMAIN [-selector S] [-algo rsa|ed25519]"))
	}
	if *algo != dkim.RSA && *algo != dkim.Ed25519 {
		return withExit(exitUsage, fmt.Errorf("-algo %q: use rsa or ed25519", *algo))
	}
	if *selector == "" {
		*selector = defaultSelector(*algo)
	}
	if err := dkim.CheckSelector(*selector); err != nil {
		return withExit(exitUsage, err)
	}
	cfg, domain, err := dkimConfig(cf, pos[0])
	if err != nil {
		return err
	}
	path := cfg.DKIMKeyPath(domain, *selector)
	if _, err := os.Lstat(path); err == nil {
		return withExit(exitFail, fmt.Errorf("%s exists: a new key needs a new -selector (publish both records during the change), or remove the old file first", path))
	}
	key, err := dkim.Generate(*algo)
	if err != nil {
		return err
	}
	pemData, err := dkim.MarshalKey(key)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := mkdirOwned(dir, cfg.DataDir); err != nil {
		return withExit(exitTempFail, err)
	}
	name := filepath.Base(path)
	if err := durable.WriteFile(dir, name, 0o600, nil, func(w io.Writer) error {
		_, err := w.Write(pemData)
		return err
	}); err != nil {
		return withExit(exitTempFail, err)
	}
	chownLike(path, cfg.DataDir)
	rec, err := dkim.RecordFor(key.Public())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, dkim.ZoneLine(*selector, domain, rec))
	fmt.Fprintf(stderr, `Wrote the private key to %s (mode 0600).

Publish the TXT record above in the DNS zone of %s, add to %s:

[[dkim]]
domain   = %q
selector = %q

restart mailroom serve, and once the record is visible check it with:

mailroom dkim check %s
`, path, domain, cfg.Path, domain, *selector, domain)
	return nil
}

// mkdirOwned makes dir and its parents up to data_dir (0700), owned like
// data_dir when we run as root, so that serve, running as the data
// directory's owner, can read the key.
func mkdirOwned(dir, dataDir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	for d := dir; d != dataDir && strings.HasPrefix(d, dataDir); d = filepath.Dir(d) {
		chownLike(d, dataDir)
	}
	return nil
}

// chownLike gives path the owner of ref, when we are root and they
// differ; failures are left for the reading side to report.
func chownLike(path, ref string) {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := os.Stat(ref)
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		os.Lchown(path, int(st.Uid), int(st.Gid))
	}
}

// dkimCheck looks up the published record of every key of DOMAIN (those
// in [[dkim]], or else those keygen wrote under data_dir) and says
// whether it matches. Exit 0: all match; 1: one does not; 75: DNS could
// not answer.
func dkimCheck(args []string, stdout, stderr io.Writer) error {
	fs, cf := newFlagSet("dkim check", stderr)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return withExit(exitUsage, errors.New("usage: mailroom dkim check DOMAIN"))
	}
	cfg, domain, err := dkimConfig(cf, pos[0])
	if err != nil {
		return err
	}
	type keyRef struct{ selector, path string }
	var keys []keyRef
	for _, k := range cfg.DKIM {
		if strings.EqualFold(k.Domain, domain) {
			p := k.Key
			if p == "" {
				p = cfg.DKIMKeyPath(domain, k.Selector)
			} else if !filepath.IsAbs(p) {
				p = filepath.Join(filepath.Dir(cfg.Path), p)
			}
			keys = append(keys, keyRef{k.Selector, p})
		}
	}
	if len(keys) == 0 {
		found, _ := filepath.Glob(filepath.Join(cfg.DataDir, "dkim", domain, "*.key"))
		for _, p := range found {
			keys = append(keys, keyRef{strings.TrimSuffix(filepath.Base(p), ".key"), p})
		}
		if len(keys) > 0 {
			fmt.Fprintf(stdout, "note: no [[dkim]] entry for %s in %s: these keys do not sign yet\n", domain, cfg.Path)
		}
	}
	if len(keys) == 0 {
		return withExit(exitFail, fmt.Errorf("no DKIM key for %s: make one with mailroom dkim keygen %s", domain, domain))
	}
	res := resolve.New(resolve.Options{Server: cfg.DNSServer()})
	var bad, temp int
	for _, k := range keys {
		name := dkim.RecordName(k.selector, domain)
		key, err := dkim.LoadKey(k.path)
		if err != nil {
			fmt.Fprintf(stdout, "%s: %v\n", name, err)
			bad++
			continue
		}
		msg, isTemp := checkRecord(res, name, key.Public())
		fmt.Fprintf(stdout, "%s: %s\n", name, msg)
		switch {
		case isTemp:
			temp++
		case !strings.HasPrefix(msg, "ok"):
			bad++
			if rec, err := dkim.RecordFor(key.Public()); err == nil {
				fmt.Fprintf(stdout, "  publish:\n  %s\n", strings.ReplaceAll(dkim.ZoneLine(k.selector, domain, rec), "\n", "\n  "))
			}
		}
	}
	switch {
	case bad > 0:
		return withExit(exitFail, fmt.Errorf("%d of %d keys of %s are not published as they should be", bad, len(keys), domain))
	case temp > 0:
		return withExit(exitTempFail, fmt.Errorf("DNS did not answer for %d of %d keys of %s: try again later", temp, len(keys), domain))
	}
	return nil
}

// checkRecord looks up one key record: a one-line verdict, and whether it
// is only DNS trouble.
func checkRecord(res *resolve.Resolver, name string, pub crypto.PublicKey) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	txts, err := res.LookupTXT(ctx, name)
	switch {
	case resolve.IsNotFound(err):
		return "not published (no TXT record)", false
	case err != nil:
		return fmt.Sprintf("DNS lookup failed: %v", err), true
	}
	var recs []*dkim.Record
	var why []string
	for _, t := range txts {
		r, err := dkim.ParseRecord(t)
		if err != nil {
			why = append(why, err.Error())
			continue
		}
		recs = append(recs, r)
	}
	switch {
	case len(recs) == 0:
		return fmt.Sprintf("no valid DKIM record: %s", strings.Join(why, "; ")), false
	case len(recs) > 1:
		// RFC 6376 §3.6.2.2: verifiers may pick any; the result is
		// undefined.
		return fmt.Sprintf("%d DKIM records published: keep exactly one", len(recs)), false
	}
	if err := recs[0].Matches(pub); err != nil {
		return "does not match the key: " + err.Error(), false
	}
	desc := dkim.Algorithm(pub)
	if k, ok := pub.(*rsa.PublicKey); ok {
		desc = fmt.Sprintf("rsa, %d bits", k.N.BitLen())
	}
	if recs[0].Testing() {
		return fmt.Sprintf("ok (%s), but in test mode (t=y): remove t=y once signing works", desc), false
	}
	return fmt.Sprintf("ok (%s)", desc), false
}
