package engine

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestEngineDoesNotImportRuntime keeps the layering: runtime (the job
// author's API) builds on the engine, never the other way round.
func TestEngineDoesNotImportRuntime(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), e.Name(), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if path == "github.com/weirstream/weir/runtime" || strings.HasPrefix(path, "github.com/weirstream/weir/runtime/") ||
				strings.HasPrefix(path, "github.com/weirstream/weir/taskmanager") || strings.HasPrefix(path, "github.com/weirstream/weir/jobmanager") {
				t.Errorf("%s imports %s", e.Name(), path)
			}
		}
	}
}
