"""Every default in one place: listeners on loopback, state under /var/lib."""

MILTER_SOCKET = "inet:8894@127.0.0.1"
METRICS_LISTEN = "127.0.0.1:9464"
SOCKETMAP_LISTEN = "127.0.0.1:8895"
STATE_DIR = "/var/lib/postwacht"
POLICY_CHECK_INTERVAL = 2.0
"""Seconds between checks of the policy file for a change."""
