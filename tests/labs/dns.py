"""A DNSSEC lab on loopback: nsd serves signed and unsigned test zones, unbound validates.

Every case discovery must tell apart has a name here:
- `dane.pw.test`: signed, MX with a usable TLSA record (DANE-EE) at `_25._tcp.<mx>`
- `plain.pw.test`: signed, MX without TLSA
- `pkix.pw.test`: signed, only a PKIX-EE TLSA record (unusable for SMTP, RFC 7672)
- `nomx.pw.test`: signed, no MX (the A record is the implicit MX), with TLSA
- `nullmx.pw.test`: signed null MX (`MX 0 .`)
- `bogus.pw.test`: signed, but its MX was changed after signing (SERVFAIL when validated)
- `sts.pw-unsigned.test`: unsigned, with an MTA-STS TXT record and policy host
- `unsigned.pw-unsigned.test`: unsigned MX, nothing else
- `missing.pw.test`: does not exist (NXDOMAIN)

and the `v=NTA7516-1` cases (dates around the day the lab is built):
- `nta.pw.test`: a valid record with two `ntamx` hosts, the first with a usable TLSA
  (DANE-EE for the lab's `nta_dane` key; the hosts' addresses are 127.0.0.2 and .3)
- `nta-secure.pw.test`: a valid record naming only the second host (no TLSA);
  `nta-wrong.pw.test`: only a third one, at 127.0.0.4
- `nta-own.pw.test`: a valid record without `ntamx` (its own MX, at 127.0.0.5,
  receives), in two TXT strings, with a provider name that is not ASCII
- `nta-old.pw.test`, `nta-future.pw.test`: expired, not valid yet
- `nta-two.pw.test`: two records; `nta-bad.pw.test`: a malformed one;
  `nta-ten.pw.test`: `v=NTA7516-10`, which is not this record
- `nta-bogus.pw.test`: a valid record changed after signing (SERVFAIL when validated)
- `nta.pw-unsigned.test`: a valid record in an unsigned zone
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.labs.util import free_port, poll

TLSA_DATA = "3 1 1 " + "a1" * 32


def _month(months: int) -> str:
    """YYYY-MM, `months` from this month."""
    today = dt.datetime.now(dt.UTC).date()
    index = today.year * 12 + today.month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def nta_record(start: int, end: int, hosts: str = "", provider: str = "Zorgmail") -> str:
    """A `v=NTA7516-1` record valid from `start` to `end` months from now."""
    return (f"v=NTA7516-1;startdate={_month(start)};enddate={_month(end)};"
            f"provider={provider}{hosts}")


NTA_HOSTS = ";ntamx=20 smtp2.nta-provider.pw.test;ntamx=10 smtp1.nta-provider.pw.test"
NTA_VALID = nta_record(-12, 24, NTA_HOSTS)
NTA_OWN = nta_record(-1, 12, provider="Zorg\\195\\156")
"""In two TXT strings, its provider's name in UTF-8 written as zone-file escapes (ZorgÜ)."""
NTA_BOGUS = nta_record(-1, 12, provider="Bogus")
"""Computed once: the record is found again in the signed zone to be changed."""
NTA_ADDRESSES = {"smtp1.nta-provider.pw.test": "127.0.0.2",
                 "smtp2.nta-provider.pw.test": "127.0.0.3",
                 "smtp3.nta-provider.pw.test": "127.0.0.4",
                 "mx.nta-own.pw.test": "127.0.0.5"}
"""The NTA 7516 hosts' addresses: each its own, so a sink on port 25 there is that host."""
NTA_ZONE = """\
nta      MX  10 mx.nta
mx.nta   A   127.0.0.1
nta      TXT "{valid}"
smtp1.nta-provider A 127.0.0.2
_25._tcp.smtp1.nta-provider TLSA {{nta_tlsa}}
smtp2.nta-provider A 127.0.0.3
smtp3.nta-provider A 127.0.0.4
nta-secure MX 10 mx.nta
nta-secure TXT "{secure}"
nta-wrong MX 10 mx.nta
nta-wrong TXT "{wrong}"
nta-own  MX  10 mx.nta-own
mx.nta-own A 127.0.0.5
nta-own  TXT "{own_head}" "{own_tail}"
nta-old  MX  10 mx.nta
nta-old  TXT "{old}"
nta-future MX 10 mx.nta
nta-future TXT "{future}"
nta-two  MX  10 mx.nta
nta-two  TXT "{valid}"
nta-two  TXT "{bogus}"
nta-bad  MX  10 mx.nta
nta-bad  TXT "v=NTA7516-1;startdate=2025-13;enddate=2027-12;provider=Zorgmail"
nta-bogus MX 10 mx.nta
nta-bogus TXT "{bogus}"
nta-ten  MX  10 mx.nta
nta-ten  TXT "v=NTA7516-10;{valid_tail}"
""".format(valid=NTA_VALID, own_head=NTA_OWN.split(";enddate")[0],
           own_tail=";enddate" + NTA_OWN.split(";enddate")[1], bogus=NTA_BOGUS,
           old=nta_record(-36, -2), future=nta_record(2, 24),
           secure=nta_record(-1, 12, ";ntamx=10 smtp2.nta-provider.pw.test"),
           wrong=nta_record(-1, 12, ";ntamx=10 smtp3.nta-provider.pw.test"),
           valid_tail=NTA_VALID.split(";", 1)[1])
