"""Throughput: what a filter takes from Postfix (issue 13).

Starts, in a temporary directory, a private Postfix on loopback that relays everything to
smtp-sink, a minimal pymilter of its own (bench/peer_milter.py) and two `postwacht serve`
daemons, and measures, interleaved (A B C D A B C D ...), the messages per second
Postfix passes from smtp-source to the sink:

  alone      Postfix without any milter
  peer       the least pymilter for the job (refuses a fixed set of domains at RCPT,
             accepts at end of message, negotiates nothing else)
  envelope   Postwacht with a policy without secure_transport (recipient in an outside
             domain that is no partner: the envelope rules only)
  content    Postwacht with secure_transport and the BSN detector; every message is
             marked "[open]" in its subject, which only a BSN could overrule, so headers
             and the whole body are read; the recipient is a partner accepted without
             transport facts, and the policy's resolver is a closed loopback port, so
             any DNS lookup would fail and show as a tempfail

Each configuration is an smtpd listener of its own with its own `smtpd_milters`
(`-o smtpd_milters=inet:127.0.0.1:PORT` in master.cf, `milter_default_action =
tempfail`), so no reload lies between rounds. Two loads: 2 KiB messages
(`smtp-source -s 20 -m N -l 2048`) and 100 KiB messages with a base64 text attachment
(`smtp-source -s 20 -F FILE`); every configuration of a load gets the same client. A
round lasts from the start of smtp-source until the Postfix log shows every message
delivered (`status=sent`) or refused. Each configuration has a warm-up round first; then
`--rounds` rounds each. Reported per configuration: the median over the rounds of its
rate divided by Postfix alone's rate in the same round, the median milter CPU time per
message (utime + stime of the milter process from /proc, before and after the round),
and the median messages per second.

Run: `make bench`, or as root `.venv/bin/python bench/throughput.py [--rounds 5]
[--messages 1000] [--large-messages 500] [--quick] [--json PATH]`. The results are also
written as JSON, by default to $TMPDIR/postwacht-throughput.json (the path is printed).
Needs root and Debian's postfix package (smtp-source, smtp-sink).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lab import LogCounts, Postfix, Process, free_port, listening, poll, smtp_sink

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_POLICY = ROOT / "policies" / "example.yaml"
PEER = Path(__file__).resolve().with_name("peer_milter.py")
POSTWACHT = str(Path(sys.executable).with_name("postwacht"))
SENDER = "sender@samen-veilig.nl"
OUTSIDE = "rcpt@example.org"  # matches no rule of the example policy, and is no partner
PARTNER = "rcpt@utrecht.nl"  # a partner; secure_transport accepts partners (no DNS)
SUBJECT = "[open] bench"  # the example policy's marker: not sensitive
SESSIONS = 20
SMALL = 2048
LARGE = 100 * 1024
ROUND_DEADLINE = 600.0


@dataclass
class Config:
    name: str
    label: str
    recipient: str
    milter: Process | None = None
    port: int = field(default_factory=free_port)
    metrics: int | None = None


@dataclass
class Load:
    name: str
    messages: int
    source_args: list[str]


@dataclass
class Round:
    seconds: float
    messages: int
    cpu: float | None
    counts: LogCounts

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--messages", type=int, default=1000,
                        help="2 KiB messages per round (default 1000)")
    parser.add_argument("--large-messages", type=int, default=500,
                        help="100 KiB messages per round, 0 to skip that load (default 500)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 rounds of 200 and 100 messages")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        default=Path(tempfile.gettempdir()) / "postwacht-throughput.json",
                        help="where the results go as JSON (default %(default)s)")
    parser.add_argument("--label", default="",
                        help="a note kept in the JSON, e.g. which code was measured")
    parser.add_argument("--keep", action="store_true",
                        help="keep the lab's directory (logs, policies) afterwards")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.messages, args.large_messages = 2, 200, min(args.large_messages, 100)
    if os.geteuid() != 0:
        sys.exit("throughput: needs root (a private Postfix instance)")
    for tool in ("postfix", "smtp-source", "smtp-sink"):
        if shutil.which(tool) is None:
            sys.exit(f"throughput: {tool} is missing (Debian package postfix)")
    # SIGTERM ends the run as Ctrl-C does, through the `finally`s: Postfix, the milters
    # and the sink are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("throughput: terminated"))
    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    root = Path(tempfile.mkdtemp(prefix="postwacht-throughput-"))
    try:
        results = run(root, args)
    finally:
        if args.keep:
            print(f"lab kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    results["duration_seconds"] = round(time.monotonic() - started, 1)
    results["load_average_before_after"] = [load_before, [round(x, 2) for x in os.getloadavg()]]
    print(f"load average (1, 5, 15 min) before {load_before}, after "
          f"{results['load_average_before_after'][1]} (after: the bench's own processes "
          "count too)")
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"took {results['duration_seconds']:.0f} s; JSON in {args.json}")


def run(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    root.chmod(0o755)
    sink_port = free_port()
    dead_dns = free_port()  # nothing listens here: a lookup can only fail
    envelope_policy = root / "envelope.yaml"
    content_policy = root / "content.yaml"
    write_policies(envelope_policy, content_policy, dead_dns)
    peer_port = free_port()
    peer = Process([sys.executable, str(PEER), f"inet:{peer_port}@127.0.0.1"],
                   root / "peer.log")
    configs = [
        Config("alone", "Postfix alone", OUTSIDE),
        Config("peer", "the least pymilter for the job", OUTSIDE, peer),
    ]
    daemons: list[tuple[Process, int]] = []
    for name, label, policy, recipient in (
        ("envelope", "Postwacht, envelope rules only", envelope_policy, OUTSIDE),
        ("content", "Postwacht with the content rules, partner recipient", content_policy,
         PARTNER),
    ):
        milter_port, metrics = free_port(), free_port()
        daemon = Process([POSTWACHT, "serve", "--policy", str(policy),
                          "--milter", f"inet:{milter_port}@127.0.0.1",
                          "--metrics", f"127.0.0.1:{metrics}",
                          "--socketmap", f"127.0.0.1:{free_port()}",
                          "--state", str(root / f"state-{name}"), "--mta", f"bench-{name}",
                          "--postfix-config", str(root / "postfix" / "conf")],
                         root / f"postwacht-{name}.log")
        daemons.append((daemon, milter_port))
        configs.append(Config(name, label, recipient, daemon, metrics=metrics))
    milter_ports = {"peer": peer_port, "envelope": daemons[0][1], "content": daemons[1][1]}
    (root / "postfix").mkdir()
    postfix = Postfix(root / "postfix", sink_port, {
        c.port: f"inet:127.0.0.1:{milter_ports[c.name]}" if c.name in milter_ports else ""
        for c in configs})
    postfix.setup()
    sink = smtp_sink(root, sink_port)
    message = root / "large.eml"
    message.write_bytes(large_message(LARGE))
    loads = [Load("2 KiB", args.messages, ["-l", str(SMALL), "-S", SUBJECT])]
    if args.large_messages > 0:
        loads.append(Load("100 KiB, base64 text attachment", args.large_messages,
                          ["-F", str(message)]))
    running: list[Process] = []
    try:
        sink.start(lambda: listening(sink_port), "smtp-sink")
        running.append(sink)
        postfix.start()  # before the daemons, which list its hold queue from the start
        try:
            peer.start(lambda: listening(peer_port), "the peer milter")
            running.append(peer)
            for daemon, port in daemons:
                daemon.start(lambda port=port: listening(port), f"postwacht on port {port}")
                running.append(daemon)
            measured = {load.name: measure(postfix, configs, load, args.rounds)
                        for load in loads}
            checks = {c.name: daemon_checks(c) for c in configs if c.metrics is not None}
        finally:
            for process in running[1:]:
                process.terminate()  # side by side: a daemon takes seconds to stop
            for process in running[1:]:
                process.stop()
            postfix.stop()
    finally:
        for process in running[:1]:
            process.stop()
    results = report(configs, loads, measured, args, checks)
    results["postfix_warnings"] = [line for line in postfix.maillog.read_text(
        errors="replace").splitlines() if " warning: " in line or " fatal: " in line][:20]
    for line in results["postfix_warnings"]:
        print(f"postfix: {line}")
    return results


def write_policies(envelope: Path, content: Path, dead_dns: int) -> None:
    """Both from the example policy, with loopback counted as internal (smtp-source
    connects from 127.0.0.1) and a resolver nobody answers on."""
    example = yaml.safe_load(EXAMPLE_POLICY.read_text())
    example["outbound"]["networks"] = ["127.0.0.0/8"]
    example["dns"] = {"resolvers": [f"127.0.0.1:{dead_dns}"], "timeout": 1}
    with_content = dict(example)
    content.write_text(yaml.safe_dump(with_content, sort_keys=False))
    for key in ("sensitive", "secure_transport"):
        example.pop(key)
    envelope.write_text(yaml.safe_dump(example, sort_keys=False))


def large_message(size: int) -> bytes:
    """A MIME message of about `size` bytes: a short text and a base64 text attachment
    (plain prose, no number that could be a BSN), with the not-sensitive subject."""
    prose = ("het overleg over de planning van de zorg in de regio is verplaatst naar "
             "de volgende week omdat niet iedereen aanwezig kon zijn en de stukken nog "
             "niet klaar waren voor bespreking")
    words = prose.split()
    lines = [" ".join(words[(i * 7) % len(words):] + words[:(i * 7) % len(words)]).capitalize()
             + "." for i in range(64)]
    head = textwrap.dedent(f"""\
        From: <{SENDER}>
        To: <{OUTSIDE}>
        Subject: {SUBJECT}
        Date: Mon, 1 Jun 2026 09:00:00 +0200
        Message-ID: <bench-large@samen-veilig.nl>
        MIME-Version: 1.0
        Content-Type: multipart/mixed; boundary="bench-boundary"

        --bench-boundary
        Content-Type: text/plain; charset=utf-8

        Hierbij het verslag van het overleg.

        --bench-boundary
        Content-Type: text/plain; charset=utf-8; name="verslag.txt"
        Content-Disposition: attachment; filename="verslag.txt"
        Content-Transfer-Encoding: base64

        """).encode()
    tail = b"\n--bench-boundary--\n"
    room = size - len(head) - len(tail)
    raw_size = room * 76 // 77 * 3 // 4  # base64 lines of 76 characters and a newline
    text = ("\n".join(lines) + "\n").encode()
    raw = (text * (raw_size // len(text) + 1))[:raw_size]
    encoded = base64.b64encode(raw)
    body = b"\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76)) + b"\n"
    return head + body + tail


def measure(postfix: Postfix, configs: list[Config], load: Load, rounds: int
            ) -> dict[str, list[Round]]:
    warm = Load(load.name, max(20, load.messages // 5), load.source_args)
    for config in configs:
        one_round(postfix, config, warm)
    measured: dict[str, list[Round]] = {c.name: [] for c in configs}
    for number in range(rounds):
        for config in configs:
            result = one_round(postfix, config, load)
            measured[config.name].append(result)
            cpu = f", milter CPU {result.cpu / result.messages * 1000:.2f} ms/msg" \
                if result.cpu is not None else ""
            print(f"  {load.name} round {number + 1}/{rounds} {config.name}: "
                  f"{result.rate:.0f} msgs/s{cpu}", flush=True)
    return measured


def one_round(postfix: Postfix, config: Config, load: Load) -> Round:
    tail = postfix.tail()
    milter = config.milter
    if milter is not None and not milter.running():
        raise RuntimeError(f"{config.name}: the milter is not running:\n{milter.log_text()}")
    cpu_before = milter.cpu() if milter else 0.0
    begin = time.perf_counter()
    source = subprocess.Popen(
        ["smtp-source", "-A", "-s", str(SESSIONS), "-m", str(load.messages), "-f", SENDER,
         "-t", config.recipient, *load.source_args, f"127.0.0.1:{config.port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last_queue_check = [0.0]

    def finished() -> bool:
        counts = tail.read()
        if counts.sent + counts.tempfailed + counts.rejected >= load.messages:
            return True
        if source.poll() is None:
            return False
        now = time.monotonic()  # smtp-source is done: fall back to an empty queue
        if now - last_queue_check[0] < 0.25:
            return False
        last_queue_check[0] = now
        return not postfix.queue()

    poll(finished, f"{load.messages} messages through {config.name}", ROUND_DEADLINE,
         interval=0.01)
    seconds = time.perf_counter() - begin
    cpu_after = milter.cpu() if milter else 0.0
    source.wait(timeout=60)
    errors = source.stderr.read().decode(errors="replace").strip() if source.stderr else ""
    if errors:
        print(f"  smtp-source ({config.name}): {errors[:500]}")
    counts = tail.read()
    if counts.sent != load.messages or counts.tempfailed or counts.rejected:
        print(f"  {config.name}: {counts.sent} of {load.messages} delivered, "
              f"{counts.tempfailed} tempfailed, {counts.rejected} rejected, "
              f"{counts.deferred} deferred; first lines: {tail.notable[:3]}")
    return Round(seconds, load.messages, cpu_after - cpu_before if milter else None, counts)


def daemon_checks(config: Config) -> dict[str, Any]:
    """What a Postwacht daemon says about itself: its counters that matter here, and the
    warnings and errors in its log."""
    assert config.metrics is not None
    assert config.milter is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{config.metrics}/metrics",
                                timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("postwacht_messages_total", "postwacht_dns_lookups_total",
                            "postwacht_errors_total", "postwacht_recipients_total",
                            "postwacht_milter_callback_seconds_count")):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    log = config.milter.log_text().splitlines()
    notable = [line for line in log
               if any(word in line for word in ("WARNING", "ERROR", "CRITICAL", "Traceback"))]
    return {"metrics": samples, "log_lines": len(log), "log_problems": notable[:20]}


def report(configs: list[Config], loads: list[Load], measured: dict[str, dict[str, list[Round]]],
           args: argparse.Namespace, checks: dict[str, Any]) -> dict[str, Any]:
    cores = os.cpu_count()
    version = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True,
                             text=True, check=False).stdout.strip()
    print(f"\nThroughput: Postfix {version} on loopback relaying to smtp-sink, {cores} cores; "
          f"smtp-source -s {SESSIONS}; median of {args.rounds} interleaved rounds")
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": cores, "postfix": version, "rounds": args.rounds, "sessions": SESSIONS,
        "label": args.label, "postwacht_source": source_revision(), "loads": {},
        "checks": checks,
    }
    for load in loads:
        rounds = measured[load.name]
        alone = rounds["alone"]
        print(f"\n{load.name} messages, {load.messages} a round\n"
              "| filter | ratio to Postfix alone | milter CPU per message | msgs/s |\n"
              "|---|---|---|---|")
        rows = []
        for config in configs:
            mine = rounds[config.name]
            ratios = [r.rate / a.rate for r, a in zip(mine, alone, strict=True)]
            cpus = [r.cpu / r.messages * 1000 for r in mine if r.cpu is not None]
            row = {
                "name": config.name, "filter": config.label,
                "ratio": round(statistics.median(ratios), 3),
                "cpu_ms_per_message": round(statistics.median(cpus), 3) if cpus else None,
                "msgs_per_second": round(statistics.median(r.rate for r in mine), 1),
                "rates": [round(r.rate, 1) for r in mine],
                "ratios": [round(x, 3) for x in ratios],
                "cpu_ms": [round(x, 3) for x in cpus],
                "delivered": sum(r.counts.sent for r in mine),
                "tempfailed": sum(r.counts.tempfailed for r in mine),
                "rejected": sum(r.counts.rejected for r in mine),
                "deferred": sum(r.counts.deferred for r in mine),
            }
            rows.append(row)
            cpu = f"{row['cpu_ms_per_message']:.2f} ms" if cpus else "-"
            print(f"| {config.label} | {row['ratio']:.2f} | {cpu} | "
                  f"{row['msgs_per_second']:.0f} |")
        results["loads"][load.name] = {"messages": load.messages, "filters": rows}
        trouble = [r for r in rows if r["tempfailed"] or r["rejected"] or r["deferred"]]
        for r in trouble:
            print(f"  {r['name']}: {r['tempfailed']} tempfailed, {r['rejected']} rejected, "
                  f"{r['deferred']} deferred")
    print()
    for name, check in checks.items():
        lookups = sum(v for k, v in check["metrics"].items()
                      if k.startswith("postwacht_dns_lookups_total"))
        decided = {k: v for k, v in check["metrics"].items()
                   if k.startswith("postwacht_messages_total")}
        stages = {k.partition('stage="')[2].rstrip('"}'): int(v)
                  for k, v in check["metrics"].items()
                  if k.startswith("postwacht_milter_callback_seconds_count")}
        print(f"postwacht {name}: messages {decided}, callbacks by stage {stages}, "
              f"DNS lookups {lookups:.0f}, {len(check['log_problems'])} warnings/errors "
              "in its log")
        for line in check["log_problems"][:5]:
            print(f"  {line}")
    return results


def source_revision() -> dict[str, Any]:
    """Which Postwacht ran: where its package was imported from and, in a git work tree,
    the commit and whether the package differs from it."""
    found = subprocess.run([sys.executable, "-c", "import postwacht; print(postwacht.__file__)"],
                           capture_output=True, text=True, check=False).stdout.strip()
    where = Path(found).parent if found else ROOT
    revision: dict[str, Any] = {"package": str(where)}
    head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=False)
    if head.returncode == 0:
        revision["commit"] = head.stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "."],
                               capture_output=True, text=True, check=False).stdout
        revision["local_changes"] = bool(dirty.strip())
    return revision


if __name__ == "__main__":
    main()
