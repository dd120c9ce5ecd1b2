-- name: CreateAuthor :one
INSERT INTO sqlc_authors (name, bio) VALUES ($1, $2)
RETURNING id, inet_server_port()::int AS port;

-- name: GetAuthor :one
SELECT id, name, bio, inet_server_port()::int AS port FROM sqlc_authors
WHERE id = $1;

-- name: ListAuthors :many
SELECT id, name, inet_server_port()::int AS port FROM sqlc_authors
ORDER BY id;

-- name: RenameAuthor :exec
UPDATE sqlc_authors SET name = $2 WHERE id = $1;
