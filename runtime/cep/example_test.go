package cep_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/weirstream/weir/runtime/cep"
)

// The matcher on its own: a login failure followed by a success within a
// minute, with no password reset between them.
func Example() {
	kind := func(k string) func(string) bool { return func(e string) bool { return strings.HasPrefix(e, k) } }
	p := cep.Begin[string]("fail").Where(kind("fail")).OneOrMore().
		NotFollowedBy("reset").Where(kind("reset")).
		FollowedBy("ok").Where(kind("ok")).
		Within(time.Minute)
	n, err := p.Compile()
	if err != nil {
		panic(err)
	}
	s := n.NewState()
	events := []string{"fail1", "fail2", "ok1", "fail3", "reset", "ok2", "fail4"}
	for i, e := range events {
		var res cep.Result[string]
		s, res, _ = n.Process(s, e, int64(i)*1000)
		for _, m := range res.Matches {
			fmt.Println("match", m["fail"], m["ok"])
		}
	}
	_, res, _ := n.Advance(s, 120_000) // the watermark passes the window
	for _, t := range res.TimedOut {
		fmt.Println("timed out", t.Match["fail"], "at", t.Timestamp)
	}
	// Output:
	// match [fail1 fail2] [ok1]
	// match [fail1] [ok1]
	// match [fail2] [ok1]
	// timed out [fail4] at 66000
}
