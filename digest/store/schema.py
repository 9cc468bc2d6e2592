"""The tables, as SQLAlchemy Core metadata: what the latest migration leaves."""

from __future__ import annotations

import sqlalchemy as sa

# The migration (digest/store/migrations/versions/) whose result the tables below are.
HEAD = "0012"

metadata = sa.MetaData()

# Alembic's record of the version a database is at (kept apart: Alembic writes it).
versions = sa.Table(
    "alembic_version",
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), primary_key=True),
)

articles = sa.Table(
    "articles",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(300), nullable=False, unique=True),  # canonical URL or content hash
    sa.Column("url", sa.Text),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("origin", sa.Text, nullable=False),
    sa.Column("published", sa.DateTime, index=True),  # naive UTC
    sa.Column("summary", sa.Text),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("author", sa.Text),
    sa.Column("image", sa.Text),
    sa.Column("date_flag", sa.String(20)),
    sa.Column("related", sa.Text),  # JSON list of teaser headlines
    sa.Column("section", sa.Text),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("image_alt", sa.Text),  # the image's own alt text, where the source states it
    sa.Column("image_width", sa.Integer),  # and its size in pixels
    sa.Column("image_height", sa.Integer),
    sa.Column("date_note", sa.Text),  # why it has no date of its own, as read (undated only)
)

article_metrics = sa.Table(
    "article_metrics",
    metadata,
    sa.Column("article_id", sa.Integer, sa.ForeignKey("articles.id"), primary_key=True),
    sa.Column("views", sa.Float),
    sa.Column("clicks", sa.Float),
    sa.Column("shares", sa.Float),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

article_origins = sa.Table(
    "article_origins",
    metadata,
    sa.Column("article_id", sa.Integer, sa.ForeignKey("articles.id"), primary_key=True),
    sa.Column("origin", sa.String(1000), primary_key=True),
)

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False),  # as first written
    # The address as compared (store.subscriber_store.email_key): one row per mailbox.
    sa.Column("email_key", sa.String(320), nullable=False),
    sa.Column("name", sa.Text, nullable=False, default=""),
    sa.Column("status", sa.String(20), nullable=False, default="active"),
    sa.Column("fields", sa.Text, nullable=False, default="{}"),  # JSON of custom columns
    # The [topics] chosen: sorted case-insensitively, ";"-joined (one value per topic set, so
    # grouping readers by what they chose is a GROUP BY); NULL: none chosen.
    sa.Column("topics", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Index("ix_subscribers_email_key", "email_key", unique=True),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), primary_key=True),
    sa.Column("list_name", sa.String(200), primary_key=True),
)

issues = sa.Table(
    "issues",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("label", sa.String(100), nullable=False, unique=True),
    sa.Column("since", sa.DateTime, nullable=False),
    sa.Column("until", sa.DateTime, nullable=False),
    sa.Column("lineup", sa.Text, nullable=False),  # JSON, frozen at first send
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("preheader", sa.Text, nullable=False),
    sa.Column("html", sa.Text, nullable=False),  # with per-subscriber markers
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("sent_at", sa.DateTime),
    sa.Column("note", sa.Text),  # the editor's note (Markdown) it was rendered with
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    # No foreign keys (migration 0010): rows are only ever added from the issue and the list's
    # subscribers themselves (`enqueue`, one INSERT … SELECT), and an issue's deliveries go
    # before it; checking each row again took more than half of a million-row enqueue.
    sa.Column("issue_id", sa.Integer, primary_key=True),
    sa.Column("subscriber_id", sa.Integer, primary_key=True),
    sa.Column("list_name", sa.String(200), nullable=False),
    # No index: five values, and each one doubles the cost of the ledger's two writes per row.
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("message_id", sa.String(300)),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("lease_id", sa.String(36)),  # the send lease it was claimed under
    sa.Column("fault", sa.String(20)),  # a failure's kind: "recipient" or "sender"
    # The issue's variant this subscriber gets ([selection] personalize; 0: the general
    # lineup), set when the row is enqueued and never changed: a resumed send sends the same.
    sa.Column("variant", sa.Integer, nullable=False, server_default="0"),
    # PostgreSQL, a personalized issue: the reader's address, name and fields as they were
    # when the row was queued, so that a claim of a run of one variant (readers spread over
    # the whole list) need not look each of them up (migration 0012); `copied`: the number
    # `recipient_changes` had reached then. A reader changed since (a higher number there) is
    # looked up, as a row without a copy is. The claim clears the copy.
    sa.Column("email", sa.String(320)),
    sa.Column("name", sa.Text),
    sa.Column("fields", sa.Text),
    sa.Column("copied", sa.BigInteger),
)