SIGNED = """\
$ORIGIN pw.test.
$TTL 300
@        SOA ns.pw.test. hostmaster.pw.test. 1 3600 600 86400 60
@        NS  ns
ns       A   127.0.0.1
dane     MX  10 mx.dane
mx.dane  A   127.0.0.1
_25._tcp.mx.dane TLSA {tlsa}
plain    MX  10 mx.plain
mx.plain A   127.0.0.1
pkix     MX  10 mx.pkix
mx.pkix  A   127.0.0.1
_25._tcp.mx.pkix TLSA 1 1 1 {hex}
nomx     A   127.0.0.1
_25._tcp.nomx TLSA {tlsa}
nullmx   MX  0 .
bogus    MX  10 mx.bogus
mx.bogus A   127.0.0.1
sts      MX  10 mx.sts
mx.sts   A   127.0.0.1
""".format(tlsa=TLSA_DATA, hex="b2" * 32) + NTA_ZONE
UNSIGNED = f"""\
$ORIGIN pw-unsigned.test.
$TTL 300
@          SOA ns.pw-unsigned.test. hostmaster.pw-unsigned.test. 1 3600 600 86400 60
@          NS  ns
ns         A   127.0.0.1
sts        MX  10 mx.sts
mx.sts     A   127.0.0.1
_mta-sts.sts TXT "v=STSv1; id=20261122T1;"
mta-sts.sts  A 127.0.0.1
stsbad     MX  10 mx.stsbad
mx.stsbad  A   127.0.0.1
_mta-sts.stsbad TXT "v=STSv1; id=1;"
mta-sts.stsbad  A 127.0.0.1
unsigned   MX  10 mx.unsigned
mx.unsigned A  127.0.0.1
nta        MX  10 mx.unsigned
nta        TXT "{nta_record(-12, 24)}"
"""


def _zone(name: str, ns: list[str], mx: list[str]) -> str:
    lines = [f"$ORIGIN {name}.", "$TTL 300",
             f"@ SOA {ns[0]}. hostmaster.{name}. 1 3600 600 86400 60"]
    lines += [f"@ NS {host}." for host in ns]
    lines += [f"@ MX 10 {host}." for host in mx]
    return "\n".join(lines) + "\n"


OUR_NS = ["ns1.samen-veilig.test", "ns2.samen-veilig.test"]
OUR_MX = ["mx.samen-veilig.test"]
WATCH_ZONES = {
    # owned, as the policy expects it
    "samen-veilig.test": _zone("samen-veilig.test", OUR_NS, OUR_MX),
    # owned, registration about to lapse (see the RDAP lab)
    "expiring.test": _zone("expiring.test", OUR_NS, OUR_MX),
    # owned, but delegated elsewhere
    "moved.test": _zone("moved.test", ["ns.registrar-parking.example"], OUR_MX),
    # owned, but its mail goes elsewhere
    "mxmoved.test": _zone("mxmoved.test", OUR_NS, ["mail.elsewhere.example"]),
    # retired, and someone else has it now
    "bjz-old.test": _zone("bjz-old.test", ["ns.parking.example"], ["mx.parking.example"]),
    # a zone whose names below do not exist: gone.nx.test is a retired, unregistered name
    "nx.test": _zone("nx.test", OUR_NS, []),
}


class DnsLab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.nsd_port = free_port()
        self.port = free_port()
        self._processes: list[subprocess.Popen[bytes]] = []

    def _run(self, *args: str) -> str:
        return subprocess.run(args, cwd=self.root, check=True, capture_output=True,
                              text=True).stdout.strip()

    @property
    def nta_dane_key(self) -> Path:
        """The private key whose SPKI the TLSA record of smtp1.nta-provider.pw.test pins
        (DANE-EE, SHA-256), with `nta_dane_cert`: a self-signed certificate for it."""
        return self.root / "nta-dane.key"

    @property
    def nta_dane_cert(self) -> Path:
        return self.root / "nta-dane.pem"

    def _nta_dane(self) -> str:
        """A key and a certificate for the DANE host; its TLSA record's data."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp1.nta-provider.pw.test")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=30))
                .sign(key, hashes.SHA256()))
        self.nta_dane_key.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        self.nta_dane_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"3 1 1 {hashlib.sha256(spki).hexdigest()}"

    def build(self) -> None:
        (self.root / "pw.test.zone").write_text(SIGNED.replace("{nta_tlsa}", self._nta_dane()))
        (self.root / "pw-unsigned.test.zone").write_text(UNSIGNED)
        for zone, text in WATCH_ZONES.items():
            (self.root / f"{zone}.zone").write_text(text)
        ksk = self._run("ldns-keygen", "-a", "ECDSAP256SHA256", "-k", "pw.test")
        zsk = self._run("ldns-keygen", "-a", "ECDSAP256SHA256", "pw.test")
        self._run("ldns-signzone", "-n", "-f", "pw.test.signed", "pw.test.zone", ksk, zsk)
        signed = (self.root / "pw.test.signed").read_text()
        bogus = signed.replace("bogus.pw.test.\t300\tIN\tMX\t10 mx.bogus.pw.test.",
                               "bogus.pw.test.\t300\tIN\tMX\t20 mx.bogus.pw.test.")
        assert bogus != signed, "the bogus case was not made"
        changed = bogus.replace(f'nta-bogus.pw.test.\t300\tIN\tTXT\t"{NTA_BOGUS}"',
                                f'nta-bogus.pw.test.\t300\tIN\tTXT\t"{NTA_BOGUS}x"')
        assert changed != bogus, "the bogus NTA 7516 case was not made"
        bogus = changed
        (self.root / "pw.test.signed").write_text(bogus)
        anchor = (self.root / f"{ksk}.key").read_text()
        (self.root / "anchor.key").write_text(anchor)
        (self.root / "nsd.conf").write_text(f"""\
