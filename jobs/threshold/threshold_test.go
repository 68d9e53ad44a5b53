package threshold

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
)

func TestParseRows(t *testing.T) {
	const header = "transaction_id,customer_id,amount,timestamp"
	for _, tc := range []struct {
		header, text string
		want         Transaction
		err          string
	}{
		{"transaction_id,customer_id,amount", "tx1002,cust2,9200.0", Transaction{ID: "tx1002", Customer: "cust2", Amount: 9200, Time: runtime.NoTimestamp}, ""},
		{"amount,customer_id,transaction_id", " 1e3 , c , t ", Transaction{ID: "t", Customer: "c", Amount: 1000, Time: runtime.NoTimestamp}, ""},
		{header, "t,c,5,1700000000000", Transaction{ID: "t", Customer: "c", Amount: 5, Time: 1700000000000}, ""},
		{header, "t,c,5,2024-01-02T03:04:05.5Z", Transaction{ID: "t", Customer: "c", Amount: 5, Time: 1704164645500}, ""},
		{header, "t,c,5,", Transaction{ID: "t", Customer: "c", Amount: 5, Time: runtime.NoTimestamp}, ""},
		{header, "t,c,5,yesterday", Transaction{}, `timestamp "yesterday" is neither Unix milliseconds nor RFC 3339`},
		{header, "t,c,NaN,1", Transaction{}, `amount "NaN" is not a finite number`},
		{header, "t,c,1e999,1", Transaction{}, `amount "1e999" is not a finite number`},
		{header, "t,c,,1", Transaction{}, `amount "" is not a finite number`},
		{header, ",c,1,1", Transaction{}, "transaction_id is empty"},
		{header, "t, ,1,1", Transaction{}, "customer_id is empty"},
		{header, "t,c,1", Transaction{}, "row has 3 fields, the header has 4"},
		{"transaction_id,amount", "t,1", Transaction{}, `has no column "customer_id"`},
	} {
		p := parser{csv: NewParser()}
		got, err := p.Parse(file.Line{Path: "/in/a.csv", Number: 9, Header: tc.header, Text: tc.text})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: got %+v, %v; want error %q", tc.text, got, err, tc.err)
			}
			continue
		}
		tc.want.Source, tc.want.Line = "/in/a.csv", 9
		if err != nil || got != tc.want {
			t.Errorf("%q: got %+v, %v; want %+v", tc.text, got, err, tc.want)
		}
	}
}

func TestPythonFloat(t *testing.T) {
	for v, want := range map[float64]string{
		9200: "9200.0", 9200.5: "9200.5", 0: "0.0", math.Copysign(0, -1): "-0.0", -12: "-12.0",
		0.1: "0.1", 1e-4: "0.0001", 1.5e-5: "1.5e-05", 1e16: "1e+16", 123456789012345.6: "123456789012345.6",
	} {
		if got := PythonFloat(v); got != want {
			t.Errorf("PythonFloat(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestAlertRenderings(t *testing.T) {
	a := Alert{Transaction: Transaction{ID: "tx1002", Customer: "cust\"2", Amount: 9200, Time: runtime.NoTimestamp, Source: "/in/a.csv", Line: 3}, Threshold: 8000}
	if got := a.String(); got != `tx1002, cust"2, 9200.0` {
		t.Errorf("String() = %q", got)
	}
	var m struct {
		Rule      string `json:"rule"`
		Key       string `json:"key"`
		EventTime *int64 `json:"event_time_ms"`
		Evidence  struct {
			TransactionID string  `json:"transaction_id"`
			Amount        float64 `json:"amount"`
			Threshold     float64 `json:"threshold"`
			Source        string  `json:"source"`
			Line          int64   `json:"line"`
		} `json:"evidence"`
	}
	dec := json.NewDecoder(strings.NewReader(string(AppendJSON(nil, a))))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	if m.Rule != Rule || m.Key != `cust"2` || m.EventTime != nil || m.Evidence.TransactionID != "tx1002" || m.Evidence.Amount != 9200 ||
		m.Evidence.Threshold != 8000 || m.Evidence.Source != "/in/a.csv" || m.Evidence.Line != 3 {
		t.Errorf("JSON %+v", m)
	}
	a.Time = 1700000000000
	if !strings.Contains(string(AppendJSON(nil, a)), `"event_time_ms":1700000000000,`) {
		t.Errorf("event time missing: %s", AppendJSON(nil, a))
	}
	b := AlertCodec{}.Append(nil, a)
	if back, err := (AlertCodec{}).Decode(b); err != nil || back != a {
		t.Errorf("codec: %+v, %v", back, err)
	}
	for n := range len(b) {
		if _, err := (AlertCodec{}).Decode(b[:n]); err == nil {
			t.Errorf("a %d-byte prefix decoded", n)
		}
	}
}

func TestParams(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		err    string
	}{
		{map[string]string{"output": "/tmp/o"}, "parameter input: required with source=files"},
		{map[string]string{"source": "kafka"}, "parameter output is required"},
		{map[string]string{"source": "stdin", "output": "/tmp/o"}, `"stdin" is not a source`},
		{map[string]string{"input": "/in", "output": "/tmp/o", "sink": "print"}, `"print" is not a sink`},
		{map[string]string{"source": "kafka", "output": "/tmp/o", "format": "xml"}, `"xml": use json or csv`},
		{map[string]string{"input": "/in", "output": "/tmp/o", "sink": "slack"}, "needs webhook-url-env or webhook-url-file"},
		{map[string]string{"input": "/in", "output": "/tmp/o", "threshold": "NaN"}, "must be a finite number"},
		{map[string]string{"input": "/in", "output": "/tmp/o", "monitor": "-1s"}, "must be 0 (read once) or positive"},
		{map[string]string{"input": "s3://b/in", "output": "/tmp/o"}, "must be a local file or directory"},
		{map[string]string{"input": "/in", "output": "ftp://x"}, "output"},
	} {
		if _, err := jobs.Build(Name, 1, tc.params); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v: %v, want an error with %q", tc.params, err, tc.err)
		}
	}
	for _, in := range []string{"/in/tx.csv", "file:///in/tx.csv"} {
		g, err := jobs.Build(Name, 2, map[string]string{"input": in, "output": "s3://bucket/alerts", "threshold": "100", "monitor": "5s"})
		if err != nil {
			t.Fatalf("input %s: %v", in, err)
		}
		var names []string
		for _, v := range g.Vertices {
			names = append(names, v.Name)
		}
		all := strings.Join(names, " | ")
		for _, want := range []string{"transactions", "parse-transactions", "above-threshold", "dead-letter-files", "alert-files", "print-alerts"} {
			if !strings.Contains(all, want) {
				t.Errorf("graph %q lacks %s", all, want)
			}
		}
	}
}
