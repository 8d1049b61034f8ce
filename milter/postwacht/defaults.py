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
