"""Schema migrations, applied in order; the database records the version it is at.

Money is integer fen everywhere. PANs are never stored in clear: `*_sealed` is AES-GCM under the vault
key, `*_hash` an HMAC for look-ups, `*_masked` BIN + last 4 for people.
"""

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
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('operator', 'cardholder')),
        phone TEXT
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
    # MIGRATION_TAG: ecr — the virtual ECR hands a sale over only when the terminal accepts an offer
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
    INSERT INTO ecr_requests_handover (id, tid, amount, state, result, created, updated, deadline)
        SELECT id, tid, amount, state, result, created, updated,
               CASE WHEN state = 'taken' THEN CAST(strftime('%s', 'now') AS REAL) END
        FROM ecr_requests;
    DROP TABLE ecr_requests;
    ALTER TABLE ecr_requests_handover RENAME TO ecr_requests;
    CREATE INDEX ecr_requests_pending ON ecr_requests (tid, state, id);
    CREATE INDEX ecr_requests_open ON ecr_requests (state)
    """,
]
