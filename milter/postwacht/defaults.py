"""Every daemon default in one place (policy defaults live in the JSON Schema only)."""

MILTER_SOCKET = "inet:8894@127.0.0.1"
METRICS_LISTEN = "127.0.0.1:9464"
SOCKETMAP_LISTEN = "127.0.0.1:8895"
STATE_DIR = "/var/lib/postwacht"
POLICY_CHECK_INTERVAL = 2.0
"""Seconds between checks of the policy file for a change."""
FACTS_DEADLINE = 60.0
"""Seconds end of message may spend learning transport facts, for all domains together;
well under Postfix's milter_content_timeout (300 s)."""
FACTS_WORKERS = 8
"""Threads that look up recipient domains side by side (shared by all messages)."""
RECORDS_FILE = "postwacht.sqlite"
"""The embedded records store, in the state directory."""
CONTROL_SOCKET = "control.sock"
"""The control socket, in the state directory."""
POSTFIX_CONFIG = "/etc/postfix"
"""Postfix's configuration directory when none is named."""
SOCKETMAP_IDLE_TIMEOUT = 30.0
"""Seconds a socketmap connection may take to send its next complete request; Postfix
closes its own after 10 s idle, so only a stalled or hostile client meets this."""
SOCKETMAP_MAX_CONNECTIONS = 256
"""Socketmap connections served at once (one thread each); Postfix opens one per process
that looks up a table (trivial-rewrite, and smtp/relay up to their process limits)."""
SOCKETMAP_BACKLOG = 1024
"""Connects the kernel queues for the socketmap before it accepts them."""
MILTER_TIMEOUT = 330
"""Seconds libmilter waits for Postfix's next command on a connection before closing it.
Postfix keeps one milter connection per SMTP session and says nothing on it while the
client pauses between messages (up to smtpd_timeout, 300 s): a shorter wait would cut
the connection under a live session and tempfail that client's next message."""
MILTER_BACKLOG = 1024
"""Connects the kernel queues for the milter before libmilter accepts them."""
RELEASE_HELPER_SOCKET = "release.sock"
"""The release helper's socket, in the state directory (the helper runs as root and
carries out review requests with postsuper)."""
RELEASE_HELPER_TIMEOUT = 60.0
"""Seconds the daemon waits for the release helper's answer to one request; a release
with postsuper -r looks for the message's new queue id for up to 15 s."""
RELEASE_HELPER_PATIENCE = 20.0
"""Seconds the release helper may stay unreachable for one request before the request is
failed: long enough for systemd to restart a helper (RestartSec=5s), short enough that a
reviewer waiting for the outcome (30 s by default) is told."""
REQUESTS_INTERVAL = 2.0
"""Seconds between looks for review requests that this MTA's daemon should carry out."""
SYNC_INTERVAL = 60.0
"""Seconds between rounds of retention (expiring old holds) and of closing records whose
message left the hold queue outside Postwacht."""
GONE_GRACE = 2.0
"""Seconds, at least, before a record whose message is not in the hold queue counts as
gone: Postfix moves the message into hold only after the milter's answer. The grace is
two sync intervals when that is longer."""
EXPIRY_BATCH = 100
"""Held messages expired per sync round at most, so a first round over a large, old
quarantine does not keep reviewers' requests waiting."""
EXPIRY_RETRY = 6 * 3600.0
"""Seconds before the expiry of one held message that failed (the helper refused it) is
asked for again: each failed expiry is two audit entries."""
HELPER_DOWN_PAUSE = 600.0
"""Seconds the daemon asks for no expiries after the release helper could not be
reached (each would only fail)."""
REPORTS_INTERVAL = 10.0
"""Seconds between looks for a changed policy or a new domain-watch round to publish to
the records store for review (which may read neither the policy file nor the DNS)."""
MTA_NAME_MAX = 64
"""Characters of an MTA name (`serve --mta`), as records and the audit trail carry it."""
RETIRED_ATTEMPT_BACKOFF = 30.0
"""Seconds after a failed write of a retired-domain attempt in which the milter records no
more of them (only counts them), so a records store that is down never slows RCPT."""
CONTENT_READ_MAX = 4 * 1024 * 1024
"""Bytes of a held message read (postcat) to make what review may see of it; a larger
message is read this far and its view says the rest is missing."""
CAPTURE_BATCH = 20
"""Held messages whose content is captured for review per round of requests at most, so
a quarantine full of new holds does not keep reviewers' requests waiting."""
CAPTURE_RETRY = 300.0
"""Seconds before the capture of one held message that failed is tried again."""
CAPTURE_PAUSE = 60.0
"""Seconds no content is captured after the release helper could not be reached."""
