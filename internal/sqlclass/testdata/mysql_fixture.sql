-- Schema and rows for the runnable MariaDB statements of corpus.json
-- (run: "mysql"). Run once, as a user with all privileges on an empty
-- database named app, on the primary (in one call: needs multiStatements);
-- the statements of the corpus then run on read_only replicas.

CREATE TABLE users (
    id         BIGINT AUTO_INCREMENT PRIMARY KEY,
    name       VARCHAR(100) NOT NULL,
    email      VARCHAR(200) NOT NULL UNIQUE,
    status     VARCHAR(20) NOT NULL DEFAULT 'active',
    country    CHAR(2),
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    profile    JSON
) ENGINE = InnoDB;

CREATE TABLE items (
    id    INT AUTO_INCREMENT PRIMARY KEY,
    sku   VARCHAR(20) NOT NULL UNIQUE,
    title VARCHAR(200) NOT NULL,
    price DECIMAL(10, 2) NOT NULL,
    attrs JSON
) ENGINE = InnoDB;

CREATE TABLE orders (
    id         BIGINT AUTO_INCREMENT PRIMARY KEY,
    user_id    BIGINT NOT NULL,
    item_id    INT NOT NULL,
    qty        INT NOT NULL DEFAULT 1,
    total      DECIMAL(12, 2) NOT NULL,
    status     VARCHAR(20) NOT NULL DEFAULT 'new',
    note       TEXT,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    KEY orders_user_id_idx (user_id),
    CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT orders_item_fk FOREIGN KEY (item_id) REFERENCES items (id)
) ENGINE = InnoDB;

-- Columns named like keywords, which only quoted identifiers can reach.
CREATE TABLE events (
    id        BIGINT AUTO_INCREMENT PRIMARY KEY,
    `update`  VARCHAR(50),
    `select`  INT,
    `comment` TEXT,
    payload   JSON
) ENGINE = InnoDB;

-- Stays empty.
CREATE TABLE audit_log (
    id  BIGINT AUTO_INCREMENT PRIMARY KEY,
    msg TEXT NOT NULL
) ENGINE = InnoDB;

CREATE SEQUENCE invoice_seq START WITH 1000;

CREATE VIEW active_users AS
    SELECT id, name, email FROM users WHERE status = 'active';

CREATE VIEW order_totals AS
    SELECT user_id, COUNT(*) AS n, SUM(total) AS amount FROM orders GROUP BY user_id;

INSERT INTO users (name, email, status, country, profile) VALUES
    ('Ada', 'ada@example.com', 'active', 'GB', '{"lang": "en", "age": 36}'),
    ('Linus', 'linus@example.com', 'active', 'FI', '{"lang": "fi"}'),
    ('Grace', 'grace@example.com', 'inactive', 'US', '{}');

INSERT INTO items (sku, title, price, attrs) VALUES
    ('KB-1', 'Keyboard', 49.90, '{"color": "black"}'),
    ('MS-2', 'Mouse', 19.50, '{"color": "white"}'),
    ('MN-3', 'Monitor', 199.00, NULL);

INSERT INTO orders (user_id, item_id, qty, total, status, note) VALUES
    (1, 1, 1, 49.90, 'paid', NULL),
    (1, 2, 2, 39.00, 'new', 'gift'),
    (2, 3, 1, 199.00, 'paid', 'update address; delete old one');

INSERT INTO events (`update`, `select`, `comment`, payload) VALUES
    ('2024-01-01', 1, 'drop table users', '{"k": "v"}');
