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
