package rules

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is a refused document or rule: where, which rule, and why.
type Error struct {
	File string
	Line int
	Rule string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, "rule %s: ", e.Rule)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// maxDocBytes bounds one file: rule files are small, and a bound keeps a
// mistaken path (a log file) from being read whole.
const maxDocBytes = 16 << 20

// Parse reads the YAML documents of one file. file names the source in
// errors. Every mapping is checked against the known fields.
func Parse(file string, data []byte) ([]*Spec, error) {
	if len(data) > maxDocBytes {
		return nil, &Error{File: file, Msg: fmt.Sprintf("larger than %d bytes", maxDocBytes)}
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var roots []*yaml.Node
	var errs []error
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// The YAML parser cannot resume after a syntax error.
			errs = append(errs, yamlError(file, "", err))
			break
		}
		if len(doc.Content) > 0 && doc.Content[0].Tag != "!!null" { // skip empty documents
			roots = append(roots, doc.Content[0])
		}
	}
	// Each document's source is its lines as written, up to the next
	// document: re-encoding the tree would not always read back the same.
	lines := strings.SplitAfter(string(data), "\n")
	var specs []*Spec
	for i, root := range roots {
		end := len(lines)
		if i+1 < len(roots) {
			end = roots[i+1].Line - 1
		}
		if root.Kind != yaml.MappingNode {
			errs = append(errs, &Error{File: file, Line: root.Line, Msg: "a rule document must be a mapping"})
			continue
		}
		id := ""
		if n := child(root, "id"); n != nil {
			id = n.Value
		}
		if err := checkKnown(root, reflect.TypeFor[Spec](), ""); err != nil {
			errs = append(errs, withFile(err, file, id))
			continue
		}
		s := &Spec{file: file, node: root}
		if err := root.Decode(s); err != nil {
			errs = append(errs, yamlError(file, id, err))
			continue
		}
		s.source = []byte(strings.Join(lines[max(root.Line-1, 0):max(end, root.Line-1)], ""))
		specs = append(specs, s)
	}
	return specs, errors.Join(errs...)
}

// LoadPath reads a rule file, or every *.yaml and *.yml file of a
// directory in name order.
func LoadPath(path string) ([]*Spec, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	files := []string{path}
	if st.IsDir() {
		files = nil
		ents, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		for _, e := range ents {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("rules: no .yaml or .yml files in %s", path)
		}
	}
	var all []*Spec
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("rules: %w", err))
			continue
		}
		specs, err := Parse(f, data)
		all = append(all, specs...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return all, errors.Join(errs...)
}

// yamlError turns the decoder's "yaml: line N: msg" into an Error.
func yamlError(file, id string, err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, tail, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil {
				line, msg = l, tail
			}
		}
	}
	return &Error{File: file, Line: line, Rule: id, Msg: msg}
}

func withFile(err error, file, id string) error {
	var e *Error
	if errors.As(err, &e) {
		e.File, e.Rule = file, id
		return e
	}
	return err
}

// child is the value of key in mapping n, or nil.
func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// lineOf is the line of the node at path under the document (mapping
// keys, or decimal indexes into lists), or the deepest part found.
func (s *Spec) lineOf(path ...string) int {
	n := s.node
	if n == nil {
		return 0
	}
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		if n.Kind == yaml.SequenceNode {
			if i, err := strconv.Atoi(p); err == nil && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
			}
		} else {
			next = child(n, p)
		}
		if next == nil {
			break
		}
		n, line = next, next.Line
	}
	return line
}

var leafTypes = map[reflect.Type]bool{
	reflect.TypeFor[Expr]():      true,
	reflect.TypeFor[Duration]():  true,
	reflect.TypeFor[Param]():     true,
	reflect.TypeFor[yaml.Node](): true,
}

// checkKnown refuses mapping keys that are not fields of t, recursively,
// so a misspelt field is an error and not a silently ignored line.
func checkKnown(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if leafTypes[t] || n == nil {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil // Decode reports the type mismatch
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || tag == "" {
				continue
			}
			fields[tag] = f.Type
			names = append(names, tag)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				slices.Sort(names)
				return &Error{Line: k.Line, Msg: fmt.Sprintf("unknown field %q%s (known: %s)",
					k.Value, inPath(path), strings.Join(names, ", "))}
			}
			if err := checkKnown(n.Content[i+1], ft, join(path, k.Value)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkKnown(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for i, c := range n.Content {
			if err := checkKnown(c, t.Elem(), join(path, strconv.Itoa(i))); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func inPath(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}
