"""The database schema as an ordered list of migrations.

``PRAGMA user_version`` records how many of :data:`MIGRATIONS` a database
has had applied; :func:`xmppd.storage.database.Database.open` applies the
rest at start-up, each in its own transaction. Never edit a migration that
has been released: append a new one.
"""

MIGRATIONS: list[str] = [
    # 1: accounts, rosters, pending subscription requests, offline messages.
    """
    CREATE TABLE accounts (
        username TEXT PRIMARY KEY,
        created REAL NOT NULL
    );
    CREATE TABLE scram_keys (
        username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
        mechanism TEXT NOT NULL,
        salt BLOB NOT NULL,
        iterations INTEGER NOT NULL,
        stored_key BLOB NOT NULL,
        server_key BLOB NOT NULL,
        PRIMARY KEY (username, mechanism)
    );
    CREATE TABLE roster_items (
        username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
        contact TEXT NOT NULL,
        name TEXT,
        subscription TEXT NOT NULL DEFAULT 'none',
        ask INTEGER NOT NULL DEFAULT 0,
        approved INTEGER NOT NULL DEFAULT 0,
        groups TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (username, contact)
    );
    CREATE TABLE pending_subscriptions (
        username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
        contact TEXT NOT NULL,
        stanza TEXT NOT NULL,
        PRIMARY KEY (username, contact)
    );
    CREATE TABLE offline_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
        stamp TEXT NOT NULL,
        stanza TEXT NOT NULL
    );
    CREATE INDEX offline_messages_user ON offline_messages(username, id);
    """,
    # 2: persistent MUC rooms and their affiliations (xmppd.storage.rooms).
    """
    CREATE TABLE muc_rooms (
        service TEXT NOT NULL,
        name TEXT NOT NULL,
        config TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        subject_from TEXT,
        updated REAL NOT NULL,
        PRIMARY KEY (service, name)
    );
    CREATE TABLE muc_affiliations (
        service TEXT NOT NULL,
        room TEXT NOT NULL,
        jid TEXT NOT NULL,
        affiliation TEXT NOT NULL,
        reason TEXT,
        nick TEXT,
        PRIMARY KEY (service, room, jid),
        FOREIGN KEY (service, room) REFERENCES muc_rooms(service, name) ON DELETE CASCADE
    );
    """,
    # 3: the conversation log of MUC rooms with logging enabled
    # (muc#roomconfig_enablelogging), kept for temporary rooms too.
    """
    CREATE TABLE muc_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL,
        room TEXT NOT NULL,
        stamp TEXT NOT NULL,
        nick TEXT NOT NULL,
        stanza TEXT NOT NULL
    );
    CREATE INDEX muc_log_room ON muc_log(service, room, id);
    """,
    # 4: roster versions (RFC 6121 2.6), one per user; accounts that exist
    # already start at version 1.
    """
    CREATE TABLE roster_versions (
        username TEXT PRIMARY KEY REFERENCES accounts(username) ON DELETE CASCADE,
        version INTEGER NOT NULL
    );
    INSERT INTO roster_versions (username, version) SELECT username, 1 FROM accounts;
    """,
    # 5: secrets of a service that must outlive restarts, by name (the MUC
    # service's occupant-id key, XEP-0421).
    """
    CREATE TABLE service_secrets (
        service TEXT NOT NULL,
        name TEXT NOT NULL,
        secret TEXT NOT NULL,
        PRIMARY KEY (service, name)
    );
    """,
    # 6: who set a room's subject (bare JID), for the subject's occupant id
    # (XEP-0421) when it is sent to joiners.
    """
    ALTER TABLE muc_rooms ADD COLUMN subject_by TEXT;
    """,
    # 7: message archives (XEP-0313; the table of xmppd.mam.store, for
    # personal and room archives alike). The MUC conversation log
    # becomes the rooms' archives: the rows of persistent rooms move over in
    # their order (owner the room's JID, with its occupant's room JID, time
    # stamps as POSIX seconds, a random archive id each; the logs of
    # temporary rooms, which no room could show any more, go), and muc_log
    # is dropped. A room's logging setting is its archive switch.
    """
    CREATE TABLE IF NOT EXISTS mam_archive (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL,
        account TEXT REFERENCES accounts(username) ON DELETE CASCADE,
        id TEXT NOT NULL UNIQUE,
        stamp REAL NOT NULL,
        with_bare TEXT NOT NULL,
        with_full TEXT NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        stanza TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS mam_archive_owner ON mam_archive(owner, seq, stamp);
    CREATE INDEX IF NOT EXISTS mam_archive_with ON mam_archive(owner, with_bare, seq, stamp);
    CREATE INDEX IF NOT EXISTS mam_archive_stamp ON mam_archive(stamp);
    CREATE INDEX IF NOT EXISTS mam_archive_owner_stamp ON mam_archive(owner, stamp);
    CREATE INDEX IF NOT EXISTS mam_archive_account ON mam_archive(account);
    INSERT INTO mam_archive (owner, account, id, stamp, with_bare, with_full, direction, stanza)
        SELECT log.room || '@' || log.service, NULL, lower(hex(randomblob(16))),
               CAST(strftime('%s', substr(log.stamp, 1, 19)) AS REAL)
                   + CAST(substr(log.stamp, 20, 7) AS REAL),
               log.room || '@' || log.service,
               log.room || '@' || log.service || '/' || log.nick, 'in', log.stanza
        FROM muc_log AS log JOIN muc_rooms AS r ON r.service = log.service AND r.name = log.room
        ORDER BY log.id;
    DROP TABLE muc_log;
    """,
    # 8: the archive table rebuilt for speed (the archive is written on every
    # chat message). ``seq`` is now the archive time in microseconds (unique:
    # a message archived in the same microsecond as the one before gets the
    # next one), so time ranges are seq ranges and the stamp column and its
    # two indexes go; archive ids are the seq in hex and 64 random bits, so
    # a lookup by id is a lookup by seq (the id index goes); one index,
    # (owner, seq, with_bare), serves paging and the ``with`` filter. The
    # ``account`` column stays (NULL for room archives) without its index
    # and foreign key: a trigger deletes an account's archive by owner. Rows
    # keep their order; their ids change (the old ones were never released).
    """
    CREATE TABLE mam_archive_v8 (
        seq INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        account TEXT,
        id TEXT NOT NULL,
        with_bare TEXT NOT NULL,
        with_full TEXT NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        stanza TEXT NOT NULL
    );
    INSERT INTO mam_archive_v8 (seq, owner, account, id, with_bare, with_full, direction, stanza)
        SELECT fixed, owner, account, printf('%016x', fixed) || lower(hex(randomblob(8))),
               with_bare, with_full, direction, stanza
        FROM (SELECT MAX(wanted - n) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING) + n AS fixed,
                     seq, owner, account, with_bare, with_full, direction, stanza
              FROM (SELECT CAST(stamp * 1000000 AS INTEGER) AS wanted,
                           ROW_NUMBER() OVER (ORDER BY seq) AS n,
                           seq, owner, account, with_bare, with_full, direction, stanza
                    FROM mam_archive))
        ORDER BY seq;
    DROP TABLE mam_archive;
    ALTER TABLE mam_archive_v8 RENAME TO mam_archive;
    CREATE INDEX mam_archive_owner ON mam_archive(owner, seq, with_bare);
    CREATE TRIGGER mam_archive_account_deleted AFTER DELETE ON accounts BEGIN
        DELETE FROM mam_archive
        WHERE owner >= old.username || '@' AND owner < old.username || 'A'
              AND account = old.username;
    END;
    """,
    # 9: FAST tokens (XEP-0484, xmppd.modules.fast): the SHA-256 of each
    # token, never the token, per account and user agent (a SASL2 user-agent
    # id), with the mechanism it is for and the last count seen.
    """
    CREATE TABLE fast_tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
        agent TEXT NOT NULL,
        mechanism TEXT NOT NULL,
        token_key BLOB NOT NULL,
        issued REAL NOT NULL,
        expiry REAL NOT NULL,
        count INTEGER NOT NULL DEFAULT 0,
        software TEXT,
        device TEXT
    );
    CREATE INDEX fast_tokens_agent ON fast_tokens(username, agent);
    """,
    # 10: HTTP file upload (XEP-0363; xmppd.upload.store): one row per slot,
    # from the slot request on; 'uploaded' is set once its PUT succeeded.
    # 'owner' is a local username without a foreign key: the files on disk
    # must go with the rows, so the upload service deletes both when the
    # account goes (and sweeps up rows of accounts deleted offline).
    """
    CREATE TABLE uploads (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        filename TEXT NOT NULL,
        size INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        created REAL NOT NULL,
        slot_expires REAL NOT NULL,
        uploaded REAL
    );
    CREATE INDEX uploads_owner ON uploads(owner, created);
    CREATE INDEX uploads_created ON uploads(created);
    """,
]
