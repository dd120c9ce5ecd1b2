// Package notes is a small service on rwsplit, and its test shows how to
// test such a service on a real replicated cluster with rwsplittest: the
// service's reads go to lagging replicas, a request reads its own writes,
// and the service keeps answering while a replica hangs.
package notes

import (
	"context"

	"github.com/rwsplit/rwsplit"
)

// Service stores notes.
type Service struct {
	db *rwsplit.DB
}

// New returns a Service on db and creates its table.
func New(ctx context.Context, db *rwsplit.DB) (*Service, error) {
	_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS notes (id bigserial PRIMARY KEY, body text NOT NULL)")
	return &Service{db: db}, err
}

// Add stores a note and returns its id. With a context from
// rwsplit.WithSession, the caller's later reads see it.
func (s *Service) Add(ctx context.Context, body string) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, "INSERT INTO notes (body) VALUES ($1) RETURNING id", body).Scan(&id)
	return id, err
}

// Get returns a note's body, or sql.ErrNoRows.
func (s *Service) Get(ctx context.Context, id int64) (string, error) {
	var body string
	err := s.db.QueryRowContext(ctx, "SELECT body FROM notes WHERE id = $1", id).Scan(&body)
	return body, err
}

// Count returns how many notes there are (as a replica has them).
func (s *Service) Count(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM notes").Scan(&n)
	return n, err
}
