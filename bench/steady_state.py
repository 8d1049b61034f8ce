"""Steady state (issue 13): memory over many messages, one very large message, and the
milter callbacks' latency, on `postwacht serve` driven directly by a milter client.

No Postfix in between: the client (the `miltertest` package, as in the protocol tests)
speaks the milter protocol the way Postfix 3.7 does (macros, the negotiated no-reply
stages, the queue id at end of message), from several processes at once, so that what
is measured is the daemon alone.

  many       --messages (default 100,000) on the envelope path (the example policy
             without secure_transport, an outside recipient that no rule matches; no
             DNS), --per-connection messages (default 5) on each connection as Postfix
             sends the messages of one SMTP session; RSS sampled every tenth; the first
             tenth is the warm-up
  latency    p99 of `postwacht_milter_callback_seconds` by stage over the measured part
             (after the warm-up), from the histogram's buckets: the bucket that holds
             the 99th percentile, so "under 2 ms" means that bucket ends at 2 ms or less
  one core   the daemon's CPU per message and its share of a core while the clients push
             as fast as they can: 1000 / (CPU ms per message) is what one process passes
             per second on one core, the figure against which more worker processes
             would have to be weighed
  large      one 50 MiB message (a base64 text attachment) on the content path (the
             example policy with max_scan_bytes above the message's size, so that all of
             it is scanned; a partner recipient, subject "[open]"), in 64 KiB chunks as
             Postfix sends its body: the growth of peak RSS (VmHWM) and the time

Run: `make bench`, or `.venv/bin/python bench/steady_state.py [--messages N]
[--clients K] [--json PATH]`. Needs no root.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from lab import Process, free_port, listening
from miltertest import MilterConnection, constants
from throughput import OUTSIDE, PARTNER, POSTWACHT, SENDER, large_message, write_policies

C = constants
FINAL = {C.SMFIR_ACCEPT, C.SMFIR_REJECT, C.SMFIR_TEMPFAIL, C.SMFIR_REPLYCODE,
         C.SMFIR_DISCARD}
CHUNK = 65535  # what Postfix sends of a body at a time (MILTER_CHUNK_SIZE)
LARGE = 50 * 1024 * 1024
P99_TARGET = 0.002
REPLIES = {C.SMFIR_ACCEPT: "accept", C.SMFIR_REJECT: "reject", C.SMFIR_TEMPFAIL: "tempfail",
           C.SMFIR_REPLYCODE: "reply code", C.SMFIR_DISCARD: "discard"}


class Conversation:
    """One milter connection, as Postfix's smtpd holds it for an SMTP session."""

    def __init__(self, port: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        # Each command is its own small write, as Postfix's are: without this, a write
        # waits for the acknowledgement of the one before (Nagle) for up to 40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = MilterConnection(sock)
        _, self.protocol = self.conn.optneg_mta()
        self.conn.send_macro(C.SMFIC_CONNECT, **{"{daemon_name}": "ORIGINATING",
                                                 "j": "bench"})
        self._send(C.SMFIC_CONNECT, C.SMFIP_NR_CONN, hostname="localhost", family="4",
                   port=40000 + os.getpid() % 20000, address="127.0.0.1")

    def _send(self, cmd: str, no_reply: int, **args: Any) -> None:
        self.conn._send(cmd, **args)
        if not self.protocol & no_reply:
            reply = self.conn.recv()
            if reply[0] != C.SMFIR_CONTINUE:
                raise RuntimeError(f"{cmd!r} answered {reply!r}")

    def _body(self, chunk: bytes) -> None:
        """A body packet as bytes (the client's encoder wants text): length, 'B', data."""
        self.conn.sock.sendall(struct.pack("!I", len(chunk) + 1) + C.SMFIC_BODY.encode()
                               + chunk)
        if not self.protocol & C.SMFIP_NR_BODY:
            reply = self.conn.recv()
            if reply[0] != C.SMFIR_CONTINUE:
                raise RuntimeError(f"body answered {reply!r}")

    def message(self, queue_id: str, recipient: str,
                headers: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> str:
        """One message; returns the final reply's code."""
        self.conn.send_macro(C.SMFIC_MAIL, i=queue_id)
        self._send(C.SMFIC_MAIL, C.SMFIP_NR_MAIL, args=[f"<{SENDER}>"])
        reply = self.conn.send_get(C.SMFIC_RCPT, args=[f"<{recipient}>"])
        if reply[0] != C.SMFIR_CONTINUE:
            raise RuntimeError(f"RCPT answered {reply!r}")
        if not self.protocol & C.SMFIP_NOHDRS:
            for name, value in headers:
                self._send(C.SMFIC_HEADER, C.SMFIP_NR_HDR, name=name, value=value)
        if not self.protocol & C.SMFIP_NOEOH:
            self._send(C.SMFIC_EOH, C.SMFIP_NR_EOH)
        if not self.protocol & C.SMFIP_NOBODY:
            for start in range(0, len(body), CHUNK):
                self._body(body[start:start + CHUNK])
        self.conn.send_macro(C.SMFIC_BODYEOB, i=queue_id)
        self.conn._send(C.SMFIC_BODYEOB)
        while True:
            reply = self.conn.recv()
            if reply[0] in FINAL:
                return REPLIES[reply[0]]

    def close(self) -> None:
        self.conn._send(C.SMFIC_QUIT)
        self.conn.sock.close()


def drive(port: int, first: int, count: int, per_connection: int) -> dict[str, int]:
    """A client process: `count` messages, `per_connection` to a connection; the final
    replies by code."""
    replies: dict[str, int] = {}
    number = first
    while number < first + count:
        conversation = Conversation(port)
        for _ in range(min(per_connection, first + count - number)):
            code = conversation.message(f"{number:010X}", OUTSIDE)
            replies[code] = replies.get(code, 0) + 1
            number += 1
        conversation.close()
    return replies


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def histogram(metrics_port: int) -> dict[str, list[tuple[float, float]]]:
    """`postwacht_milter_callback_seconds` buckets by stage: [(edge, cumulative count)]."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                timeout=10) as response:
        text = response.read().decode()
    found: dict[str, list[tuple[float, float]]] = {}
    pattern = re.compile(r'^postwacht_milter_callback_seconds_bucket\{le="([^"]+)",'
                         r'stage="([^"]+)"\} (\S+)$')
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            edge, stage, count = match.groups()
            found.setdefault(stage, []).append((float(edge), float(count)))
    return {stage: sorted(buckets) for stage, buckets in found.items()}


def p99(before: list[tuple[float, float]], after: list[tuple[float, float]]
        ) -> tuple[float, int]:
    """The upper edge of the bucket that holds the 99th percentile of what was observed
    between the two snapshots, and how many were observed."""
    start = dict(before)
    counts = [(edge, count - start.get(edge, 0.0)) for edge, count in after]
    total = counts[-1][1]
    if total <= 0:
        return float("nan"), 0
    for edge, count in counts:
        if count >= 0.99 * total:
            return edge, int(total)
    return float("inf"), int(total)


def serve(root: Path, name: str, policy: Path) -> tuple[Process, int, int]:
    milter, metrics = free_port(), free_port()
    daemon = Process([POSTWACHT, "serve", "--policy", str(policy),
                      "--milter", f"inet:{milter}@127.0.0.1",
                      "--metrics", f"127.0.0.1:{metrics}",
                      "--socketmap", f"127.0.0.1:{free_port()}",
                      "--state", str(root / f"state-{name}"), "--mta", f"bench-{name}"],
                     root / f"postwacht-{name}.log")
    try:
        daemon.start(lambda: listening(milter) and listening(metrics), f"postwacht ({name})")
    except BaseException:
        daemon.stop()  # never left behind when it does not come up in time
        raise
    return daemon, milter, metrics


def many(root: Path, policy: Path, args: argparse.Namespace) -> dict[str, Any]:
    daemon, milter, metrics = serve(root, "envelope", policy)
    try:
        steps = 10
        step = args.messages // steps
        share = step // args.clients
        samples: list[dict[str, Any]] = []
        replies: dict[str, int] = {}
        started = time.perf_counter()
        cpu_start = daemon.cpu()
        measured_from: tuple[float, float, dict[str, Any]] | None = None
        context = multiprocessing.get_context("fork")
        with context.Pool(args.clients) as pool:
            for number in range(steps):
                jobs = [(milter, (number * args.clients + c) * share, share,
                         args.per_connection) for c in range(args.clients)]
                for result in pool.starmap(drive, jobs):
                    for code, count in result.items():
                        replies[code] = replies.get(code, 0) + count
                now = time.perf_counter()
                samples.append({"messages": (number + 1) * share * args.clients,
                                "rss_kib": rss_kib(daemon.pid),
                                "seconds": round(now - started, 1)})
                print(f"  {samples[-1]['messages']} messages, RSS "
                      f"{samples[-1]['rss_kib'] / 1024:.1f} MiB", flush=True)
                if number == 0:
                    measured_from = (now, daemon.cpu(), histogram(metrics))
        assert measured_from is not None
        seconds = time.perf_counter() - measured_from[0]
        cpu = daemon.cpu() - measured_from[1]
        after = histogram(metrics)
        messages = samples[-1]["messages"] - samples[0]["messages"]
        latency = {}
        for stage, buckets in after.items():
            edge, observed = p99(measured_from[2].get(stage, []), buckets)
            latency[stage] = {"p99_at_most_seconds": edge, "observed": observed}
        warm = samples[0]["rss_kib"]
        return {
            "messages": samples[-1]["messages"], "clients": args.clients,
            "per_connection": args.per_connection, "replies": replies,
            "rss_samples": samples,
            "rss_growth_after_warmup_mib": round((samples[-1]["rss_kib"] - warm) / 1024, 1),
            "rss_peak_growth_after_warmup_mib":
                round((max(s["rss_kib"] for s in samples) - warm) / 1024, 1),
            "msgs_per_second": round(messages / seconds, 1),
            "cpu_ms_per_message": round(cpu / messages * 1000, 3),
            "cores_busy": round(cpu / seconds, 2),
            "one_core_msgs_per_second": round(messages / cpu, 0),
            "cpu_seconds_total": round(daemon.cpu() - cpu_start, 1),
            "callback_p99": latency,
        }
    finally:
        daemon.stop()


def large(root: Path, content: Path) -> dict[str, Any]:
    """The content policy, scanning all of the message (max_scan_bytes above its size)."""
    policy = root / "content-all.yaml"
    settings = yaml.safe_load(content.read_text())
    settings["sensitive"]["max_scan_bytes"] = 2 * LARGE
    policy.write_text(yaml.safe_dump(settings, sort_keys=False))
    message = large_message(LARGE)
    head, _, body = message.partition(b"\n\n")
    headers = tuple((name, value.strip()) for name, _, value in
                    (line.partition(":") for line in head.decode().splitlines()))
    daemon, milter, _ = serve(root, "content", policy)
    try:
        conversation = Conversation(milter)
        conversation.message("0000000001", PARTNER, headers, b"x" * 1024)  # warm
        before = rss_kib(daemon.pid)
        # The peak so far is the start's (the policy loaded, the threads made): from here
        # on the peak is this message's (proc(5), clear_refs).
        Path(f"/proc/{daemon.pid}/clear_refs").write_text("5\n")
        cpu = daemon.cpu()
        started = time.perf_counter()
        code = conversation.message("0000000002", PARTNER, headers, body.replace(b"\n", b"\r\n"))
        seconds = time.perf_counter() - started
        conversation.close()
        hwm = rss_kib(daemon.pid, "VmHWM")
        return {
            "bytes": len(message), "reply": code,
            "rss_before_mib": round(before / 1024, 1),
            "peak_rss_growth_mib": round((hwm - before) / 1024, 1),
            "peak_rss_mib": round(hwm / 1024, 1),
            "seconds": round(seconds, 2), "daemon_cpu_seconds": round(daemon.cpu() - cpu, 2),
        }
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000,
                        help="messages on the envelope path (default 100,000)")
    parser.add_argument("--clients", type=int, default=4,
                        help="client processes at once (default 4)")
    parser.add_argument("--per-connection", type=int, default=5,
                        help="messages on each milter connection (default 5)")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        default=Path(tempfile.gettempdir()) / "postwacht-steady-state.json",
                        help="where the results go as JSON (default %(default)s)")
    args = parser.parse_args()
    if args.messages < 10 * args.clients:
        sys.exit("steady_state: --messages must be at least ten per client")
    root = Path(tempfile.mkdtemp(prefix="postwacht-steady-"))
    try:
        envelope, content = root / "envelope.yaml", root / "content.yaml"
        write_policies(envelope, content, free_port())
        print(f"Steady state: {args.messages} messages on the envelope path, "
              f"{args.clients} clients, {args.per_connection} to a connection; "
              f"{os.cpu_count()} cores")
        results: dict[str, Any] = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "cores": os.cpu_count(), "many": many(root, envelope, args),
        }
        results["large"] = large(root, content)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(results)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"JSON in {args.json}")


def report(results: dict[str, Any]) -> None:
    many, large = results["many"], results["large"]
    print(f"\n| measure | figure | target |\n|---|---|---|\n"
          f"| RSS growth after warm-up ({many['messages']} messages) | "
          f"{many['rss_growth_after_warmup_mib']} MiB (peak "
          f"{many['rss_peak_growth_after_warmup_mib']} MiB) | under 10 MiB |")
    for stage, figures in sorted(many["callback_p99"].items()):
        edge = figures["p99_at_most_seconds"] * 1000
        print(f"| callback p99, stage {stage} ({figures['observed']} calls) | "
              f"at most {edge:g} ms | under {P99_TARGET * 1000:g} ms |")
    print(f"| daemon CPU per message | {many['cpu_ms_per_message']} ms | - |\n"
          f"| messages per second, {many['clients']} clients | {many['msgs_per_second']} "
          f"(daemon busy {many['cores_busy']} cores) | - |\n"
          f"| one process on one core | {many['one_core_msgs_per_second']:.0f} msgs/s | - |\n"
          f"| 50 MiB message: peak RSS growth | {large['peak_rss_growth_mib']} MiB "
          f"(reply {large['reply']}, {large['seconds']} s) | bounded |")
    print(f"replies: {many['replies']}")


if __name__ == "__main__":
    main()
