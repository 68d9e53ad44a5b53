package file

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// JSON parses JSON lines: each line is one JSON value. Decode turns the
// text into a record; when it is nil, encoding/json decodes into T (which
// uses reflection: a hand-written Decode is faster). An error's text is
// the dead-letter reason.
type JSON[T any] struct {
	Decode func(text string) (T, error)
}

var _ Parser[int] = JSON[int]{}

// Parse implements Parser.
func (j JSON[T]) Parse(l Line) (T, error) {
	if j.Decode != nil {
		return j.Decode(l.Text)
	}
	var v T
	if err := json.Unmarshal([]byte(l.Text), &v); err != nil {
		return v, fmt.Errorf("invalid JSON: %w", err)
	}
	return v, nil
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string, quotes included. Invalid
// UTF-8 becomes U+FFFD, so the output is always valid JSON.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
