-- +goose Up
ALTER TABLE goose_widgets ADD COLUMN colour text;

-- +goose Down
ALTER TABLE goose_widgets DROP COLUMN colour;
