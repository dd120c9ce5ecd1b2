package rwsplit

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit/internal/fakedriver"
)

// Automatic promotion itself runs against real servers
// (integration/failover_test.go); these tests check its settings and the
// rewriting of a standby's primary_conninfo.

func TestAutoFailoverValidation(t *testing.T) {
	p := fakedriver.NewServer("p").DB()
	r := fakedriver.NewServer("r").DB()
	a1 := fakedriver.NewServer("a1").DB()
	a2 := fakedriver.NewServer("a2").DB()
	for _, h := range []*sql.DB{p, r, a1, a2} {
		defer h.Close()
	}
	addrs := []string{"10.0.0.1:5432", "10.0.0.2:5432"}
	tests := []struct {
		name string
		a    AutoFailover
		opts []Option
		want string
	}{
		{"no admin", AutoFailover{Addrs: addrs}, nil, "0 admin handles for 2 nodes"},
		{"nil admin", AutoFailover{Admin: []*sql.DB{a1, nil}, Addrs: addrs}, nil, "admin handle of replica 1 is nil"},
		{"same admin", AutoFailover{Admin: []*sql.DB{a1, a1}, Addrs: addrs}, nil, "admin handle of replica 1 is the same as of the primary"},
		{"no addrs with New", AutoFailover{Admin: []*sql.DB{a1, a2}}, nil, "Addrs is required with New"},
		{"addr count", AutoFailover{Admin: []*sql.DB{a1, a2}, Addrs: addrs[:1]}, nil, "1 addresses for 2 nodes"},
		{"bad addr", AutoFailover{Admin: []*sql.DB{a1, a2}, Addrs: []string{"10.0.0.1", "x:1"}}, nil, "address of the primary is not host:port"},
		{"bad port", AutoFailover{Admin: []*sql.DB{a1, a2}, Addrs: []string{"h:1", "h:99999"}}, nil, "address of replica 1 is not host:port"},
		{"quote in host", AutoFailover{Admin: []*sql.DB{a1, a2}, Addrs: []string{"h:1", "h'--:2"}}, nil, "address of replica 1 is not host:port"},
		{"negative after", AutoFailover{Admin: []*sql.DB{a1, a2}, Addrs: addrs, After: -time.Second}, nil, "negative After"},
		{"negative timeout", AutoFailover{Admin: []*sql.DB{a1, a2}, Addrs: addrs, Timeout: -time.Second}, nil, "negative Timeout"},
		{"generic", AutoFailover{Admin: []*sql.DB{a1, a2}, Addrs: addrs}, []Option{WithDialect("generic")}, "supports PostgreSQL and MariaDB, not generic"},
		{"mysql", AutoFailover{Admin: []*sql.DB{a1, a2}, Addrs: addrs}, []Option{WithDialect("mysql")}, "supports PostgreSQL and MariaDB, not mysql"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := append([]Option{WithDialect("postgres")}, tt.opts...)
			db, err := New(p, []*sql.DB{r}, append(opts, WithAutoFailover(tt.a))...)
			if err == nil {
				db.Close()
				t.Fatalf("New accepted it; want an error with %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want %q", err, tt.want)
			}
		})
	}
}

func TestAutoFailoverDefaultsAndClose(t *testing.T) {
	p, r := fakedriver.NewServer("p"), fakedriver.NewServer("r")
	admins := []*sql.DB{fakedriver.NewServer("a1").DB(), fakedriver.NewServer("a2").DB()}
	db, err := New(p.DB(), []*sql.DB{r.DB()}, WithDialect("postgres"),
		WithAutoFailover(AutoFailover{Admin: admins, Addrs: []string{"[::1]:5432", "db-2.internal:5433"}}))
	if err != nil {
		t.Fatal(err)
	}
	if got := db.auto.cfg.After; got != defaultFailoverAfter {
		t.Errorf("After defaults to %v, want %v", got, defaultFailoverAfter)
	}
	if got := db.auto.cfg.Timeout; got != defaultFailoverTimeout {
		t.Errorf("Timeout defaults to %v, want %v", got, defaultFailoverTimeout)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// One Option used for two DBs: each takes its own addresses (Open
	// passes those of its DSNs) and defaults.
	opt := WithAutoFailover(AutoFailover{Admin: admins})
	for _, addrs := range [][]string{{"h1:5432", "h2:5432"}, {"h3:5432", "h4:5432"}} {
		c := defaultConfig()
		opt.apply(&c)
		if err := c.validate(2, addrs); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.auto.Addrs, addrs) {
			t.Errorf("addresses %v, want %v", c.auto.Addrs, addrs)
		}
	}
	for i, a := range admins {
		if err := a.Ping(); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Errorf("admin handle %d not closed by Close: %v", i, err)
		}
	}
}

