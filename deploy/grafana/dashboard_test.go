package grafana

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// documented reads docs/metrics.md: the metric names of its tables (with
// their types) and the labels of its label table.
func documented(t *testing.T) (metrics map[string]string, labels map[string]bool) {
	t.Helper()
	data, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	metrics, labels = map[string]string{}, map[string]bool{}
	row := regexp.MustCompile("^\\| `(weir_[a-z0-9_]+)` \\| (counter|gauge|histogram) \\|")
	label := regexp.MustCompile("^\\| `([a-z_]+)`(?:, `([a-z_]+)`)? \\|")
	for _, line := range strings.Split(string(data), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			metrics[m[1]] = m[2]
		} else if m := label.FindStringSubmatch(line); m != nil {
			for _, l := range m[1:] {
				if l != "" {
					labels[l] = true
				}
			}
		}
	}
	if len(metrics) < 30 || !labels["job_id"] || !labels["operator_uid"] {
		t.Fatalf("docs/metrics.md: read %d metrics and labels %v; has its table format changed?", len(metrics), labels)
	}
	return metrics, labels
}

var (
	metricRE = regexp.MustCompile(`\bweir_[a-z0-9_]+\b`)
	byRE     = regexp.MustCompile(`\b(?:by|without) \(([^)]*)\)`)
	selRE    = regexp.MustCompile(`\{([^}]*)\}`)
	matchRE  = regexp.MustCompile(`([a-z_]+)\s*(?:=~|!~|!=|=)`)
)

// unknown returns what expr queries that the docs lack: metric names
// (a histogram's _bucket, _sum and _count series count as the histogram)
// and labels.
func unknown(expr string, metrics map[string]string, labels map[string]bool) []string {
	var out []string
	for _, name := range metricRE.FindAllString(expr, -1) {
		if _, ok := metrics[name]; ok {
			continue
		}
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if metrics[base] != "histogram" {
			out = append(out, "metric "+name)
		}
	}
	var used []string
	for _, m := range byRE.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[1], ",") {
			used = append(used, strings.TrimSpace(l))
		}
	}
	for _, m := range selRE.FindAllStringSubmatch(expr, -1) {
		for _, l := range matchRE.FindAllStringSubmatch(m[1], -1) {
			used = append(used, l[1])
		}
	}
	for _, l := range used {
		if l != "" && l != "le" && !labels[l] {
			out = append(out, "label "+l)
		}
	}
	return out
}

func TestDashboardQueriesDocumentedMetrics(t *testing.T) {
	data, err := os.ReadFile("weir.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("weir.json is not well-formed JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("title %q, uid %q, %d panels", d.Title, d.UID, len(d.Panels))
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] || !vars["job_id"] {
		t.Errorf("template variables %v, want datasource and job_id", vars)
	}
	metrics, labels := documented(t)
	ids := map[int]bool{}
	queried := map[string]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X < 0 || p.GridPos.W < 1 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H < 1 {
			t.Errorf("panel %q: gridPos %+v is outside Grafana's 24 columns", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: no query on the ${datasource} variable", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: target %+v lacks an expression or a unique refId", p.Title, tg)
			}
			refs[tg.RefID] = true
			for _, u := range unknown(tg.Expr, metrics, labels) {
				t.Errorf("panel %q queries %s, which docs/metrics.md does not list: %s", p.Title, u, tg.Expr)
			}
			for _, name := range metricRE.FindAllString(tg.Expr, -1) {
				queried[name] = true
			}
		}
	}
	for _, v := range d.Templating.List {
		for _, u := range unknown(v.Definition, metrics, labels) {
			t.Errorf("variable %s queries %s, which docs/metrics.md does not list", v.Name, u)
		}
	}
	// The panels an operator looks at first.
	for _, want := range []string{"weir_task_backpressured_seconds_total", "weir_operator_records_in_total",
		"weir_task_latency_seconds_bucket", "weir_job_last_checkpoint_duration_seconds", "weir_jobs"} {
		if !queried[want] {
			t.Errorf("no panel queries %s", want)
		}
	}
}

// TestUnknownFindsWhatTheDocsLack: the check above can fail.
func TestUnknownFindsWhatTheDocsLack(t *testing.T) {
	metrics := map[string]string{"weir_a_total": "counter", "weir_lat_seconds": "histogram"}
	labels := map[string]bool{"job_id": true}
	got := unknown(`sum by (vertex) (rate(weir_a_total{job_id=~"$job_id",color="x"}[1m])) + weir_b + `+
		`histogram_quantile(0.5, sum by (le) (rate(weir_lat_seconds_bucket[1m]))) + weir_a_total_bucket`, metrics, labels)
	want := []string{"metric weir_b", "metric weir_a_total_bucket", "label vertex", "label color"}
	if !slices.Equal(got, want) {
		t.Errorf("unknown: %q, want %q", got, want)
	}
}