server:
  ip-address: 127.0.0.1@{self.nsd_port}
  username: ""
  chroot: ""
  database: ""
  zonesdir: "{self.root}"
  pidfile: "{self.root}/nsd.pid"
  xfrdfile: "{self.root}/xfrd.state"
  zonelistfile: "{self.root}/zone.list"
  logfile: "{self.root}/nsd.log"
  verbosity: 1
remote-control:
  control-enable: no
zone:
  name: pw.test
  zonefile: pw.test.signed
zone:
  name: pw-unsigned.test
  zonefile: pw-unsigned.test.zone
""" + "".join(f"zone:\n  name: {z}\n  zonefile: {z}.zone\n" for z in WATCH_ZONES))
        (self.root / "unbound.conf").write_text(f"""\
server:
  interface: 127.0.0.1@{self.port}
  port: {self.port}
  username: ""
  chroot: ""
  directory: "{self.root}"
  pidfile: "{self.root}/unbound.pid"
  do-daemonize: no
  use-syslog: no
  logfile: "{self.root}/unbound.log"
  verbosity: 1
  do-not-query-localhost: no
  local-zone: "test." nodefault
  access-control: 127.0.0.0/8 allow
  trust-anchor-file: "{self.root}/anchor.key"
  module-config: "validator iterator"
  val-log-level: 2
remote-control:
  control-enable: no
stub-zone:
  name: "pw.test."
  stub-addr: 127.0.0.1@{self.nsd_port}
stub-zone:
  name: "pw-unsigned.test."
  stub-addr: 127.0.0.1@{self.nsd_port}
""" + "".join(f'stub-zone:\n  name: "{z}."\n  stub-addr: 127.0.0.1@{self.nsd_port}\n'
              for z in WATCH_ZONES))

    def start(self) -> None:
        for command in (["nsd", "-d", "-c", "nsd.conf"], ["unbound", "-d", "-c", "unbound.conf"]):
            log = (self.root / f"{command[0]}.stderr").open("wb")
            self._processes.append(subprocess.Popen(command, cwd=self.root, stdout=log,
                                                    stderr=log))
        poll(lambda: self._answers(self.nsd_port, "ns.pw.test.", recurse=False), "nsd")
        poll(lambda: self._answers(self.port, "ns.pw.test."), "unbound")

    @contextlib.contextmanager
    def resolver_on(self, address: str) -> Iterator[None]:
        """A second validating resolver on `address`, port 53, where a program that reads
        /etc/resolv.conf (Postfix) can ask it; needs root for the port."""
        config = (self.root / "unbound.conf").read_text()
        config = (config.replace(f"interface: 127.0.0.1@{self.port}", f"interface: {address}@53")
                  .replace(f"port: {self.port}", "port: 53")
                  .replace("unbound.pid", f"unbound-{address}.pid")
                  .replace("unbound.log", f"unbound-{address}.log"))
        (self.root / f"unbound-{address}.conf").write_text(config)
        log = (self.root / f"unbound-{address}.stderr").open("wb")
        process = subprocess.Popen(["unbound", "-d", "-c", f"unbound-{address}.conf"],
                                   cwd=self.root, stdout=log, stderr=log)
        try:
            poll(lambda: _answers_at(address, 53, "ns.pw.test.", process), "unbound on port 53")
            yield
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()

    def _answers(self, port: int, name: str, recurse: bool = True) -> bool:
        for process in self._processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited: see {self.root}")
        query = dns.message.make_query(name, "A", want_dnssec=True)
        if not recurse:
            query.flags &= ~dns.flags.RD
        try:
            response = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
        except (OSError, dns.exception.Timeout):
            return False
        return response.rcode() == dns.rcode.NOERROR and bool(response.answer)

    def stop(self) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            process.wait(timeout=30)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _answers_at(address: str, port: int, name: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"unbound on {address}@{port} exited with {process.returncode}")
    query = dns.message.make_query(name, "A", want_dnssec=True)
    try:
        response = dns.query.udp(query, address, port=port, timeout=0.5)
    except (OSError, dns.exception.Timeout):
        return False
    return response.rcode() == dns.rcode.NOERROR and bool(response.answer)
