-- Schema and rows for the runnable PostgreSQL statements of corpus.json
-- (run: "pg"). Run once, as the owner of an empty database named app, on
-- the primary; the statements of the corpus then run on hot standbys.

CREATE TABLE users (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    email      text NOT NULL UNIQUE,
    status     text NOT NULL DEFAULT 'active',
    country    text,
    created_at timestamptz NOT NULL DEFAULT now(),
    profile    jsonb NOT NULL DEFAULT '{}',
    tags       text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE items (
    id    serial PRIMARY KEY,
    sku   text NOT NULL UNIQUE,
    title text NOT NULL,
    price numeric(10, 2) NOT NULL,
    attrs jsonb
);

CREATE TABLE orders (
    id         bigserial PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id),
    item_id    integer NOT NULL REFERENCES items (id),
    qty        integer NOT NULL DEFAULT 1,
    total      numeric(12, 2) NOT NULL,
    status     text NOT NULL DEFAULT 'new',
    note       text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX orders_user_id_idx ON orders (user_id);

-- Columns named like keywords, which only quoted identifiers can reach.
CREATE TABLE events (
    id        bigserial PRIMARY KEY,
    "update"  text,
    "select"  integer,
    "comment" text,
    payload   jsonb
);

-- Stays empty.
CREATE TABLE audit_log (
    id  bigserial PRIMARY KEY,
    msg text NOT NULL
);

CREATE SEQUENCE invoice_seq START 1000;

CREATE VIEW active_users AS
    SELECT id, name, email FROM users WHERE status = 'active';

CREATE VIEW order_totals AS
    SELECT user_id, count(*) AS n, sum(total) AS amount FROM orders GROUP BY user_id;

INSERT INTO users (name, email, status, country, profile, tags) VALUES
    ('Ada', 'ada@example.com', 'active', 'GB', '{"lang": "en", "age": 36}', '{admin,dev}'),
    ('Linus', 'linus@example.com', 'active', 'FI', '{"lang": "fi"}', '{dev}'),
    ('Grace', 'grace@example.com', 'inactive', 'US', '{}', '{}');

INSERT INTO items (sku, title, price, attrs) VALUES
    ('KB-1', 'Keyboard', 49.90, '{"color": "black"}'),
    ('MS-2', 'Mouse', 19.50, '{"color": "white"}'),
    ('MN-3', 'Monitor', 199.00, NULL);

INSERT INTO orders (user_id, item_id, qty, total, status, note) VALUES
    (1, 1, 1, 49.90, 'paid', NULL),
    (1, 2, 2, 39.00, 'new', 'gift'),
    (2, 3, 1, 199.00, 'paid', 'update address; delete old one');

INSERT INTO events ("update", "select", "comment", payload) VALUES
    ('2024-01-01', 1, 'drop table users', '{"k": "v"}');
