package file

import (
	"errors"
	"fmt"
	"strings"
)

// Parser turns a line into a record, or into an error whose text says why
// the line is not one (the dead letter's reason).
type Parser[T any] interface {
	Parse(l Line) (T, error)
}

// CSV parses the rows of CSV files with a header line; read them with
// Source.Header set, so every line carries its file's header. Columns are
// found by name in each file's header, so files may order them
// differently and hold others besides.
//
// A row is split on commas; a field may be quoted as RFC 4180 says ("a,b"
// and "say ""hi""" are one field each). A quoted field cannot span lines.
// A row whose field count differs from its header's, a malformed quote, or
// a header lacking a required column is a parse error naming the problem.
//
// A CSV keeps per-file state (the resolved header) and is not safe for
// concurrent use: make one per subtask.
type CSV[T any] struct {
	// Columns are the columns every row must have, by header name.
	Columns []string
	// Optional are columns that may be missing from a file's header; the
	// field is "" then.
	Optional []string
	// Decode builds the record from the fields of Columns then Optional,
	// in that order. fields and its strings are only valid during the call
	// unless copied (the strings share memory with the input batch, so
	// keeping them keeps that batch alive, which is usually fine). An
	// error's text is the row's dead-letter reason.
	Decode func(fields []string) (T, error)

	header    string
	resolved  bool
	width     int   // fields in the header
	index     []int // per wanted column: its position in the row, -1 if absent
	headerErr error
	row       []string
	fields    []string
}

var _ Parser[int] = (*CSV[int])(nil)

// Parse implements Parser.
func (c *CSV[T]) Parse(l Line) (T, error) {
	var zero T
	if !c.resolved || l.Header != c.header {
		c.resolve(l.Header)
	}
	if c.headerErr != nil {
		return zero, c.headerErr
	}
	var err error
	c.row, err = SplitCSV(c.row[:0], l.Text)
	if err != nil {
		return zero, err
	}
	if len(c.row) != c.width {
		return zero, fmt.Errorf("row has %d fields, the header has %d", len(c.row), c.width)
	}
	for i, at := range c.index {
		c.fields[i] = ""
		if at >= 0 {
			c.fields[i] = c.row[at]
		}
	}
	return c.Decode(c.fields)
}

// resolve finds the wanted columns in a header.
func (c *CSV[T]) resolve(header string) {
	c.header, c.resolved, c.headerErr = header, true, nil
	c.index = c.index[:0]
	c.fields = make([]string, len(c.Columns)+len(c.Optional))
	if c.Decode == nil {
		c.headerErr = errors.New("the CSV parser has no Decode function")
		return
	}
	if strings.TrimSpace(header) == "" {
		c.headerErr = errors.New("the file has no header line")
		return
	}
	names, err := SplitCSV(nil, header)
	if err != nil {
		c.headerErr = fmt.Errorf("header: %w", err)
		return
	}
	c.width = len(names)
	at := make(map[string]int, len(names))
	for i, n := range names {
		n = strings.TrimSpace(n)
		if _, dup := at[n]; dup {
			c.headerErr = fmt.Errorf("the header names column %q twice", n)
			return
		}
		at[n] = i
	}
	for _, col := range c.Columns {
		i, ok := at[col]
		if !ok {
			c.headerErr = fmt.Errorf("the header %q has no column %q", header, col)
			return
		}
		c.index = append(c.index, i)
	}
	for _, col := range c.Optional {
		i, ok := at[col]
		if !ok {
			i = -1
		}
		c.index = append(c.index, i)
	}
}

// SplitCSV appends the fields of one CSV row to dst. Unquoted fields and
// quoted ones without doubled quotes are substrings of row (no copy).
func SplitCSV(dst []string, row string) ([]string, error) {
	if strings.IndexByte(row, '"') < 0 {
		for {
			i := strings.IndexByte(row, ',')
			if i < 0 {
				return append(dst, row), nil
			}
			dst = append(dst, row[:i])
			row = row[i+1:]
		}
	}
	for field := 1; ; field++ {
		if !strings.HasPrefix(row, `"`) {
			i := strings.IndexByte(row, ',')
			f := row
			if i >= 0 {
				f = row[:i]
			}
			if strings.IndexByte(f, '"') >= 0 {
				return dst, fmt.Errorf("field %d has a quote but does not start with one", field)
			}
			dst = append(dst, f)
			if i < 0 {
				return dst, nil
			}
			row = row[i+1:]
			continue
		}
		// A quoted field: up to the quote not followed by another.
		f, rest, err := unquote(row[1:])
		if err != nil {
			return dst, fmt.Errorf("field %d: %w", field, err)
		}
		dst = append(dst, f)
		if rest == "" {
			return dst, nil
		}
		if rest[0] != ',' {
			return dst, fmt.Errorf("field %d has text after its closing quote", field)
		}
		row = rest[1:]
	}
}

// unquote reads a quoted field's content (after the opening quote) and
// returns it with the text after the closing quote.
func unquote(s string) (string, string, error) {
	var b []byte // only when a doubled quote needs unescaping
	for i := 0; i < len(s); i++ {
		if s[i] != '"' {
			if b != nil {
				b = append(b, s[i])
			}
			continue
		}
		if i+1 < len(s) && s[i+1] == '"' {
			if b == nil {
				b = append(make([]byte, 0, len(s)), s[:i]...)
			}
			b = append(b, '"')
			i++
			continue
		}
		if b != nil {
			return string(b), s[i+1:], nil
		}
		return s[:i], s[i+1:], nil
	}
	return "", "", errors.New("quoted field has no closing quote (fields cannot span lines)")
}
