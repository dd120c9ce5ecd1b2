// Package entdb is the ent client of the integration tests, generated
// from ./schema by `make generate`.
package entdb

//go:generate go run entgo.io/ent/cmd/ent@v0.14.5 generate ./schema
