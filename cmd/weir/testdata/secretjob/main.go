// Command secretjob is weir with one more job, secret-sequence-check:
// sequence-check with a secret parameter, webhook-token, that the tests
// look for in every output of a run.
package main

import (
	"fmt"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/jobs"
	_ "github.com/weirstream/weir/jobs/seqcheck" // sequence-check, wrapped below
	"github.com/weirstream/weir/runtime"
)

func init() {
	sc, err := jobs.Lookup("sequence-check")
	if err != nil {
		panic(err)
	}
	jobs.Register(jobs.Job{
		Name:        "secret-sequence-check",
		Description: "sequence-check that also takes a secret webhook token",
		Params: append(append([]jobs.Param(nil), sc.Params...),
			jobs.Param{Name: "webhook-token", Type: jobs.String, Required: true, Secret: true, Description: "a credential"}),
		Build: func(env *runtime.Env, p *runtime.Params) error {
			if len(p.String("webhook-token", "")) < 8 {
				return fmt.Errorf("webhook-token is too short")
			}
			return sc.Build(env, p)
		},
	})
}

func main() { weir.Main() }
