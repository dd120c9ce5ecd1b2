package rwsplit

import (
	"errors"
	"strings"
	"testing"
)

func TestDSNAddrAndPassword(t *testing.T) {
	tests := []struct {
		dsn, addr, password string
	}{
		{"postgres://app:pw1@127.0.0.1:5433/app?sslmode=disable", "127.0.0.1:5433", "pw1"},
		{"postgresql://app@db.example:6432/app", "db.example:6432", ""},
		{"postgres://app:pw2@db.example/app", "db.example:5432", "pw2"},
		{"postgres://app:p%40ss@[::1]:5432/app", "[::1]:5432", "p@ss"},
		{"host=10.0.0.1 port=5434 user=app password=pw3 dbname=app", "10.0.0.1:5434", "pw3"},
		{"host=10.0.0.1 user=app password='p w\\'4' dbname=app", "10.0.0.1:5432", "p w'4"},
		{"host=/var/run/postgresql user=app", "", ""},
		{"app:pw5@tcp(127.0.0.1:3306)/app?parseTime=true", "127.0.0.1:3306", "pw5"},
		{"app:p@w6@tcp(db:3307)/app", "db:3307", "p@w6"},
		{"app@unix(/tmp/mysql.sock)/app", "/tmp/mysql.sock", ""},
		{"/app", "", ""},
	}
	for _, tt := range tests {
		if got := dsnAddr(tt.dsn); got != tt.addr {
			t.Errorf("dsnAddr(%q) = %q, want %q", tt.dsn, got, tt.addr)
		}
		if got := dsnPassword(tt.dsn); got != tt.password {
			t.Errorf("dsnPassword(%q) = %q, want %q", tt.dsn, got, tt.password)
		}
	}
}

func TestRedact(t *testing.T) {
	dsn := "postgres://app:hunter2@db:5432/app"
	err := redact(errors.New(`cannot parse "postgres://app:hunter2@db:5432/app"`), dsn)
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("redact kept the password: %v", err)
	}
	err = redact(errors.New("bad password hunter2"), dsn)
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("redact kept the password: %v", err)
	}
	plain := errors.New("no such host")
	if redact(plain, dsn) != plain {
		t.Error("redact replaced an error that held no secret")
	}
}

func TestCheckPostgresDSN(t *testing.T) {
	good := []string{
		"postgres://app:pw@127.0.0.1:5432/app?sslmode=disable",
		"postgresql://app@h1:5432,h2:5433/app?target_session_attrs=read-write",
		"postgres://app:pw@[::1]:5432/app",
		"postgres:///app?host=/var/run/postgresql",
		"host=127.0.0.1 port=5432 user=app password='a b' dbname=app sslmode=require",
		"host=h1,h2 port=5432,5433 user=app",
	}
	for _, dsn := range good {
		if err := checkPostgresDSN(dsn); err != nil {
			t.Errorf("checkPostgresDSN(%q) = %v, want nil", dsn, err)
		}
	}
	bad := map[string]string{
		"postgres://app:pw@127.0.0.1:notaport/app": "port is not a number",
		"postgres://app:pw@127.0.0.1:99999/app":    "out of range",
		"mysql://app:pw@127.0.0.1:5432/app":        "scheme",
		"postgres://app:pw@h/app?sslmode=bogus":    "sslmode",
		"host=h port=5x user=app":                  "port is not a number",
		"host=h sslmode=sometimes":                 "sslmode",
		"app:pw@tcp(127.0.0.1:3306)/app":           "not a PostgreSQL URL",
		"postgres://app:pw@h/app?a=%zz":            "query parameters",
		"postgres://app:pw@[::1/app":               "unterminated",
	}
	for dsn, want := range bad {
		err := checkPostgresDSN(dsn)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("checkPostgresDSN(%q) = %v, want an error about %q", dsn, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("checkPostgresDSN(%q) error repeats the DSN: %v", dsn, err)
		}
	}
}
