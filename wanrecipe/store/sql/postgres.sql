-- The journal's SQL for Postgres (--state postgresql://...). Named queries, loaded once by
-- store/dialect.py; sqlite.sql has the same names. Parameters are %(name)s (psycopg 3); a list
-- parameter arrives as an array and is read with = ANY / <> ALL. Times are epoch seconds on
-- the database's clock (pg_journal.py reads it once per transaction).

-- ---------------------------------------------------------------------------------- schema

-- name: schema
-- Created in one transaction under an advisory lock (two workers opening a fresh database at
-- once), so either all of it exists or none.
CREATE TABLE IF NOT EXISTS wanrecipe_schema (
    name     TEXT PRIMARY KEY,
    version  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key           TEXT NOT NULL,
    step          TEXT NOT NULL,
    recipe        TEXT NOT NULL,
    backend       TEXT NOT NULL,
    request_json  TEXT NOT NULL,
    seed          BIGINT NOT NULL,
    state         TEXT NOT NULL
                  CHECK (state IN ('intent', 'submitted', 'done', 'failed', 'abandoned')),
    task_id       TEXT,
    request_id    TEXT,
    created_at    DOUBLE PRECISION NOT NULL,
    submitted_at  DOUBLE PRECISION,
    finished_at   DOUBLE PRECISION,
    usage_images  INTEGER,
    error_code    TEXT,
    error_message TEXT,
    owner_host    TEXT NOT NULL,
    owner_pid     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_key ON attempts (key, state);
CREATE INDEX IF NOT EXISTS attempts_by_step ON attempts (step);
CREATE INDEX IF NOT EXISTS attempts_unfinished ON attempts (state)
    WHERE state IN ('intent', 'submitted');
CREATE UNIQUE INDEX IF NOT EXISTS attempts_one_live ON attempts (key)
    WHERE state IN ('intent', 'submitted');
CREATE TABLE IF NOT EXISTS results (
    attempt_id   BIGINT NOT NULL REFERENCES attempts (id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    size         BIGINT NOT NULL,
    width        INTEGER,
    height       INTEGER,
    url_redacted TEXT,
    PRIMARY KEY (attempt_id, idx)
);
CREATE INDEX IF NOT EXISTS results_by_sha ON results (sha256);
CREATE TABLE IF NOT EXISTS owners (
    host     TEXT NOT NULL,
    pid      INTEGER NOT NULL,
    started  DOUBLE PRECISION NOT NULL,
    seen_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (host, pid)
);
CREATE TABLE IF NOT EXISTS seeds (
    recipe    TEXT NOT NULL,
    step      TEXT NOT NULL,
    identity  TEXT NOT NULL,
    seed      BIGINT NOT NULL,
    PRIMARY KEY (recipe, step, identity)
)

-- name: schema_lock
SELECT pg_advisory_xact_lock(hashtext('wanrecipe.journal.schema'));

-- name: schema_version
SELECT version FROM wanrecipe_schema WHERE name = 'journal';

-- name: schema_exists
SELECT to_regclass('wanrecipe_schema') IS NOT NULL AS present;

-- name: set_schema_version
INSERT INTO wanrecipe_schema (name, version) VALUES ('journal', %(version)s)
ON CONFLICT (name) DO UPDATE SET version = excluded.version;

-- name: now
SELECT extract(epoch FROM transaction_timestamp())::double precision AS now;

-- name: lock_key
SELECT pg_advisory_xact_lock(hashtext('wanrecipe.key'), hashtext(%(key)s));

-- name: timeouts
SET lock_timeout = '30s'; SET idle_in_transaction_session_timeout = '60s';

-- name: not_durable
SET LOCAL synchronous_commit TO OFF;

-- -------------------------------------------------------------------------------- attempts

-- name: claim_key
-- The claim: refused by attempts_one_live while another attempt of the key is live.
INSERT INTO attempts (key, step, recipe, backend, request_json, seed, state, created_at,
                      owner_host, owner_pid)
VALUES (%(key)s, %(step)s, %(recipe)s, %(backend)s, %(request_json)s, %(seed)s, 'intent',
        %(now)s, %(host)s, %(pid)s)
RETURNING id;

-- name: retire
UPDATE attempts
SET state = 'abandoned', finished_at = %(now)s, error_code = 'abandoned',
    error_message = %(reason)s
WHERE id = %(id)s AND state IN ('intent', 'submitted')
RETURNING id;

-- name: to_submitted
UPDATE attempts
SET state = 'submitted', task_id = %(task_id)s, request_id = %(request_id)s,
    submitted_at = %(now)s
WHERE id = %(id)s AND state = ANY(%(allowed)s)
RETURNING id;

-- name: to_done
UPDATE attempts
SET state = 'done', finished_at = %(now)s, usage_images = %(usage_images)s
WHERE id = %(id)s AND state = ANY(%(allowed)s)
RETURNING id;

-- name: to_failed
UPDATE attempts
SET state = 'failed', finished_at = %(now)s, error_code = %(code)s, error_message = %(message)s
WHERE id = %(id)s AND state = ANY(%(allowed)s)
RETURNING id;

-- name: to_abandoned
UPDATE attempts
SET state = 'abandoned', finished_at = %(now)s, error_code = 'abandoned',
    error_message = %(reason)s
WHERE id = %(id)s AND state = ANY(%(allowed)s)
RETURNING id;

-- name: add_result
INSERT INTO results (attempt_id, idx, sha256, size, width, height, url_redacted)
VALUES (%(attempt_id)s, %(idx)s, %(sha256)s, %(size)s, %(width)s, %(height)s,
        %(url_redacted)s);

-- name: take_over
-- An orphan changes hands only from the owner the taker saw (compare and set).
UPDATE attempts SET owner_host = %(host)s, owner_pid = %(pid)s
WHERE id = %(id)s AND owner_host = %(old_host)s AND owner_pid = %(old_pid)s
  AND state IN ('intent', 'submitted')
RETURNING id;

-- --------------------------------------------------------------------------------- queries

-- name: get
SELECT * FROM attempts WHERE id = %(id)s;

-- name: live_of_key
SELECT * FROM attempts WHERE key = %(key)s AND state IN ('intent', 'submitted') ORDER BY id;

-- name: done_of_key
SELECT * FROM attempts WHERE key = %(key)s AND state = 'done'
ORDER BY finished_at DESC NULLS LAST, id DESC;

-- name: in_flight
SELECT * FROM attempts
WHERE key = %(key)s AND state IN ('intent', 'submitted')
  AND COALESCE(submitted_at, created_at) >= %(cutoff)s
ORDER BY created_at, id;

-- name: unfinished
SELECT * FROM attempts WHERE state IN ('intent', 'submitted') ORDER BY id;

-- name: known_tasks
SELECT DISTINCT task_id FROM attempts WHERE task_id = ANY(%(task_ids)s);

-- name: attempts
SELECT * FROM attempts
WHERE (%(step)s::text IS NULL OR step = %(step)s)
  AND (%(key)s::text IS NULL OR key = %(key)s)
  AND (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(recipe)s::text IS NULL OR recipe = %(recipe)s)
ORDER BY id;

-- name: of_keys
SELECT * FROM attempts
WHERE key = ANY(%(keys)s) AND state IN ('done', 'intent', 'submitted')
ORDER BY finished_at DESC NULLS LAST, id DESC;

-- name: results_of
SELECT * FROM results WHERE attempt_id = ANY(%(ids)s) ORDER BY attempt_id, idx;

-- name: count_by_state
SELECT state, COUNT(*) AS n FROM attempts GROUP BY state;

-- name: keys_cached
SELECT COUNT(DISTINCT key) AS n FROM attempts WHERE state = 'done';

-- ----------------------------------------------------------------------------- maintenance

-- name: gc_attempts
DELETE FROM attempts
WHERE state IN ('done', 'failed', 'abandoned') AND key <> ALL(%(keep)s);

-- name: clear_attempts
DELETE FROM attempts WHERE state = ANY(%(states)s);

-- name: referenced_blobs
SELECT DISTINCT sha256 FROM results;

-- ---------------------------------------------------------------------- liveness and seeds

-- name: heartbeat
INSERT INTO owners (host, pid, started, seen_at) VALUES (%(host)s, %(pid)s, %(now)s, %(now)s)
ON CONFLICT (host, pid) DO UPDATE SET seen_at = excluded.seen_at;

-- name: sign_off
DELETE FROM owners WHERE host = %(host)s AND pid = %(pid)s;

-- name: owner_seen
SELECT seen_at FROM owners WHERE host = %(host)s AND pid = %(pid)s;

-- name: claim_seed
INSERT INTO seeds (recipe, step, identity, seed)
VALUES (%(recipe)s, %(step)s, %(identity)s, %(seed)s)
ON CONFLICT DO NOTHING;

-- name: seed_of
SELECT seed FROM seeds WHERE recipe = %(recipe)s AND step = %(step)s
  AND identity = %(identity)s;
