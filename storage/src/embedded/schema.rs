//! The embedded store's schema, as versioned migrations. The database's
//! `user_version` is the number of migrations applied; each runs once, in
//! the same transaction that bumps the version, so processes opening one
//! data directory at the same time apply each exactly once.

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
CREATE TABLE config (
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, kind, id)
) WITHOUT ROWID;

CREATE TABLE global_ids (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;

CREATE TABLE flow_versions (
    tenant TEXT NOT NULL,
    flow TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, flow, version)
) WITHOUT ROWID;

CREATE TABLE calls (
    tenant TEXT NOT NULL,
    call INTEGER NOT NULL,
    day INTEGER NOT NULL,
    start INTEGER NOT NULL,
    agent TEXT,
    grp TEXT,
    number TEXT NOT NULL,
    customer TEXT,
    direction TEXT NOT NULL,
    answered INTEGER NOT NULL,
    hangup_side TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, call)
);
CREATE INDEX calls_by_day ON calls (tenant, day, start, call);
CREATE INDEX calls_by_agent ON calls (tenant, agent, start, call) WHERE agent IS NOT NULL;
CREATE INDEX calls_by_number ON calls (tenant, number, start, call);
-- A customer's calls in the timeline come from here, not from timeline
-- rows: one index instead of two per call.
CREATE INDEX calls_by_customer ON calls (tenant, customer, start, call) WHERE customer IS NOT NULL;

CREATE TABLE status_log (
    tenant TEXT NOT NULL,
    agent TEXT NOT NULL,
    day INTEGER NOT NULL,
    start INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, agent, day, start)
) WITHOUT ROWID;

CREATE TABLE stats (
    tenant TEXT NOT NULL,
    day INTEGER NOT NULL,
    scope_kind TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    hour INTEGER NOT NULL,
    node TEXT NOT NULL,
    calls INTEGER NOT NULL,
    offered INTEGER NOT NULL,
    answered INTEGER NOT NULL,
    abandoned_in_queue INTEGER NOT NULL,
    abandoned_ringing INTEGER NOT NULL,
    overflowed INTEGER NOT NULL,
    answered_in_service_level INTEGER NOT NULL,
    outbound INTEGER NOT NULL,
    outbound_answered INTEGER NOT NULL,
    talk_ms INTEGER NOT NULL,
    ring_ms INTEGER NOT NULL,
    queue_ms INTEGER NOT NULL,
    wrap_up_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, day, scope_kind, scope_id, hour, node)
) WITHOUT ROWID;

CREATE TABLE customers (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;

CREATE TABLE customer_numbers (
    tenant TEXT NOT NULL,
    number TEXT NOT NULL,
    customer TEXT NOT NULL,
    PRIMARY KEY (tenant, number)
) WITHOUT ROWID;
CREATE INDEX customer_numbers_by_customer ON customer_numbers (tenant, customer);

CREATE TABLE tickets (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;

CREATE TABLE summaries (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;

CREATE TABLE contact_plans (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    agent TEXT NOT NULL,
    due INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX contact_plans_by_agent ON contact_plans (tenant, agent, due);

-- Timeline entries of tickets, summaries and contact plans.
CREATE TABLE timeline (
    tenant TEXT NOT NULL,
    customer TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    at INTEGER NOT NULL,
    title TEXT NOT NULL,
    PRIMARY KEY (tenant, customer, kind, id)
) WITHOUT ROWID;
CREATE INDEX timeline_by_time ON timeline (tenant, customer, at);

CREATE TABLE leases (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    holder TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
"#,
    // 2: the calls' listings by customer number and by customer move from
    // indexes on `calls` to rows keyed by the hour of the call's start. An
    // index on (tenant, number, ...) takes each insert at one of as many
    // places as there are customers, so every commit dirtied thousands of
    // random pages; a key row lands in the current hour's part of its tree.
    // `call_key_days` names the days a key has rows on (one insert per key
    // and day), so a listing visits only those days' hours.
    r#"
CREATE TABLE call_keys (
    tenant TEXT NOT NULL,
    -- 'n': the customer number, 'c': the customer
    kind TEXT NOT NULL,
    -- start / 3,600,000: hours since 1970-01-01 UTC
    hour INTEGER NOT NULL,
    key TEXT NOT NULL,
    start INTEGER NOT NULL,
    call INTEGER NOT NULL,
    PRIMARY KEY (tenant, kind, hour, key, start, call)
) WITHOUT ROWID;

CREATE TABLE call_key_days (
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    -- hour / 24
    day INTEGER NOT NULL,
    PRIMARY KEY (tenant, kind, key, day)
) WITHOUT ROWID;

INSERT INTO call_keys (tenant, kind, hour, key, start, call)
    SELECT tenant, 'n', start / 3600000, number, start, call FROM calls;
INSERT INTO call_keys (tenant, kind, hour, key, start, call)
    SELECT tenant, 'c', start / 3600000, customer, start, call FROM calls
    WHERE customer IS NOT NULL;
INSERT OR IGNORE INTO call_key_days (tenant, kind, key, day)
    SELECT DISTINCT tenant, kind, key, hour / 24 FROM call_keys;

DROP INDEX calls_by_number;
DROP INDEX calls_by_customer;
"#,
    // Calls in progress, as their node last wrote them: a survivor closes
    // the calls of a node that died. Writing a call's record removes it.
    r#"
CREATE TABLE open_calls (
    tenant TEXT NOT NULL,
    call INTEGER NOT NULL,
    node TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, call)
);
CREATE INDEX open_calls_by_node ON open_calls (node);
"#,
    // A tenant's tickets, the last updated first, filtered by status,
    // assignee or customer: columns computed from the body, so writes
    // stay as they are.
    r#"
ALTER TABLE tickets ADD COLUMN updated INTEGER GENERATED ALWAYS AS (json_extract(body, '$.updated')) VIRTUAL;
ALTER TABLE tickets ADD COLUMN status TEXT GENERATED ALWAYS AS (json_extract(body, '$.status')) VIRTUAL;
ALTER TABLE tickets ADD COLUMN assignee TEXT GENERATED ALWAYS AS (json_extract(body, '$.assignee')) VIRTUAL;
ALTER TABLE tickets ADD COLUMN customer TEXT GENERATED ALWAYS AS (json_extract(body, '$.customer')) VIRTUAL;
CREATE INDEX tickets_by_updated ON tickets (tenant, updated, id);
"#,
    // A tenant's customers, the last updated first.
    r#"
ALTER TABLE customers ADD COLUMN updated INTEGER GENERATED ALWAYS AS (json_extract(body, '$.updated')) VIRTUAL;
ALTER TABLE customers ADD COLUMN name TEXT GENERATED ALWAYS AS (json_extract(body, '$.name')) VIRTUAL;
CREATE INDEX customers_by_updated ON customers (tenant, updated, id);
"#,
];
