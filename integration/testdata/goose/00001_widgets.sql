-- +goose Up
CREATE TABLE goose_widgets (id bigserial PRIMARY KEY, name text NOT NULL);
INSERT INTO goose_widgets (name) VALUES ('one');

-- +goose Down
DROP TABLE goose_widgets;
