package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// corpusEntry is one statement of the classifier's table test
// (internal/sqlclass/testdata/corpus.json).
type corpusEntry struct {
	Dialect string `json:"dialect"`
	Read    bool   `json:"read"`
	Run     string `json:"run"`
	SQL     string `json:"sql"`
}

// corpus returns the statements the classifier calls reads for dialect
// that are marked runnable on the given server kind ("pg" or "mysql").
func corpus(t *testing.T, dialect, run string) []string {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "internal", "sqlclass", "testdata", "corpus.json"))
	if err != nil {
		t.Fatal(err)
	}
	var entries []corpusEntry
	if err := json.Unmarshal(body, &entries); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Read && e.Run == run && (e.Dialect == dialect || e.Dialect == "generic") {
			out = append(out, e.SQL)
		}
	}
	return out
}
