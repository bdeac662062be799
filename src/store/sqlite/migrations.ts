/**
 * Versioned schema for the SQLite store. Each entry runs once, in order, inside a transaction;
 * the applied version is kept in `PRAGMA user_version`. Never edit a released migration: add one.
 */

export const MIGRATIONS: readonly string[] = [
  // 1: accounts, keys, sender identities, the spool.
  `
  CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
  );
  INSERT INTO accounts (name, created_at) VALUES ('default', CAST(unixepoch('subsec') * 1000 AS INTEGER));

  CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
  );
  -- A name identifies one active key; revoked keys keep their name for the record.
  CREATE UNIQUE INDEX api_keys_active_name ON api_keys(name) WHERE revoked_at IS NULL;

  CREATE TABLE sender_domains (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    domain TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'unverified',
    created_at INTEGER NOT NULL,
    last_checked_at INTEGER
  );

  CREATE TABLE single_senders (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    address TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX single_senders_account ON single_senders(account_id);

  CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    api_key_id INTEGER REFERENCES api_keys(id),
    mail_from TEXT NOT NULL,
    size INTEGER NOT NULL,
    client_ip TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  ) WITHOUT ROWID;

  -- Content apart from the envelope so that listing the queue never reads message bodies.
  CREATE TABLE message_contents (
    message_id TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    content BLOB NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE recipients (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    domain TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    last_reply TEXT,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX recipients_message ON recipients(message_id);
  -- Delivery workers look for due work: queued/deferred recipients by next attempt time.
  CREATE INDEX recipients_due ON recipients(state, next_attempt_at);
  `,
  // 2: delivery (issue 3): attempt history, destination backoff, and an index of pending work.
  `
  -- Every delivery attempt per recipient (and operator drops), shown by petrel queue show.
  CREATE TABLE delivery_attempts (
    id INTEGER PRIMARY KEY,
    recipient_id INTEGER NOT NULL REFERENCES recipients(id) ON DELETE CASCADE,
    message_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    mx_host TEXT,
    ip TEXT,
    port INTEGER,
    source_ip TEXT,
    tls TEXT,
    reply TEXT NOT NULL
  );
  CREATE INDEX delivery_attempts_message ON delivery_attempts(message_id, id);

  -- A destination that refuses connections waits as a whole (claims skip it until then).
  CREATE TABLE destination_backoff (
    domain TEXT PRIMARY KEY,
    until INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    last_error TEXT NOT NULL
  ) WITHOUT ROWID;

  -- Pending work only (queued, deferred, or leased: a lease's expiry is its next_attempt_at), in due
  -- order, so a claim reads the oldest due rows without sorting and never touches final ones.
  CREATE INDEX recipients_pending ON recipients(next_attempt_at)
    WHERE state IN ('queued', 'deferred', 'delivering');
  CREATE INDEX recipients_lease ON recipients(lease_owner) WHERE state = 'delivering';
  `,
  // 3: sender domains (issue 4): DKIM keys per domain, the last check's per-record results, events.
  `
  -- Selectors are <prefix><generation>; the counter never goes back, so a removed selector's name
  -- (possibly still cached in resolvers) is never given to a new key.
  ALTER TABLE sender_domains ADD COLUMN dkim_generation INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE sender_domains ADD COLUMN verified_at INTEGER;
  -- JSON array of RecordCheck from the last check (what petrel domains list and show report).
  ALTER TABLE sender_domains ADD COLUMN last_check TEXT;

  CREATE TABLE dkim_keys (
    id INTEGER PRIMARY KEY,
    domain_id INTEGER NOT NULL REFERENCES sender_domains(id) ON DELETE CASCADE,
    selector TEXT NOT NULL,
    kind TEXT NOT NULL,
    generation INTEGER NOT NULL,
    private_key TEXT NOT NULL,
    public_key TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    activated_at INTEGER,
    retired_at INTEGER,
    UNIQUE (domain_id, selector)
  );

  -- Status changes and key switches, newest read first.
  CREATE TABLE domain_events (
    id INTEGER PRIMARY KEY,
    domain_id INTEGER NOT NULL REFERENCES sender_domains(id) ON DELETE CASCADE,
    at INTEGER NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    detail TEXT NOT NULL
  );
  CREATE INDEX domain_events_domain ON domain_events(domain_id, id);
  `,
  // 4: events and webhooks (issue 5): the event log, the sender's metadata, webhook endpoints.
  `
  -- What the sender attached (X-Petrel-Metadata: a JSON object; X-Petrel-Category: a JSON array
  -- of strings), returned with every event of the message.
  ALTER TABLE messages ADD COLUMN metadata TEXT;
  ALTER TABLE messages ADD COLUMN categories TEXT;

  -- One row per recipient state change, written in the transaction of the change. The id is a
  -- ULID that increases in commit order (src/events/event-id.ts): webhook cursors rely on it.
  -- This table is also the webhooks' outbox: an endpoint's cursor says how far it got.
  CREATE TABLE events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    message_id TEXT NOT NULL,
    account_id INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    at INTEGER NOT NULL,
    attempt INTEGER,
    next_attempt_at INTEGER,
    mx_host TEXT,
    ip TEXT,
    reply TEXT,
    enhanced_code TEXT,
    bounce_class TEXT,
    bounce_hard INTEGER,
    reason TEXT
  ) WITHOUT ROWID;
  CREATE INDEX events_message ON events(message_id);

  -- Webhook endpoints per account. The secret is the HMAC key itself (it must be usable to sign,
  -- so it cannot be hashed); it is kept like DKIM private keys: in the store, never logged.
  CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    event_types TEXT,
    created_at INTEGER NOT NULL,
    cursor TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'active',
    failures INTEGER NOT NULL DEFAULT 0,
    failing_since INTEGER,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_success_at INTEGER,
    disabled_at INTEGER,
    disabled_reason TEXT,
    UNIQUE (account_id, url)
  );

  -- Every POST (and test, and disabling) per endpoint, for petrel webhooks deliveries.
  CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY,
    webhook_id INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT,
    ok INTEGER NOT NULL,
    events INTEGER NOT NULL,
    first_event_id TEXT,
    last_event_id TEXT
  );
  CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries(webhook_id, id);
  `,
  // 5: bounces and suppressions (issue 5): the suppression list per account, node secrets (VERP).
  `
  -- One row per suppressed address per account; mail to it is not attempted (dropped at accept,
  -- or refused at RCPT with suppression.mode: reject). Addresses are stored lower-cased.
  -- reason: invalid-recipient | invalid-domain (hard bounces) | spamreport | manual | import.
  -- event_id: the bounce or spamreport event that caused it (none for manual and imported rows).
  CREATE TABLE suppressions (
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    address TEXT NOT NULL,
    reason TEXT NOT NULL,
    event_id TEXT,
    message_id TEXT,
    detail TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, address)
  ) WITHOUT ROWID;

  -- Secrets Petrel generates for itself on first use and every node must share (the VERP token
  -- key): in the store, so that the delivery thread, the bounce listener and other nodes agree.
  CREATE TABLE node_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  // 6: the HTTP API (issue 9): key scopes (existing keys may send, as before), and the indexes
  // of the message search (an account's messages newest first, by sender, by recipient).
  `
  ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'mail.send';
  CREATE INDEX messages_account ON messages(account_id, id);
  CREATE INDEX messages_account_from ON messages(account_id, mail_from, id);
  CREATE INDEX recipients_address ON recipients(address, message_id);
  `,
  // 7: issue 11 — attempts that never finished, and throttled destinations.
  `
  -- Claims of a recipient since its last recorded outcome: a claim counts up before the attempt
  -- starts, an outcome (or giving the lease back unused) counts down to 0. A recipient claimed
  -- with unfinished > 0 had an attempt that crashed or hung its worker; at 3 it is held.
  ALTER TABLE recipients ADD COLUMN unfinished INTEGER NOT NULL DEFAULT 0;

  -- Destinations a node's dispatcher runs under throttled limits (adaptive throttling), so that
  -- "petrel queue list" and the message explanation can show them from another process. A node
  -- clears its own rows when its delivery engine starts (the limits live in its memory).
  CREATE TABLE destination_throttles (
    node TEXT NOT NULL,
    destination TEXT NOT NULL,
    provider TEXT,
    domains TEXT NOT NULL,
    messages_per_minute INTEGER NOT NULL,
    connections INTEGER NOT NULL,
    configured_messages_per_minute INTEGER NOT NULL,
    configured_connections INTEGER NOT NULL,
    reply TEXT NOT NULL,
    since INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (node, destination)
  ) WITHOUT ROWID;
  `,
  // 8: idempotency keys (issue 9): the first answer to a request or submission with a key, for 24 h.
  `
  CREATE TABLE idempotency_keys (
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
  ) WITHOUT ROWID;
  CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);
  `,
  // 9: issue 12 — the lookup version: any change to what accepting a message looks up (sender
  // identities, domain statuses, signing keys, API keys) changes it, in the writer's transaction,
  // so the server's in-memory copies (src/store/lookup-cache.ts) are never stale. Updates count
  // only when a looked-up column changes (a domain check rewriting the same status does not).
  `
  CREATE TABLE lookup_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
  INSERT INTO lookup_version (id, version) VALUES (1, 0);
  CREATE TRIGGER sender_domains_lookup_insert AFTER INSERT ON sender_domains BEGIN UPDATE lookup_version SET version = version + 1 WHERE id = 1; END;
  CREATE TRIGGER sender_domains_lookup_delete AFTER DELETE ON sender_domains BEGIN UPDATE lookup_version SET version = version + 1 WHERE id = 1; END;
  CREATE TRIGGER sender_domains_lookup_update AFTER UPDATE ON sender_domains
    WHEN OLD.account_id IS NOT NEW.account_id OR OLD.domain IS NOT NEW.domain OR OLD.status IS NOT NEW.status
    BEGIN UPDATE lookup_version SET version = version + 1 WHERE id = 1; END;
  CREATE TRIGGER single_senders_lookup_insert AFTER INSERT ON single_senders BEGIN UPDATE lookup_version SET version = version + 1 WHERE id = 1; END;
  CREATE TRIGGER single_senders_lookup_delete AFTER DELETE ON single_senders BEGIN UPDATE lookup_version SET version = version + 1 WHERE id = 1; END;
  CREATE TRIGGER single_senders_lookup_update AFTER UPDATE ON single_senders
    WHEN OLD.account_id IS NOT NEW.account_id OR OLD.address IS NOT NEW.address
    BEGIN UPDATE lookup_version SET version = version + 1 WHERE id = 1; END;
  CREATE TRIGGER dkim_keys_lookup_insert AFTER INSERT ON dkim_keys BEGIN UPDATE lookup_version SET version = version + 1 WHERE id = 1; END;
  CREATE TRIGGER dkim_keys_lookup_delete AFTER DELETE ON dkim_keys BEGIN UPDATE lookup_version SET version = version + 1 WHERE id = 1; END;
  CREATE TRIGGER dkim_keys_lookup_update AFTER UPDATE ON dkim_keys
    WHEN OLD.domain_id IS NOT NEW.domain_id OR OLD.selector IS NOT NEW.selector OR OLD.kind IS NOT NEW.kind OR OLD.state IS NOT NEW.state OR OLD.private_key IS NOT NEW.private_key
    BEGIN UPDATE lookup_version SET version = version + 1 WHERE id = 1; END;
  CREATE TRIGGER api_keys_lookup_insert AFTER INSERT ON api_keys BEGIN UPDATE lookup_version SET version = version + 1 WHERE id = 1; END;
  CREATE TRIGGER api_keys_lookup_delete AFTER DELETE ON api_keys BEGIN UPDATE lookup_version SET version = version + 1 WHERE id = 1; END;
  CREATE TRIGGER api_keys_lookup_update AFTER UPDATE ON api_keys
    WHEN OLD.account_id IS NOT NEW.account_id OR OLD.hash IS NOT NEW.hash OR OLD.name IS NOT NEW.name OR OLD.revoked_at IS NOT NEW.revoked_at OR OLD.scopes IS NOT NEW.scopes
    BEGIN UPDATE lookup_version SET version = version + 1 WHERE id = 1; END;
  CREATE TRIGGER accounts_lookup_insert AFTER INSERT ON accounts BEGIN UPDATE lookup_version SET version = version + 1 WHERE id = 1; END;
  CREATE TRIGGER accounts_lookup_delete AFTER DELETE ON accounts BEGIN UPDATE lookup_version SET version = version + 1 WHERE id = 1; END;
  CREATE TRIGGER accounts_lookup_update AFTER UPDATE ON accounts
    WHEN OLD.name IS NOT NEW.name
    BEGIN UPDATE lookup_version SET version = version + 1 WHERE id = 1; END;
  `,
  // 10: GET /v1/stats (issue 9): an account's events by time, so counting a time range reads
  // only that range's index entries (never the whole event log).
  `
  CREATE INDEX events_account_at ON events(account_id, at);
  `,
  // 11: scheduled send (issue 9): when a message is to be sent (its recipients are due then);
  // the partial index finds the few scheduled messages for the queue counts.
  `
  ALTER TABLE messages ADD COLUMN send_at INTEGER;
  CREATE INDEX messages_send_at ON messages(send_at) WHERE send_at IS NOT NULL;
  `,
  // 12: cluster-wide limits (issue 8 item 4; store/types/leases.ts): connection slots per
  // destination, named leases (webhook endpoints, periodic jobs), AUTH failures per address.
  // SQLite has one serve per file, so these rows matter for one node; the tables are the same as
  // PostgreSQL's so that both backends keep the same behaviour.
  `
  CREATE TABLE destination_slots (
    destination TEXT NOT NULL,
    slot INTEGER NOT NULL,
    owner TEXT,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (destination, slot)
  ) WITHOUT ROWID;
  CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    ran_at INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;
  CREATE TABLE auth_failures (
    ip TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    locked_until INTEGER NOT NULL,
    strike_until INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX auth_failures_locked ON auth_failures(locked_until);
  `,
  // 13: the node registry (issue 8 item 5): one row per running `petrel serve`, refreshed by its
  // heartbeat and deleted at a clean stop; a killed run's row stays until it is old (stale).
  `
  CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    connections INTEGER NOT NULL,
    deliveries INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  // 14: issue 12's memory goal — a content longer than one part (messages.ts CONTENT_PART_BYTES)
  // keeps its first part in message_contents and the rest here, in order: better-sqlite3 copies
  // every bound BLOB, so one 34 MiB bind held the message once more while it was written.
  // Contents written before stay whole in message_contents and read as they were.
  `
  CREATE TABLE message_content_parts (
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    part INTEGER NOT NULL,
    content BLOB NOT NULL,
    PRIMARY KEY (message_id, part)
  );
  `,
];
