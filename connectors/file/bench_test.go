package file

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/weirstream/weir/runtime"
)

// parseSink parses each line as it arrives, as a chained Parse does.
type parseSink struct {
	csv   *CSV[tx]
	n     int
	fails int
}

func (p *parseSink) Collect(l Line) {
	if _, err := p.csv.Parse(l); err != nil {
		p.fails++
	}
	p.n++
}

// BenchmarkSourceCSV reads a 100,000-row CSV file through the source and
// the CSV parser; one op is the whole file.
func BenchmarkSourceCSV(b *testing.B) {
	const rows = 100_000
	path := filepath.Join(b.TempDir(), "tx.csv")
	var sb strings.Builder
	sb.WriteString("id,amount,note\n")
	for i := range rows {
		fmt.Fprintf(&sb, "tx%d,%d.%02d,customer %d\n", i, i%20000, i%100, i%977)
	}
	writeFile(b, path, sb.String())
	c := &CSV[tx]{Columns: []string{"id", "amount"}, Optional: []string{"note"}, Decode: func(f []string) (tx, error) {
		a, err := strconv.ParseFloat(f[1], 64)
		return tx{ID: f[0], Amount: a, Note: f[2]}, err
	}}
	b.SetBytes(int64(sb.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		src := &Source{Path: path, Header: true}
		ctx := runtime.NewRuntimeContext(runtime.ContextConfig{})
		if err := src.Open(ctx); err != nil {
			b.Fatal(err)
		}
		sink := &parseSink{csv: c}
		for {
			_, err := src.Poll(sink)
			if errors.Is(err, runtime.ErrEndOfInput) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		src.Close()
		if sink.n != rows || sink.fails != 0 {
			b.Fatalf("%d lines, %d failed", sink.n, sink.fails)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
