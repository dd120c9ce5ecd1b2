package rwsplitmysql

import (
	"strings"
	"testing"
)

func TestOpenBadDSNNamesTheNodeNotTheDSN(t *testing.T) {
	_, err := Open("app:s3cret@tcp(127.0.0.1:3306)/app", []string{"app:s3cret@tcp(127.0.0.1:3307)app?x"})
	if err == nil {
		t.Fatal("Open with a malformed replica DSN succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "replica 1") || strings.Contains(msg, "s3cret") || strings.Contains(msg, "127.0.0.1") {
		t.Errorf("error %q: want the node named, no DSN or password", msg)
	}
}

func TestOpenNamesNodesByAddress(t *testing.T) {
	db, err := Open("app:x@tcp(127.0.0.1:3306)/app", []string{"app:x@tcp(127.0.0.1:3307)/app"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var names []string
	for _, n := range db.Stats().Nodes {
		names = append(names, n.Name)
	}
	if got := strings.Join(names, " "); got != "127.0.0.1:3306 127.0.0.1:3307" {
		t.Errorf("node names %q", got)
	}
}
