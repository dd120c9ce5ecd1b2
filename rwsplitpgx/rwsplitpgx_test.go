package rwsplitpgx

import (
	"strings"
	"testing"
)

func TestOpenBadDSNNamesTheNodeNotTheDSN(t *testing.T) {
	_, err := Open("postgres://app:s3cret@127.0.0.1:5432/app", []string{"postgres://app:s3cret@127.0.0.1:notaport/app"})
	if err == nil {
		t.Fatal("Open with a malformed replica DSN succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "replica 1") || strings.Contains(msg, "s3cret") || strings.Contains(msg, "127.0.0.1") {
		t.Errorf("error %q: want the node named, no DSN or password", msg)
	}
}

func TestOpenNamesNodesByAddress(t *testing.T) {
	db, err := Open("host=127.0.0.1 port=5432 user=app password=x dbname=app",
		[]string{"postgres://app:x@127.0.0.1:5433/app", "postgres://app:x@127.0.0.1:5434/app"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var names []string
	for _, n := range db.Stats().Nodes {
		names = append(names, n.Name)
	}
	if got := strings.Join(names, " "); got != "127.0.0.1:5432 127.0.0.1:5433 127.0.0.1:5434" {
		t.Errorf("node names %q", got)
	}
	if d := db.Stats().Dialect; d != "postgres" {
		t.Errorf("dialect %q, want postgres", d)
	}
}
