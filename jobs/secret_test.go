package jobs

import (
	"strings"
	"testing"

	"github.com/weirstream/weir/runtime"
)

func TestSecretParams(t *testing.T) {
	const secret = "hunter2-do-not-print"
	var got string
	Register(Job{Name: "secret-test", Description: "reads a secret",
		Params: []Param{{Name: "token", Type: String, Secret: true}, {Name: "port", Type: Int, Secret: true}, {Name: "plain", Type: String}},
		Build: func(env *runtime.Env, p *runtime.Params) error {
			got = p.String("token", "")
			p.Int("port", 0)
			p.String("plain", "")
			return pipeline()(env, p)
		}})
	if _, err := Build("secret-test", 1, map[string]string{"token": secret, "plain": "x"}); err != nil {
		t.Fatal(err)
	}
	if got != secret {
		t.Errorf("the builder read %q, want the secret", got)
	}
	r := Redact("secret-test", map[string]string{"token": secret, "plain": "x"})
	if r["token"] != Redacted || r["plain"] != "x" {
		t.Errorf("Redact: %v", r)
	}
	if r := Redact("no-such-job", map[string]string{"a": "b"}); r["a"] != "b" {
		t.Errorf("Redact of an unknown job: %v", r)
	}
	_, err := Build("secret-test", 1, map[string]string{"port": secret})
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "port") {
		t.Errorf("a malformed secret: %v", err)
	}
}
