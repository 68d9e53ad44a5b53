package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
)

func TestSplitCSV(t *testing.T) {
	for _, tc := range []struct {
		row  string
		want []string
		err  string
	}{
		{"a,b,c", []string{"a", "b", "c"}, ""},
		{"", []string{""}, ""},
		{",", []string{"", ""}, ""},
		{" a , b", []string{" a ", " b"}, ""},
		{`"a,b",c`, []string{"a,b", "c"}, ""},
		{`"say ""hi""",x`, []string{`say "hi"`, "x"}, ""},
		{`x,""`, []string{"x", ""}, ""},
		{`"",""`, []string{"", ""}, ""},
		{`a,"b"`, []string{"a", "b"}, ""},
		{`"a`, nil, "field 1: quoted field has no closing quote"},
		{`a,"b"c`, nil, "field 2 has text after its closing quote"},
		{`a,b"c`, nil, `field 2 has a quote but does not start with one`},
	} {
		got, err := SplitCSV(nil, tc.row)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("SplitCSV(%q) = %q, %v; want error %q", tc.row, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("SplitCSV(%q) = %q, %v; want %q", tc.row, got, err, tc.want)
		}
	}
}

type tx struct {
	ID     string
	Amount float64
	Note   string
}

func txCSV() *CSV[tx] {
	return &CSV[tx]{
		Columns:  []string{"id", "amount"},
		Optional: []string{"note"},
		Decode: func(f []string) (tx, error) {
			a, err := strconv.ParseFloat(strings.TrimSpace(f[1]), 64)
			if err != nil {
				return tx{}, fmt.Errorf("amount %q is not a number", f[1])
			}
			return tx{ID: strings.Clone(f[0]), Amount: a, Note: strings.Clone(f[2])}, nil
		},
	}
}

func TestCSVParse(t *testing.T) {
	for _, tc := range []struct {
		header, text string
		want         tx
		err          string
	}{
		{"id,amount", "t1,12.5", tx{ID: "t1", Amount: 12.5}, ""},
		{"amount,id", "12.5,t1", tx{ID: "t1", Amount: 12.5}, ""},
		{"id, amount ,note", `t2, 3 ,"a, b"`, tx{ID: "t2", Amount: 3, Note: "a, b"}, ""},
		{"x,id,amount,y", "1,t3,4,2", tx{ID: "t3", Amount: 4}, ""},
		{"id,amount", "t1,abc", tx{}, `amount "abc" is not a number`},
		{"id,amount", "t1,1,extra", tx{}, "row has 3 fields, the header has 2"},
		{"id,amount", "t1", tx{}, "row has 1 fields, the header has 2"},
		{"id,amount", `t1,"1`, tx{}, "no closing quote"},
		{"id,value", "t1,1", tx{}, `has no column "amount"`},
		{"id,id,amount", "t1,t1,1", tx{}, `names column "id" twice`},
		{"", "t1,1", tx{}, "no header line"},
	} {
		c := txCSV()
		// Twice: the second parse uses the resolved header.
		for range 2 {
			got, err := c.Parse(Line{Path: "f.csv", Number: 2, Header: tc.header, Text: tc.text})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("%q / %q: got %+v, %v; want error %q", tc.header, tc.text, got, err, tc.err)
				}
				continue
			}
			if err != nil || got != tc.want {
				t.Errorf("%q / %q: got %+v, %v; want %+v", tc.header, tc.text, got, err, tc.want)
			}
		}
	}
	// One parser across files with different headers.
	c := txCSV()
	for _, l := range []Line{{Header: "id,amount", Text: "a,1"}, {Header: "amount,id", Text: "2,b"}, {Header: "id,amount", Text: "c,3"}} {
		if v, err := c.Parse(l); err != nil || v.Amount == 0 {
			t.Errorf("%+v: %+v, %v", l, v, err)
		}
	}
}