func TestRepointConninfo(t *testing.T) {
	tests := []struct {
		in, addr, want string
	}{
		{
			"host=10.0.0.1 port=5432 user=repl password=secret application_name=r1 sslmode=disable",
			"10.0.0.2:5433",
			"application_name='r1' host='10.0.0.2' password='secret' port='5433' sslmode='disable' user='repl'",
		},
		{ // hostaddr would win over host: it goes
			"hostaddr=10.0.0.1 host=db1 port=5432 user=repl",
			"db2:5432",
			"host='db2' port='5432' user='repl'",
		},
		{ // quoted values keep their quotes and backslashes
			`host=db1 user=repl password='it\'s a\\b c'`,
			"db2:5432",
			`host='db2' password='it\'s a\\b c' port='5432' user='repl'`,
		},
		{"", "db2:5432", "host='db2' port='5432'"},
		{
			"postgresql://repl:secret@db1:5432/postgres?application_name=r1&host=db9",
			"db2:6432",
			"postgresql://repl:secret@db2:6432/postgres?application_name=r1",
		},
		{"postgres://repl@[::1]:5432", "[fe80::1]:5433", "postgres://repl@[fe80::1]:5433"},
	}
	for _, tt := range tests {
		got, err := repointConninfo(tt.in, tt.addr)
		if err != nil {
			t.Errorf("repointConninfo(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("repointConninfo(%q, %q)\n got %s\nwant %s", tt.in, tt.addr, got, tt.want)
		}
	}
	for _, bad := range []string{"postgresql://db1:port/x", "just words"} {
		if got, err := repointConninfo(bad, "db2:5432"); err == nil {
			t.Errorf("repointConninfo(%q) = %q, want an error", bad, got)
		} else if strings.Contains(err.Error(), "db1") {
			t.Errorf("error %q repeats the setting, which may hold a password", err)
		}
	}
}

func TestLiterals(t *testing.T) {
	if got, want := pgLiteral(`a'b\c`), `'a''b\c'`; got != want {
		t.Errorf("pgLiteral = %s, want %s", got, want)
	}
	if got, want := mariaLiteral(`a'b\c`), `'a\'b\\c'`; got != want {
		t.Errorf("mariaLiteral = %s, want %s", got, want)
	}
}

// A MariaDB promotion that gives up (the replica did not apply what it
// received in time) restarts the replica's I/O thread; on a node that
// hangs, that must not hang the promotion, and so Close, which waits for
// it.
func TestMariaDBPromotionGivingUpDoesNotHang(t *testing.T) {
	admin := fakedriver.NewServer("r1")
	admin.SetResult("SHOW REPLICA STATUS", []string{"Gtid_IO_Pos", "Slave_IO_Running"}, "0-1-5", "Yes")
	admin.SetResult("MASTER_GTID_WAIT", []string{"r"}, int64(1)) // not applied in time
	release := admin.HangOn("START SLAVE IO_THREAD")
	defer release()
	h := admin.DB()
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- mariaPromote(ctx, h) }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("promotion reported success though the replica did not catch up")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the promotion hangs on restarting the I/O thread of a node that does not answer")
	}
	if n := admin.Count(fakedriver.Exec); n < 2 {
		t.Errorf("%d execs on the replica; want STOP SLAVE IO_THREAD and START SLAVE IO_THREAD", n)
	}
}
