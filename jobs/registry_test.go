package jobs

import (
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
)

type nopSource struct{}

func (nopSource) Poll(runtime.Collector[int64]) (time.Duration, error) {
	return 0, runtime.ErrEndOfInput
}

type nopSink struct{}

func (nopSink) Invoke(int64) error { return nil }

// pipeline is a minimal job reading the parameter names it is given.
func pipeline(read ...string) BuildFunc {
	return func(env *runtime.Env, p *runtime.Params) error {
		for _, k := range read {
			p.String(k, "")
		}
		src := runtime.FromSource(env, "src", func() runtime.SourceFunction[int64] { return nopSource{} }, runtime.Int64Codec{}).UID("src")
		runtime.SinkTo(src, "sink", func() runtime.SinkFunction[int64] { return nopSink{} }).UID("sink")
		return nil
	}
}

func TestRegisterRefusesMalformedJobs(t *testing.T) {
	cases := map[string]Job{
		"name":        {Name: "Bad Name", Description: "d", Build: pipeline()},
		"no build":    {Name: "no-build", Description: "d"},
		"no line":     {Name: "no-line", Build: pipeline()},
		"param type":  {Name: "ptype", Description: "d", Build: pipeline(), Params: []Param{{Name: "x", Type: "uint"}}},
		"param twice": {Name: "twice", Description: "d", Build: pipeline(), Params: []Param{{Name: "x", Type: Int}, {Name: "x", Type: Int}}},
	}
	for name, j := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%+v) did not panic", j)
				}
			}()
			Register(j)
		})
	}
}

func TestBuildChecksDeclaredParameters(t *testing.T) {
	Register(Job{Name: "declared-test", Description: "reads a and b", Build: pipeline("a", "b"),
		Params: []Param{{Name: "a", Type: String}, {Name: "req", Type: Int, Required: true, Description: "needed"}}})

	_, err := Build("declared-test", 1, map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "parameter req is required (needed)") {
		t.Errorf("without req: %v", err)
	}
	// b is read but not declared: the registration lies about the job.
	_, err = Build("declared-test", 1, map[string]string{"req": "1"})
	if err == nil || !strings.Contains(err.Error(), `reads parameter "b" but does not declare it`) {
		t.Errorf("undeclared read: %v", err)
	}
	_, err = Build("no-such-job", 1, nil)
	if err == nil || !strings.Contains(err.Error(), "unknown job") {
		t.Errorf("unknown job: %v", err)
	}
}

func TestUnknownParametersListTheDeclaredOnes(t *testing.T) {
	Register(Job{Name: "unknown-param-test", Description: "reads a", Build: pipeline("a"),
		Params: []Param{{Name: "a", Type: String}, {Name: "z", Type: Bool}}})
	_, err := Build("unknown-param-test", 1, map[string]string{"aa": "1"})
	if err == nil || !strings.Contains(err.Error(), "unknown parameter(s) aa (known: a, z)") {
		t.Errorf("error %v", err)
	}
	if _, err := Build("unknown-param-test", 1, map[string]string{"a": "x"}); err != nil {
		t.Errorf("valid parameters: %v", err)
	}
	j, err := Lookup("unknown-param-test")
	if err != nil || len(j.Params) != 2 || j.Params[1].Type != Bool {
		t.Errorf("Lookup: %+v, %v", j, err)
	}
}

func TestBuildFixedKeepsTheKeyGroups(t *testing.T) {
	Register(Job{Name: "unpinned-test", Description: "leaves maxParallelism to the default", Build: pipeline()})
	g, err := Build("unpinned-test", 90, nil)
	if err != nil || g.MaxParallelism != 256 {
		t.Fatalf("default at 90: %v, %v; want 256", g, err)
	}
	if g, err = BuildFixed("unpinned-test", 90, 128, nil); err != nil || g.MaxParallelism != 128 {
		t.Fatalf("fixed at 128: %v, %v", g, err)
	}
	Register(Job{Name: "pinned-test", Description: "pins 64", Build: func(env *runtime.Env, p *runtime.Params) error {
		env.SetMaxParallelism(64)
		return pipeline()(env, p)
	}})
	if g, err = BuildFixed("pinned-test", 2, 64, nil); err != nil || g.MaxParallelism != 64 {
		t.Fatalf("pinned 64 fixed at 64: %v, %v", g, err)
	}
	_, err = BuildFixed("pinned-test", 2, 128, nil)
	if err == nil || !strings.Contains(err.Error(), "sets maxParallelism 64, but its state is partitioned into 128 key groups") {
		t.Fatalf("pinned 64 fixed at 128: %v", err)
	}
}