# PostgreSQL: the last change of each reader who changed or left (`RECIPIENT_COPY_TRIGGERS`),
# numbered by a sequence: one row per reader, however often they change.
recipient_changes = sa.Table(
    "recipient_changes",
    metadata,
    sa.Column("subscriber_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
)

# The lineups of a personalized issue beside its general one (variant 0, the issue itself):
# one per distinct set of topics that have stories, frozen with the issue.
issue_variants = sa.Table(
    "issue_variants",
    metadata,
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
    sa.Column("variant", sa.Integer, primary_key=True),
    sa.Column("topics", sa.Text, nullable=False),  # JSON list of the topics it carries
    sa.Column("lineup", sa.Text, nullable=False),  # JSON, as issues.lineup
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("preheader", sa.Text, nullable=False),
    sa.Column("html", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
)

# Which variant each set of topics subscribers had chosen when the issue froze gets (a set
# missing here, chosen later, gets the general lineup of this issue).
issue_topic_sets = sa.Table(
    "issue_topic_sets",
    metadata,
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
    sa.Column("topics", sa.String(4000), primary_key=True),  # as subscribers.topics
    sa.Column("variant", sa.Integer, nullable=False),
)

# PostgreSQL: room in each page of deliveries for a row's next version, so that its claim
# and its outcome update it in place (HOT) instead of adding a primary-key entry each
# (migration 0010; `create_tables` for a new database). Not a table option here: naming
# PostgreSQL in a table's options loads its dialect in every command, SQLite's too.
DELIVERIES_FILLFACTOR = 60

# PostgreSQL: whenever a reader changes (status, address, name, fields), leaves a list or
# is deleted, by whatever path (a trigger, not each of the places that change them), their
# row in `recipient_changes` takes the sequence's next number; a delivery's copy of them made
# before it (`deliveries.copied` lower) is not trusted. Nothing in `deliveries` is written,
# so a waiting row keeps its place in the heap (where a personalized send's claims find it).
RECIPIENT_COPY_TRIGGERS = [
    "CREATE SEQUENCE IF NOT EXISTS digest_recipient_change_seq",
    """CREATE OR REPLACE FUNCTION digest_recipient_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_TABLE_NAME = 'memberships' THEN
        INSERT INTO recipient_changes (subscriber_id, seq)
        VALUES (OLD.subscriber_id, nextval('digest_recipient_change_seq'))
        ON CONFLICT (subscriber_id) DO UPDATE SET seq = EXCLUDED.seq;
      ELSE
        INSERT INTO recipient_changes (subscriber_id, seq)
        VALUES (OLD.id, nextval('digest_recipient_change_seq'))
        ON CONFLICT (subscriber_id) DO UPDATE SET seq = EXCLUDED.seq;
      END IF;
      RETURN NULL;
    END $$""",
    "CREATE TRIGGER digest_subscriber_changed AFTER UPDATE ON subscribers FOR EACH ROW "
    "WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.email IS DISTINCT FROM NEW.email "
    "OR OLD.name IS DISTINCT FROM NEW.name OR OLD.fields IS DISTINCT FROM NEW.fields) "
    "EXECUTE FUNCTION digest_recipient_changed()",
    "CREATE TRIGGER digest_subscriber_deleted AFTER DELETE ON subscribers FOR EACH ROW "
    "EXECUTE FUNCTION digest_recipient_changed()",
    "CREATE TRIGGER digest_membership_deleted AFTER DELETE ON memberships FOR EACH ROW "
    "EXECUTE FUNCTION digest_recipient_changed()",
]

# One live run per issue and list: who holds the send, and until when (see ledger leases).
send_leases = sa.Table(
    "send_leases",
    metadata,
    sa.Column("label", sa.String(100), primary_key=True),  # the issue's window label
    sa.Column("list_name", sa.String(200), primary_key=True),
    sa.Column("lease_id", sa.String(36), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.DateTime, nullable=False),
    sa.Column("heartbeat_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    sa.Column("opened_at", sa.DateTime),  # opened to workers (digest send --workers N)
    # One pace for all its workers: [delivery] rate, the end of the last slot booked under
    # it, and until when a 429 one of them saw holds them all back.
    sa.Column("rate", sa.Float, nullable=False, server_default="0"),
    sa.Column("paced_until", sa.DateTime),
    sa.Column("paused_until", sa.DateTime),
)

# A worker process sending part of a send (digest send --workers N, digest worker): its own
# lease, kept alive by its heartbeat. Its reserved rows are `pending` deliveries with its id.
send_workers = sa.Table(
    "send_workers",
    metadata,
    sa.Column("lease_id", sa.String(36), primary_key=True),
    sa.Column("label", sa.String(100), nullable=False),
    sa.Column("list_name", sa.String(200), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.DateTime, nullable=False),
    sa.Column("heartbeat_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    sa.Column("sent", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_send_workers_send", "label", "list_name"),
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# A subscriber who left one list: kept so a re-import never puts them back on it.
optouts = sa.Table(
    "optouts",
    metadata,
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), primary_key=True),
    sa.Column("list_name", sa.String(200), primary_key=True),
    sa.Column("issue_id", sa.Integer, index=True),  # the issue whose link they used, if any
    sa.Column("source", sa.String(40), nullable=False),  # one-click, preferences, sendgrid, …
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# Provider events (SendGrid's Event Webhook), each counted once by its sg_event_id.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sg_event_id", sa.String(200), nullable=False, unique=True),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("issue_id", sa.Integer, index=True),  # from custom_args; no FK: provider data
    sa.Column("list_name", sa.String(200)),
    sa.Column("subscriber_id", sa.Integer),
    sa.Column("email", sa.String(320)),
    sa.Column("happened_at", sa.DateTime),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# The editor's pins and drops: pending (issue_label NULL) until the next issue freezes.
picks = sa.Table(
    "picks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(1000), nullable=False, index=True),  # canonical URL or origin
    sa.Column("action", sa.String(10), nullable=False),  # "pin" or "drop"
    sa.Column("issue_label", sa.String(100), index=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# What the last read of each source (file, folder or feed URL) found, and a feed's validators
# (ETag / Last-Modified) for the next conditional GET.
feed_state = sa.Table(
    "feed_state",
    metadata,
    sa.Column("url", sa.String(1000), primary_key=True),  # a URL, or a file or folder path
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("last_fetch", sa.DateTime, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # "ok", "not modified", or what failed
    sa.Column("items", sa.Integer, nullable=False, default=0),
)

# The schedule's runs ([schedule]): one row per slot, inserted before its work starts, so a
# slot runs once however many schedulers find it due.
schedule_runs = sa.Table(
    "schedule_runs",
    metadata,
    sa.Column("slot", sa.String(100), primary_key=True),  # "send 2026-12-04T15:00Z"
    sa.Column("kind", sa.String(20), nullable=False),  # draft, send, approve
    sa.Column("due_at", sa.DateTime, nullable=False),  # naive UTC
    sa.Column("label", sa.String(100)),  # the issue window it concerns
    sa.Column("since", sa.DateTime),
    sa.Column("until", sa.DateTime),
    sa.Column("outcome", sa.String(20), nullable=False),  # running, drafted, held, sent, …
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("holder", sa.String(300), nullable=False),  # host (pid N)
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime),
    sa.Index("ix_schedule_runs_kind_due", "kind", "due_at"),
)

# Each request to join from the web (/subscribe, POST /api/subscribe) and its confirmation.
consents = sa.Table(
    "consents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=False, index=True
    ),
    sa.Column("lists", sa.Text, nullable=False),  # JSON list of the lists asked for
    sa.Column("source", sa.String(20), nullable=False),  # "form" or "api"
    sa.Column("text", sa.Text, nullable=False),  # what the reader agreed to, as shown
    sa.Column("requested_at", sa.DateTime, nullable=False),
    sa.Column("request_ip", sa.String(64)),
    sa.Column("request_agent", sa.Text),
    sa.Column("mailed_at", sa.DateTime),  # when its confirmation email went out
    sa.Column("confirmed_at", sa.DateTime),  # NULL until the emailed link is followed
    sa.Column("confirm_ip", sa.String(64)),
    sa.Column("confirm_agent", sa.Text),
    sa.Column("prior_status", sa.String(20)),  # unsubscribed, bounced or complained before
    # The confirmation email: queued (with the request), sending (claimed), sent or failed.
    sa.Column("mail_status", sa.String(20), index=True),
)

# The ledger of welcome emails: claimed ("sending") before one goes out, then sent or failed.
welcomes = sa.Table(
    "welcomes",
    metadata,
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), primary_key=True),
    sa.Column("list_name", sa.String(200), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("message_id", sa.String(300)),
    sa.Column("error", sa.Text),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

# Clicks on story links: BASE_URL/c/TOKEN ([tracking] clicks) and SendGrid's click events.
clicks = sa.Table(
    "clicks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("issue_label", sa.String(100), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),  # the story's number as shown
    sa.Column("url", sa.Text, nullable=False),
    # Who clicked, for unique clicks: a keyed hash of IP and user agent, or "s" + subscriber id.
    sa.Column("visitor", sa.String(64), nullable=False),
    sa.Column("source", sa.String(20), nullable=False),  # "link" or "sendgrid"
    sa.Column("happened_at", sa.DateTime, nullable=False),
)
