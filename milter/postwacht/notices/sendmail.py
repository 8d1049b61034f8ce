"""Handing a notice to Postfix with sendmail(1), the way any local program sends mail.

Postfix queues it, passes it through the filter again (`non_smtpd_milters`) and delivers
it: retries, logging and the queue are Postfix's, not ours. No SMTP client here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass

from postwacht.core.text import printable
from postwacht.notices.compose import Outgoing

SENDMAIL = "/usr/sbin/sendmail"
SENDMAIL_TIMEOUT = 30.0
"""Seconds sendmail(1) may take to queue one notice; it only writes to the maildrop
directory, so a longer wait means Postfix is in trouble."""


class SendmailError(Exception):
    """sendmail(1) did not take the notice; the message says why."""


@dataclass(frozen=True, slots=True)
class Sendmail:
    command: str = SENDMAIL
    postfix_config: str | None = None
    """Postfix's configuration directory (`-C`) for a Postfix that is not the default."""
    timeout: float = SENDMAIL_TIMEOUT

    def argv(self, outgoing: Outgoing) -> list[str]:
        config = ["-C", self.postfix_config] if self.postfix_config else []
        # -i: a line with a single dot does not end the message. `--`: the recipient is
        # never read as an option, whatever it starts with.
        return [self.command, *config, "-i", "-f", outgoing.sender, "--", outgoing.recipient]

    def send(self, outgoing: Outgoing) -> None:
        # A session of its own, so that a sendmail that takes too long is stopped with
        # everything it started (postdrop retries a maildrop it cannot write for ever).
        try:
            process = subprocess.Popen(self.argv(outgoing), stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       start_new_session=True)
        except OSError as exc:
            raise SendmailError(f"cannot run {self.command}: {exc.strerror or exc}") from None
        try:
            _, stderr = process.communicate(outgoing.data, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise SendmailError(f"{self.command} took longer than {self.timeout:g} s"
                                ) from None
        if process.returncode != 0:
            said = printable(stderr.decode("utf-8", "replace").strip(), 500)
            raise SendmailError(f"{self.command} exited with status {process.returncode}"
                                f"{': ' + said if said else ''}")
