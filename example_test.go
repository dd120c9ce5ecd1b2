package rwsplit_test

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/internal/fakedriver"
)

// The examples run on an in-memory driver whose every query returns the
// name of the node that served it, so they need no server.

func ExampleNew() {
	primary := fakedriver.NewServer("primary").DB()
	replica := fakedriver.NewServer("replica").DB()
	db, err := rwsplit.New(primary, []*sql.DB{replica}, rwsplit.WithDialect("postgres"))
	if err != nil {
		panic(err)
	}
	defer db.Close()

	var node string
	db.QueryRow("SELECT name FROM users WHERE id = $1", 1).Scan(&node)
	fmt.Println("read served by", node)
	db.QueryRow("INSERT INTO users (name) VALUES ($1) RETURNING id", "ada").Scan(&node)
	fmt.Println("write served by", node)
	db.QueryRow("SELECT * FROM jobs FOR UPDATE SKIP LOCKED").Scan(&node)
	fmt.Println("locking read served by", node)
	// Output:
	// read served by replica
	// write served by primary
	// locking read served by primary
}

func ExampleWithPrimary() {
	primary := fakedriver.NewServer("primary").DB()
	replica := fakedriver.NewServer("replica").DB()
	db, _ := rwsplit.New(primary, []*sql.DB{replica})
	defer db.Close()

	ctx := rwsplit.WithPrimary(context.Background())
	var node string
	db.QueryRowContext(ctx, "SELECT balance FROM accounts WHERE id = 1").Scan(&node)
	fmt.Println(node)
	// Output: primary
}

func ExampleDB_BeginTx() {
	primary := fakedriver.NewServer("primary").DB()
	replica := fakedriver.NewServer("replica").DB()
	db, _ := rwsplit.New(primary, []*sql.DB{replica})
	defer db.Close()

	ctx := context.Background()
	for _, opts := range []*sql.TxOptions{
		{ReadOnly: true},
		{ReadOnly: true, Isolation: sql.LevelSerializable},
		nil,
	} {
		tx, _ := db.BeginTx(ctx, opts)
		var node string
		tx.QueryRowContext(ctx, "SELECT 1").Scan(&node)
		tx.Rollback()
		fmt.Println(node)
	}
	// Output:
	// replica
	// primary
	// primary
}

func ExampleWeighted() {
	primary := fakedriver.NewServer("primary").DB()
	big := fakedriver.NewServer("big").DB()
	small := fakedriver.NewServer("small").DB()
	// "big" gets three reads for every one "small" gets.
	db, err := rwsplit.New(primary, []*sql.DB{big, small}, rwsplit.WithPolicy(rwsplit.Weighted(3, 1)))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	_, err = rwsplit.New(primary, []*sql.DB{big, small}, rwsplit.WithPolicy(rwsplit.Weighted(3)))
	fmt.Println(err)
	// Output: rwsplit: new: Weighted: 1 weights for 2 replicas
}
