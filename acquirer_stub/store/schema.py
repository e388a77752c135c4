"""Schema migrations, applied in order; the database records the version it is at.

Written in SQLite's dialect; the PostgreSQL backend maps the column types (`acquirer_stub.store.postgres.ddl`).
A statement that only moves data of an older SQLite database starts with `SQLITE_ONLY`: a PostgreSQL database is
created at a version after it and has no such data.

Money is integer fen everywhere. PANs are never stored in clear: `*_sealed` is AES-GCM under the vault
key, `*_hash` an HMAC for look-ups, `*_masked` BIN + last 4 for people.
"""

SQLITE_ONLY = "/* sqlite only */ "

MIGRATIONS: list[str] = [
    # 1: the world, accounts, tokens, terminals, transactions
    """
    CREATE TABLE issuers (
        code TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('credit', 'debit')),
        bin TEXT NOT NULL UNIQUE,
        algorithm TEXT NOT NULL CHECK (algorithm IN ('3des', 'sm4')),
        status TEXT NOT NULL DEFAULT 'up' CHECK (status IN ('up', 'down')),
        added_latency_ms INTEGER NOT NULL DEFAULT 0,
        forced_decline TEXT
    );
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('operator', 'cardholder')),
        phone TEXT
    );
    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        issuer TEXT NOT NULL REFERENCES issuers(code),
        pan_hash TEXT NOT NULL UNIQUE,
        pan_sealed BLOB NOT NULL,
        pan_masked TEXT NOT NULL,
        psn INTEGER NOT NULL,
        expiry TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('credit', 'debit')),
        balance INTEGER,
        credit_limit INTEGER,
        credit_used INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'active',
        last_atc INTEGER NOT NULL DEFAULT -1,
        par TEXT,
        owner_id INTEGER REFERENCES users(id)
    );
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        owner_id INTEGER REFERENCES users(id),
        name TEXT NOT NULL,
        wallet_enabled INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        token_sealed BLOB NOT NULL,
        token_masked TEXT NOT NULL,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        device_id TEXT REFERENCES devices(id),
        wallet_card_id TEXT,
        par TEXT NOT NULL,
        expiry TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
        status_reason TEXT,
        last_atc INTEGER NOT NULL DEFAULT -1,
        created TEXT NOT NULL
    );
    CREATE TABLE terminals (
        tid TEXT PRIMARY KEY,
        mid TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
        batch INTEGER NOT NULL DEFAULT 0,
        signed_on INTEGER NOT NULL DEFAULT 0,
        last_seen TEXT
    );
    CREATE TABLE nonces (
        tid TEXT NOT NULL,
        nonce TEXT NOT NULL,
        seen REAL NOT NULL,
        PRIMARY KEY (tid, nonce)
    );
    CREATE TABLE promotions (
        id INTEGER PRIMARY KEY,
        issuer TEXT NOT NULL REFERENCES issuers(code),
        title TEXT NOT NULL,
        percent INTEGER NOT NULL CHECK (percent BETWEEN 1 AND 100),
        cap INTEGER NOT NULL CHECK (cap >= 0),
        starts TEXT NOT NULL,
        ends TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE transactions (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('authorization', 'advice', 'reversal')),
        mti TEXT NOT NULL,
        tid TEXT NOT NULL,
        stan TEXT NOT NULL,
        local_date TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        state TEXT NOT NULL,
        rc TEXT NOT NULL,
        reason TEXT,
        amount INTEGER NOT NULL DEFAULT 0,
        charged INTEGER NOT NULL DEFAULT 0,
        discount INTEGER NOT NULL DEFAULT 0,
        promotion_id INTEGER REFERENCES promotions(id),
        currency TEXT,
        batch INTEGER,
        issuer TEXT,
        account_id INTEGER REFERENCES accounts(id),
        token_id INTEGER REFERENCES tokens(id),
        pan_masked TEXT,
        entry_mode TEXT,
        atc INTEGER,
        rrn TEXT,
        auth_code TEXT,
        original_stan TEXT,
        response TEXT NOT NULL,
        icc_masked TEXT,
        latency_ms REAL,
        created TEXT NOT NULL,
        UNIQUE (kind, tid, stan, local_date)
    );
    CREATE INDEX transactions_by_batch ON transactions (tid, batch);
    CREATE TABLE settlements (
        id INTEGER PRIMARY KEY,
        tid TEXT NOT NULL,
        batch INTEGER NOT NULL,
        terminal_totals TEXT NOT NULL,
        host_totals TEXT NOT NULL,
        balanced INTEGER NOT NULL,
        created TEXT NOT NULL
    );
    CREATE TABLE otps (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        device_id TEXT NOT NULL,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        code_hash TEXT NOT NULL,
        expires REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'pending'
    );
    CREATE TABLE sms_outbox (
        id INTEGER PRIMARY KEY,
        phone TEXT NOT NULL,
        text TEXT NOT NULL,
        created TEXT NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        created TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL
    );
    """,
    # 2: the virtual ECR: sales an operator sends to a terminal, which polls for them (acquirer_stub.ecr)
    """
    CREATE TABLE ecr_requests (
        id INTEGER PRIMARY KEY,
        tid TEXT NOT NULL REFERENCES terminals(tid),
        amount INTEGER NOT NULL CHECK (amount > 0),
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'taken', 'done')),
        result TEXT,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    CREATE INDEX ecr_requests_pending ON ecr_requests (tid, state, id);
    """,
    # 3: terminal API (acquirer_stub.api): a reversal names its original's date (orphan-reversal tombstones are
    # looked up by it), and settlements are idempotent on (TID, STAN, date) with their stored response
    """
    ALTER TABLE transactions ADD COLUMN original_local_date TEXT;
    CREATE INDEX transactions_by_original ON transactions (tid, original_stan, original_local_date);
    ALTER TABLE settlements ADD COLUMN stan TEXT;
    ALTER TABLE settlements ADD COLUMN local_date TEXT;
    ALTER TABLE settlements ADD COLUMN request_hash TEXT;
    ALTER TABLE settlements ADD COLUMN response TEXT;
    CREATE UNIQUE INDEX settlements_by_key ON settlements (tid, stan, local_date);
    """,
    # 4: indexes for the per-request queries that otherwise scan whole tables, slower with every request: the
    # expired-nonce purge (by seen) and the issuer's daily velocity count (by account)
    """
    CREATE INDEX nonces_by_seen ON nonces (seen);
    CREATE INDEX transactions_by_account ON transactions (account_id);
    """,
    # 5: offline advices and reversals that cannot create money (issue 11 §1): the offline
    # floor limit per terminal and AID ('' = any other AID), whether a row's cryptogram verified (an advice's ATC
    # must not repeat one), partial reversals (what of a sale was given back), the exception queue (advices taken
    # without moving money, for an operator to resolve) and a settlement's two figures (accepted, exceptions)
    """
    CREATE TABLE terminal_floor_limits (
        tid TEXT NOT NULL REFERENCES terminals(tid),
        aid TEXT NOT NULL CHECK (aid = '' OR length(aid) BETWEEN 10 AND 32),
        floor_limit INTEGER NOT NULL CHECK (floor_limit >= 0),
        PRIMARY KEY (tid, aid)
    );
    ALTER TABLE transactions ADD COLUMN ac_verified INTEGER NOT NULL DEFAULT 0;
    UPDATE transactions SET ac_verified = 1 WHERE (kind = 'authorization' AND reason IN ('APPROVED', 'ATC_REPLAY',
        'VELOCITY_COUNT', 'VELOCITY_AMOUNT', 'INSUFFICIENT_FUNDS', 'CREDIT_LIMIT_EXCEEDED'))
        OR (kind = 'advice' AND reason = 'OFFLINE_APPROVED');
    ALTER TABLE transactions ADD COLUMN reversed_amount INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE transactions ADD COLUMN reversed_charged INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX transactions_by_token ON transactions (token_id);
    CREATE TABLE exception_items (
        id INTEGER PRIMARY KEY,
        transaction_id INTEGER NOT NULL UNIQUE REFERENCES transactions(id),
        tid TEXT NOT NULL,
        batch INTEGER,
        amount INTEGER NOT NULL,
        pan_masked TEXT,
        issuer TEXT,
        reason TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
        resolution TEXT CHECK (resolution IN ('charged_back', 'written_off')),
        note TEXT,
        resolved_by TEXT,
        resolved_at TEXT,
        created TEXT NOT NULL
    );
    CREATE INDEX exception_items_by_state ON exception_items (state, id);
    ALTER TABLE settlements ADD COLUMN figures TEXT;
    """,
    # 6: who holds a suspended token or a turned-off wallet (cardholder, operator or issuer: a
    # cardholder lifts only their own holds), server-side sessions (logout and a password change revoke them; the
    # table holds SHA-256 of each session id, never the id) and the throttle counters of logins and SMS codes.
    # Holds placed before this migration: every FRAUDULENT one, the operator's (its events say "by": "operator") and
    # the lost-phone holds of a wallet the operator turned off stay the bank's; the rest were the cardholder's.
    """
    ALTER TABLE tokens ADD COLUMN held_by TEXT CHECK (held_by IN ('cardholder', 'operator', 'issuer'));
    ALTER TABLE devices ADD COLUMN wallet_held_by TEXT CHECK (wallet_held_by IN ('cardholder', 'operator', 'issuer'));
    /* sqlite only */ UPDATE devices SET wallet_held_by = CASE
        WHEN (
            SELECT json_extract(e.body, '$.by') FROM events e WHERE e.kind = 'token' AND json_valid(e.body)
            AND json_extract(e.body, '$.device_id') = devices.id AND json_extract(e.body, '$.action') = 'wallet_off'
            ORDER BY e.id DESC LIMIT 1) = 'operator' THEN 'operator'
        ELSE 'cardholder' END
    WHERE wallet_enabled = 0;
    /* sqlite only */ UPDATE tokens SET held_by = CASE
        WHEN status_reason = 'FRAUDULENT' THEN 'operator'
        WHEN status_reason = 'LOST_DEVICE' THEN COALESCE(
            (SELECT d.wallet_held_by FROM devices d WHERE d.id = tokens.device_id), 'cardholder')
        WHEN (
            SELECT json_extract(e.body, '$.by') FROM events e WHERE e.kind = 'token' AND json_valid(e.body)
            AND json_extract(e.body, '$.token_id') = tokens.id AND json_extract(e.body, '$.to') = 'suspended'
            ORDER BY e.id DESC LIMIT 1) = 'operator' THEN 'operator'
        ELSE 'cardholder' END
    WHERE status = 'suspended';
    CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        kind TEXT NOT NULL CHECK (kind IN ('web', 'tsp')),
        created REAL NOT NULL,
        expires REAL NOT NULL
    );
    CREATE INDEX sessions_by_user ON sessions (user_id);
    CREATE INDEX sessions_by_expiry ON sessions (expires);
    CREATE TABLE throttle (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        count INTEGER NOT NULL,
        resets REAL NOT NULL,
        PRIMARY KEY (scope, key)
    );
    CREATE INDEX throttle_by_reset ON throttle (resets);
    """,
    # 7: the virtual ECR hands a sale over only when the terminal accepts an offer
    # (acquirer_stub.ecr.handover): states offered (a token and a lease) and expired (taken, no result by the
    # deadline); SQLite cannot change a CHECK, so the table is rebuilt. A sale taken before this migration gets
    # the migration's time as its deadline: it shows as expired, never as silently running.
    """
    CREATE TABLE ecr_requests_handover (
        id INTEGER PRIMARY KEY,
        tid TEXT NOT NULL REFERENCES terminals(tid),
        amount INTEGER NOT NULL CHECK (amount > 0),
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'offered', 'taken', 'done', 'expired')),
        result TEXT,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        offer TEXT,
        lease_until REAL,
        deadline REAL
    );
    /* sqlite only */ INSERT INTO ecr_requests_handover (id, tid, amount, state, result, created, updated, deadline)
        SELECT id, tid, amount, state, result, created, updated,
               CASE WHEN state = 'taken' THEN CAST(strftime('%s', 'now') AS REAL) END
        FROM ecr_requests;
    DROP TABLE ecr_requests;
    ALTER TABLE ecr_requests_handover RENAME TO ecr_requests;
    CREATE INDEX ecr_requests_pending ON ecr_requests (tid, state, id);
    CREATE INDEX ecr_requests_open ON ecr_requests (state)
    """,
    # 8: transit clearing: each fare a gate's PSAM took, checked by its TAC, once per card and purse transaction;
    # the card number is kept as a keyed hash (look-up) and masked (people), like a PAN
    """
    CREATE TABLE transit_cities (
        city_code TEXT PRIMARY KEY,
        name TEXT NOT NULL
    );
    CREATE TABLE transit_fares (
        id INTEGER PRIMARY KEY,
        tid TEXT NOT NULL REFERENCES terminals(tid),
        psam TEXT NOT NULL,
        city_code TEXT NOT NULL,
        card_hash TEXT NOT NULL,
        card_masked TEXT NOT NULL,
        offline_serial INTEGER NOT NULL,
        amount INTEGER NOT NULL CHECK (amount > 0),
        terminal_serial TEXT NOT NULL,
        fare_time TEXT NOT NULL,
        tac TEXT NOT NULL,
        received TEXT NOT NULL,
        UNIQUE (card_hash, offline_serial)
    );
    CREATE INDEX transit_fares_by_received ON transit_fares (received)
    """,
    # 9: transit e-purse loads (acquirer_stub.api.transit_load): the host makes MAC2 as the card issuer's agent.
    # A card's online serial says what became of a MAC2: at most one load per card and serial is counted
    # (credited or completed), which the partial unique index keeps even against a bug.
    """
    CREATE TABLE transit_loads (
        id INTEGER PRIMARY KEY,
        tid TEXT NOT NULL REFERENCES terminals(tid),
        stan TEXT NOT NULL,
        local_date TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        city_code TEXT NOT NULL,
        card_hash TEXT NOT NULL,
        card_masked TEXT NOT NULL,
        online_serial INTEGER NOT NULL,
        balance_before INTEGER NOT NULL,
        amount INTEGER NOT NULL CHECK (amount > 0),
        terminal_id TEXT NOT NULL,
        date_time TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('authorized', 'voided', 'credited', 'completed')),
        tac TEXT,
        response TEXT NOT NULL,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        UNIQUE (tid, stan, local_date)
    );
    CREATE INDEX transit_loads_by_card ON transit_loads (card_hash, online_serial);
    CREATE UNIQUE INDEX transit_loads_counted ON transit_loads (card_hash, online_serial)
        WHERE state IN ('credited', 'completed');
    CREATE TABLE transit_load_confirmations (
        id INTEGER PRIMARY KEY,
        tid TEXT NOT NULL REFERENCES terminals(tid),
        stan TEXT NOT NULL,
        local_date TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        load_id INTEGER NOT NULL REFERENCES transit_loads(id),
        response TEXT NOT NULL,
        created TEXT NOT NULL,
        UNIQUE (tid, stan, local_date)
    )
    """,
    # 10: an event names the transaction it is about in columns of its own (TID and STAN as the API's bodies do,
    # or the row's id), so the dashboard finds a sale's events by an index, on either database, without reading
    # JSON
    """
    ALTER TABLE events ADD COLUMN tid TEXT;
    ALTER TABLE events ADD COLUMN stan TEXT;
    ALTER TABLE events ADD COLUMN transaction_id INTEGER;
    /* sqlite only */ UPDATE events SET tid = CAST(json_extract(body, '$.tid') AS TEXT),
        stan = CAST(json_extract(body, '$.stan') AS TEXT),
        transaction_id = CAST(json_extract(body, '$.transaction_id') AS INTEGER)
    WHERE json_valid(body);
    CREATE INDEX events_by_transaction ON events (transaction_id);
    CREATE INDEX events_by_key ON events (tid, stan)
    """,
    # 11: the dashboard's transaction search finds a sale by its RRN or approval code and pages by time
    """
    CREATE INDEX transactions_by_rrn ON transactions (rrn);
    CREATE INDEX transactions_by_auth_code ON transactions (auth_code);
    CREATE INDEX transactions_by_created ON transactions (created)
    """,
    # 12: the request as received, masked (acquirer_stub.api.service.mask_request), for the dashboard's detail page
    """
    ALTER TABLE transactions ADD COLUMN request_masked TEXT
    """,
    # 13: the health a terminal service reports with its echo (hostproto.messages.Health, JSON) and when; /metrics
    # counts authorizations by outcome from an index that covers the count, not from the table's wide rows
    """
    ALTER TABLE terminals ADD COLUMN health TEXT;
    ALTER TABLE terminals ADD COLUMN health_at TEXT;
    CREATE INDEX transactions_by_outcome ON transactions (kind, rc, issuer, latency_ms)
    """,
]
