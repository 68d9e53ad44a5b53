package rules

import (
	"fmt"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func cacheDocs(n int, max int) []Doc {
	docs := make([]Doc, 0, n+1)
	docs = append(docs, Doc{File: "lists.yaml", Source: []byte("id: vips\nkind: list\nitems: [a, b]\n")})
	for i := range n {
		docs = append(docs, Doc{File: "r.yaml", Version: 1, Source: []byte(fmt.Sprintf(
			"id: r%d\nkind: filter\nkey: [user]\nparams: {max: %d}\ncondition: 'e.amount > p.max && !(e.user in lists.vips)'\n", i, max))})
	}
	return docs
}

// TestCompileDocsReusesUnchangedRules: a set that differs from one in use
// in one rule compiles that rule only; a new version or state, or a
// changed list, is a new rule; the overrides reach the rules; and a set
// no longer used leaves the cache.
func TestCompileDocsReusesUnchangedRules(t *testing.T) {
	docs := cacheDocs(3, 100)
	a, err := CompileDocs(docs)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Rules) != 3 || len(a.Lists) != 1 || a.Rules[0].Version != 1 || a.Rules[0].State != "active" {
		t.Fatalf("set %+v", a)
	}
	docs[2].Source = []byte(strings.Replace(string(docs[2].Source), "p.max", "p.max * 2", 1))
	docs[3].Version, docs[3].State = 2, "paused"
	b, err := CompileDocs(docs)
	if err != nil {
		t.Fatal(err)
	}
	if b.Rules[0] != a.Rules[0] || b.Rules[1] == a.Rules[1] || b.Rules[2] == a.Rules[2] {
		t.Errorf("reused %v %v %v, want only the first", b.Rules[0] == a.Rules[0], b.Rules[1] == a.Rules[1], b.Rules[2] == a.Rules[2])
	}
	if r := b.Rules[2]; r.Version != 2 || r.State != "paused" || a.Rules[2].Version != 1 || a.Rules[2].State != "active" {
		t.Errorf("overrides: %d %s, the old rule %d %s", r.Version, r.State, a.Rules[2].Version, a.Rules[2].State)
	}
	docs[0].Source = []byte("id: vips\nkind: list\nitems: [a]\n")
	c, err := CompileDocs(docs)
	if err != nil {
		t.Fatal(err)
	}
	if c.Rules[0] == b.Rules[0] {
		t.Errorf("a rule compiled with the old list was reused")
	}
	// The codec goes through the cache too.
	d, err := SetCodec{}.Decode(SetCodec{}.Append(nil, c))
	if err != nil || d.Rules[1] != c.Rules[1] || len(d.Lists["vips"]) != 1 {
		t.Fatalf("decoded %+v, %v", d, err)
	}
	if _, err := CompileDocs([]Doc{{File: "x", Source: []byte("id: [")}}); err == nil {
		t.Errorf("a document that does not parse compiled")
	}
	if _, err := CompileDocs(append(docs, docs[1])); err == nil || !strings.Contains(err.Error(), "also used") {
		t.Errorf("a duplicate id: %v", err)
	}

	a, b, c, d = nil, nil, nil, nil
	for deadline := time.Now().Add(10 * time.Second); cachedRules() > 0; time.Sleep(10 * time.Millisecond) {
		goruntime.GC()
		if time.Now().After(deadline) {
			t.Fatalf("%d rules still cached with no set using them", cachedRules())
		}
	}
}

// TestCompileDocsConcurrently: subtasks of one process decode the same
// sets at once (run with -race).
func TestCompileDocsConcurrently(t *testing.T) {
	docs := cacheDocs(20, 5)
	var wg sync.WaitGroup
	sets := make([]*Set, 8)
	for i := range sets {
		wg.Go(func() {
			s, err := CompileDocs(docs)
			if err != nil {
				t.Error(err)
			}
			sets[i] = s
		})
	}
	wg.Wait()
	for _, s := range sets {
		if s == nil || len(s.Rules) != 20 || s.Rules[3].ID != "r3" {
			t.Fatalf("set %+v", s)
		}
	}
}

// BenchmarkRuleChange10000 is the cost of a change to one rule of 10,000
// (the mix of BenchmarkEngine) where a subtask meets it: decoding the
// broadcast set, whose other 9,999 rules a set in use already holds.
// BenchmarkCompiledSet is the same set compiled from nothing.
func BenchmarkRuleChange10000(b *testing.B) {
	set := benchSet(b, 10_000)
	docs := docsOf(set)
	if _, err := CompileDocs(docs); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		d := &docs[len(docs)/2]
		d.Version++
		next, err := CompileDocs(docs)
		if err != nil || len(next.Rules) != 10_000 || next.Rules[len(docs)/2].Version != int64(i+2) {
			b.Fatalf("%v", err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/change")
	goruntime.KeepAlive(set)
}
