package runtime

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Params are a job's --param key=value pairs. Getters record which keys were
// read so that Build can reject a misspelt parameter instead of ignoring it.
type Params struct {
	values map[string]string
	used   map[string]bool
	errs   []string
	// declared, when not nil, are the only keys the job may read: the
	// parameters its registration documents.
	declared map[string]bool
	// secret are the keys whose values errors do not quote.
	secret map[string]bool
}

// SetSecret marks keys as secrets: a malformed value of one is not quoted
// in the errors.
func (p *Params) SetSecret(keys ...string) {
	if p.secret == nil {
		p.secret = map[string]bool{}
	}
	for _, k := range keys {
		p.secret[k] = true
	}
}

// NewParams wraps a parameter map.
func NewParams(values map[string]string) *Params {
	if values == nil {
		values = map[string]string{}
	}
	return &Params{values: values, used: map[string]bool{}}
}

// NewDeclaredParams wraps a parameter map for a job that documents its
// parameters: reading a key not among declared is an error, so the
// documentation cannot drift from the code, and unknown keys are reported
// against the declared list.
func NewDeclaredParams(values map[string]string, declared []string) *Params {
	p := NewParams(values)
	p.declared = map[string]bool{}
	for _, k := range declared {
		p.declared[k] = true
	}
	return p
}

func (p *Params) lookup(key string) (string, bool) {
	if p.declared != nil && !p.declared[key] && !p.used[key] {
		p.errs = append(p.errs, fmt.Sprintf("the job reads parameter %q but does not declare it (a bug in the job's registration)", key))
	}
	p.used[key] = true
	v, ok := p.values[key]
	return v, ok
}

func (p *Params) fail(key, v, want string) {
	if p.secret[key] {
		v = "***"
	}
	p.errs = append(p.errs, fmt.Sprintf("parameter %s=%q: want %s", key, v, want))
}

// String returns the value of key or def.
func (p *Params) String(key, def string) string {
	if v, ok := p.lookup(key); ok {
		return v
	}
	return def
}

// Int returns key as an integer, or def when absent.
func (p *Params) Int(key string, def int64) int64 {
	v, ok := p.lookup(key)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		p.fail(key, v, "an integer")
		return def
	}
	return n
}

// Float returns key as a number, or def when absent.
func (p *Params) Float(key string, def float64) float64 {
	v, ok := p.lookup(key)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		p.fail(key, v, "a number")
		return def
	}
	return f
}

// Duration returns key as a Go duration ("90s", "1m"), or def when absent.
func (p *Params) Duration(key string, def time.Duration) time.Duration {
	v, ok := p.lookup(key)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		p.fail(key, v, "a duration such as 500ms or 1m")
		return def
	}
	return d
}

// Bool returns key as a boolean (true/false, 1/0, yes/no), or def when
// absent.
func (p *Params) Bool(key string, def bool) bool {
	v, ok := p.lookup(key)
	if !ok {
		return def
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1", "yes":
		return true
	case "false", "0", "no":
		return false
	}
	p.fail(key, v, "true or false")
	return def
}

// Errorf records a job-specific validation error for key.
func (p *Params) Errorf(key, format string, args ...any) {
	p.errs = append(p.errs, fmt.Sprintf("parameter %s: %s", key, fmt.Sprintf(format, args...)))
}

// CheckUnused reports malformed values and keys no getter asked for.
func (p *Params) CheckUnused() error {
	errs := append([]string(nil), p.errs...)
	var unknown []string
	for k := range p.values {
		if !p.used[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		known := make([]string, 0, len(p.used))
		for k := range p.used {
			known = append(known, k)
		}
		if p.declared != nil {
			known = known[:0]
			for k := range p.declared {
				known = append(known, k)
			}
		}
		sort.Strings(known)
		errs = append(errs, fmt.Sprintf("unknown parameter(s) %s (known: %s)",
			strings.Join(unknown, ", "), strings.Join(known, ", ")))
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid parameters: %s", strings.Join(errs, "; "))
	}
	return nil
}

// ParseParam splits a "key=value" command-line argument.
func ParseParam(s string) (key, value string, err error) {
	k, v, ok := strings.Cut(s, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return "", "", fmt.Errorf("malformed --param %q: want key=value", s)
	}
	return k, v, nil
}
