package file

import (
	"slices"
	"strings"
	"testing"
)

// quoteCSV renders fields as a row that SplitCSV must split back into them.
func quoteCSV(fields []string) string {
	q := make([]string, len(fields))
	for i, f := range fields {
		q[i] = `"` + strings.ReplaceAll(f, `"`, `""`) + `"`
	}
	return strings.Join(q, ",")
}

// FuzzSplitCSV: any row either splits or is refused with a reason, never
// panics; a row that splits, quoted back field by field, splits into the
// same fields; and the CSV parser on any header and row returns a record or
// a reason.
func FuzzSplitCSV(f *testing.F) {
	for _, s := range []string{"a,b,c", `"a,b",c`, `"say ""hi""",x`, `"a`, `a,"b"c`, `a,b"c`, ",", "", "\"\"\"\"", "id,amount"} {
		f.Add(s, "id,amount")
	}
	f.Fuzz(func(t *testing.T, row, header string) {
		fields, err := SplitCSV(nil, row)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a reason")
			}
		} else {
			if len(fields) != strings.Count(row, ",")+1 && !strings.Contains(row, `"`) {
				t.Fatalf("%q split into %d fields", row, len(fields))
			}
			back, err := SplitCSV(nil, quoteCSV(fields))
			if err != nil || !slices.Equal(back, fields) {
				t.Fatalf("%q -> %q -> %q -> %q, %v", row, fields, quoteCSV(fields), back, err)
			}
		}
		v, err := txCSV().Parse(Line{Header: header, Text: row})
		if err != nil && err.Error() == "" {
			t.Fatal("a parse error without a reason")
		}
		if err == nil && v.ID == "" && !strings.Contains(header, "id") {
			t.Fatalf("a record from header %q without an id column", header)
		}
	})
}
