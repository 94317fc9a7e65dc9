package main

import (
	"reflect"
	"slices"
	"strings"

	"mailroom/config"
)

// reloadConfig reads the configuration file again on SIGHUP and applies
// what can change under a running server: the list of domains (accounts,
// delivery and the MX's relay decision follow it from the next command or
// recipient on). A file with an error is refused and logged, and the old
// configuration stays in force; changes to keys that need a restart
// (listeners, data_dir, limits...) are logged as such. It reports
// whether the file was taken.
func reloadConfig(a *app) bool {
	if a.cfg.Path == "" {
		return true
	}
	prev := a.reloaded
	if prev == nil {
		prev = a.cfg
	}
	next, err := config.Load(a.cfg.Path)
	if err != nil {
		a.log.Error("configuration not reloaded; the old one stays in force", "file", a.cfg.Path, "err", err)
		return false
	}
	if !slices.Equal(next.Domains, prev.Domains) {
		// account first: a user add for a new domain may follow at once.
		if err := a.accounts.SetDomains(next.Domains); err != nil {
			a.log.Error("configuration not reloaded; the old one stays in force", "file", a.cfg.Path, "err", err)
			return false
		}
		if err := a.mda.SetDomains(next.Domains); err != nil {
			a.accounts.SetDomains(prev.Domains)
			a.log.Error("configuration not reloaded; the old one stays in force", "file", a.cfg.Path, "err", err)
			return false
		}
		a.log.Info("domains reloaded", "domains", next.Domains,
			"added", missingFrom(next.Domains, prev.Domains), "removed", missingFrom(prev.Domains, next.Domains))
	}
	// Against what serve started with: that is what still runs.
	if changed := restartKeys(a.cfg, next); len(changed) > 0 {
		a.log.Warn("configuration changed where a reload cannot apply it; it takes effect at the next start",
			"keys", strings.Join(changed, ", "))
	}
	a.reloaded = next
	a.log.Info("configuration reloaded", "file", a.cfg.Path)
	return true
}

// missingFrom lists the entries of a that b lacks.
func missingFrom(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// restartKeys names the top-level keys and tables, other than those a
// reload applies, whose values differ.
func restartKeys(prev, next *config.Config) []string {
	pv, nv := reflect.ValueOf(prev).Elem(), reflect.ValueOf(next).Elem()
	var out []string
	for i := range pv.NumField() {
		f := pv.Type().Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == "" || tag == "-" || tag == "domains" {
			continue
		}
		if !reflect.DeepEqual(pv.Field(i).Interface(), nv.Field(i).Interface()) {
			out = append(out, tag)
		}
	}
	return out
}