func TestJSONParse(t *testing.T) {
	type rec struct {
		ID string `json:"id"`
		N  int    `json:"n"`
	}
	j := JSON[rec]{}
	if v, err := j.Parse(Line{Text: `{"id":"a","n":3}`}); err != nil || v != (rec{"a", 3}) {
		t.Errorf("got %+v, %v", v, err)
	}
	if _, err := j.Parse(Line{Text: `{"id":`}); err == nil || !strings.Contains(err.Error(), "invalid JSON") {
		t.Errorf("truncated JSON: %v", err)
	}
	custom := JSON[int]{Decode: func(s string) (int, error) { return strconv.Atoi(s) }}
	if v, err := custom.Parse(Line{Text: "42"}); err != nil || v != 42 {
		t.Errorf("custom decoder: %d, %v", v, err)
	}
}

func TestAppendJSONStringIsValidJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "\n\r\t\x00\x1f", "é ☃ 𝄞", "bad \xff utf8", "\u2028"} {
		b := AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Errorf("%q -> %s: %v", s, b, err)
			continue
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); back != want {
			t.Errorf("%q -> %s -> %q", s, b, back)
		}
	}
}

func TestDeadLetterRenderings(t *testing.T) {
	d := DeadLetter{Source: "/in/a.csv", Line: 3, Text: `x,"y`, Reason: "bad"}
	var m map[string]any
	if err := json.Unmarshal(d.AppendJSON(nil), &m); err != nil {
		t.Fatal(err)
	}
	if m["source"] != "/in/a.csv" || m["line"] != 3.0 || m["text"] != `x,"y` || m["reason"] != "bad" || len(m) != 4 {
		t.Errorf("JSON %v", m)
	}
	if got := d.String(); got != `/in/a.csv:3: bad: x,"y` {
		t.Errorf("String %q", got)
	}
	b := DeadLetterCodec{}.Append(nil, d)
	if back, err := (DeadLetterCodec{}).Decode(b); err != nil || back != d {
		t.Errorf("codec: %+v, %v", back, err)
	}
	if _, err := (DeadLetterCodec{}).Decode(b[:len(b)-1]); !errors.Is(err, runtime.ErrCorrupt) {
		t.Errorf("truncated: %v", err)
	}
}

type gather[T any] struct {
	mu  *sync.Mutex
	out *[]T
}

func (g gather[T]) Invoke(v T) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	*g.out = append(*g.out, v)
	return nil
}

// TestParseRoutesBadLinesToDeadLetters runs source -> Parse with both
// outputs in one task.
func TestParseRoutesBadLinesToDeadLetters(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.csv"), "id,amount\nt1,10\nt2,ten\nt3,30,x\n")
	write(t, filepath.Join(dir, "b.csv"), "amount,id\n40,t4\n")
	env, err := runtime.NewEnv("parse", 1)
	if err != nil {
		t.Fatal(err)
	}
	lines := runtime.FromSource(env, "files", func() runtime.SourceFunction[Line] {
		return &Source{Path: dir, Header: true}
	}, LineCodec{})
	parsed := Parse(lines, "parse", func() Parser[tx] { return txCSV() }, nil)
	var mu sync.Mutex
	var good []tx
	var bad []DeadLetter
	runtime.SinkTo(parsed, "good", func() runtime.SinkFunction[tx] { return gather[tx]{&mu, &good} })
	runtime.SinkTo(runtime.SideOutput(parsed, DeadLetters), "bad", func() runtime.SinkFunction[DeadLetter] { return gather[DeadLetter]{&mu, &bad} })
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []tx{{ID: "t1", Amount: 10}, {ID: "t4", Amount: 40}}; !slices.Equal(good, want) {
		t.Errorf("records %+v, want %+v", good, want)
	}
	a := filepath.Join(dir, "a.csv")
	want := []DeadLetter{
		{Source: a, Line: 3, Text: "t2,ten", Reason: `amount "ten" is not a number`},
		{Source: a, Line: 4, Text: "t3,30,x", Reason: "row has 3 fields, the header has 2"},
	}
	if !slices.Equal(bad, want) {
		t.Errorf("dead letters %+v, want %+v", bad, want)
	}
}
