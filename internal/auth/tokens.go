package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// The token file (JobManager --auth-tokens) has one token a line:
//
//	# name    role      token
//	ci-bot    viewer    2f6c1e0e9a...
//	deployer  operator  9b1d77c4f0...
//
// Fields are separated by blanks; blank lines and lines starting with #
// are skipped. Names and tokens are unique. A token is any string of at
// least 16 characters without blanks (openssl rand -hex 32 makes a good
// one). The file is read again when its modification time or size
// changes; a file that no longer parses keeps the tokens read before.

// minTokenLen is the shortest token accepted, so a file cannot hold
// guessable ones by accident.
const minTokenLen = 16

// reloadCheck is how often Tokens looks at the file's modification time.
const reloadCheck = time.Second

// ParseTokens reads a token file's contents.
func ParseTokens(data []byte) (map[[32]byte]Identity, error) {
	out := map[[32]byte]Identity{}
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want `name role token`, got %d fields", n, len(f))
		}
		role, err := ParseRole(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if len(f[2]) < minTokenLen {
			return nil, fmt.Errorf("line %d: the token of %q is shorter than %d characters", n, f[0], minTokenLen)
		}
		if names[f[0]] {
			return nil, fmt.Errorf("line %d: the name %q appears twice", n, f[0])
		}
		names[f[0]] = true
		key := sha256.Sum256([]byte(f[2]))
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("line %d: the token of %q is another name's token too", n, f[0])
		}
		out[key] = Identity{Kind: "token", Name: f[0], Role: role}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// Tokens are the tokens of a token file, read again when it changes.
type Tokens struct {
	path string
	// OnReload, when set, is told of each reload and each failed one.
	OnReload func(n int, err error)

	mu      sync.Mutex
	tokens  map[[32]byte]Identity
	modTime time.Time
	size    int64
	checked time.Time
}

// LoadTokens reads the token file at path. A file that does not parse, or
// holds no token, is an error: a JobManager started with it would refuse
// every client.
func LoadTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	if err := t.reload(time.Now()); err != nil {
		return nil, err
	}
	if len(t.tokens) == 0 {
		return nil, fmt.Errorf("token file %s holds no token", path)
	}
	return t, nil
}

func (t *Tokens) reload(now time.Time) error {
	t.checked = now
	fi, err := os.Stat(t.path)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	if t.tokens != nil && fi.ModTime().Equal(t.modTime) && fi.Size() == t.size {
		return nil
	}
	data, err := os.ReadFile(t.path)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	tokens, err := ParseTokens(data)
	if err != nil {
		return fmt.Errorf("token file %s: %w", t.path, err)
	}
	reloaded := t.tokens != nil
	t.tokens, t.modTime, t.size = tokens, fi.ModTime(), fi.Size()
	if reloaded && t.OnReload != nil {
		t.OnReload(len(tokens), nil)
	}
	return nil
}

// Lookup returns the identity holding token.
func (t *Tokens) Lookup(token string) (Identity, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := time.Now(); now.Sub(t.checked) >= reloadCheck {
		if err := t.reload(now); err != nil && t.OnReload != nil {
			t.OnReload(len(t.tokens), err)
		}
	}
	id, ok := t.tokens[sha256.Sum256([]byte(token))]
	return id, ok
}
