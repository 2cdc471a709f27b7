"""The locked broker: certificates for every identity and a Mosquitto configuration that admits only them.

``ground pki init --out DIR --sat sat1 [--sat sat2 ...]`` writes::

    DIR/ca/space-ca.{pem,key}       signs the broker's certificate and the space-segment identities
    DIR/ca/ground-ca.{pem,key}      signs the ground identities          (keep both keys offline)
    DIR/broker/                     server.{pem,key}, both CA certificates and CRLs, acl, mosquitto.conf
    DIR/<sat>/                      flightd, plant, bridge .{pem,key}, ca.pem, flightd.toml -> the board
    DIR/ground/                     <identity>.{pem,key}, ca.pem                -> ground machines

Every client verifies the broker against ``ca.pem`` (the space CA) and presents its own certificate;
its Common Name is its username (``use_identity_as_username``). Two TLS listeners, so that the two
segments are told apart by the CA that signed them, not by a name a client chooses:

- space listener (``--space-port``, 8883): only certificates of the space CA: ``flightd-<sat>``,
  ``plant-<sat>`` (the plant simulator, or the board's telemetry publisher) when they reach the ground
  broker directly, or ``bridge-<sat>`` when the board runs its own broker bridged to the ground one
  (hil.link.bridge; :func:`bridge_tls_lines`). The MQTT client id is
  replaced by the certificate's CN (``use_username_as_clientid``), so no client can take over
  another's session, whatever id it sends.
- ground listener (``--ground-port``, 8884): only certificates of the ground CA (``ground-operator``,
  ``ground-user``, ``ground-observer`` by default); ground tools choose their client ids.

No anonymous access, no cleartext listener. The ACL (:func:`render_acl`, from
:class:`link.topics.TopicMap` and :data:`link.telemetry.PLANT_CHANNELS`) gives ``flightd-<sat>``
write access to its satellite's sat -> ground topics and read access to its ground -> sat topics
only; ``plant-<sat>`` writes its plant channels (and the simulator's ``clock``) and reads
``tlm/compute``; ``bridge-<sat>`` has both sets of rights (it carries all of the satellite's traffic)
and its connection-state topic; ``operator`` writes jobs, commands, sequence commands (``seq/cmd``,
operator-only on the key ring too) and uploads and reads everything;
``user`` writes jobs and commands (the satellite's key ring limits what a user's signed commands may
do) and reads states, results, replies, status, events and telemetry; ``observer`` only reads. A
satellite's identity gives nothing on another satellite's topics.

Checked against Mosquitto 2.0.11 (Debian 12): ``per_listener_settings``, ``require_certificate``,
``use_identity_as_username``, ``use_username_as_clientid`` and ``crlfile`` per listener, ``user``
blocks in ``acl_file`` (mosquitto.conf(5)). Keys are ECDSA P-256 (small, and supported by the TLS
stacks of small clients: OpenSSL, mbedTLS, wolfSSL).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from link.telemetry import CLOCK, COMPUTE, PLANT_CHANNELS
from link.topics import LIVE_ROOT, REPLAY_ROOT, TopicMap, check_id
from link.transport import TlsFiles

SPACE_PORT = 8883
GROUND_PORT = 8884
LEAF_DAYS = 5 * 365
"""Validity of identities: a mission's length, not a web server's; renew by running init again."""
CA_DAYS = 20 * 365
BACKDATE = datetime.timedelta(days=1)
"""Certificates start one day in the past, so a board whose clock lags a little still accepts them."""
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Names and addresses in the broker's certificate unless told otherwise (a broker on this machine)."""
GROUND_ROLES = ("operator", "user", "observer")
DEFAULT_GROUND_IDENTITIES: dict[str, str] = {f"ground-{role}": role for role in GROUND_ROLES}


class PkiError(ValueError):
    """A PKI directory that exists already, or an identity or host that cannot be used."""


def flightd_identity(sat: str) -> str:
    return f"flightd-{check_id('satellite id', sat)}"


def plant_identity(sat: str) -> str:
    return f"plant-{check_id('satellite id', sat)}"


def bridge_identity(sat: str) -> str:
    """The onboard broker's bridge to the ground broker (also its ``remote_clientid``)."""
    return f"bridge-{check_id('satellite id', sat)}"


# ------------------------------------------------------------------------------------------ the ACL


def _space_acl(sat: str, root: str) -> list[str]:
    t = TopicMap(sat, root)
    uplink = (t.job_submit, t.command, t.sequence_command, t.upload_all)
    downlink = (t.job_state_all, t.result_all, t.command_reply_all, t.upload_progress_all, t.status, t.events)
    flightd = [
        f"user {flightd_identity(sat)}",
        *(f"topic write {topic}" for topic in (*downlink, t.telemetry(COMPUTE))),
        *(f"topic read {topic}" for topic in (*uplink, t.telemetry_all)),
    ]
    plant = [  # the plant channels, and the simulator's time tone (never in flight, link.telemetry)
        f"user {plant_identity(sat)}",
        *(f"topic write {t.telemetry(ch)}" for ch in (*PLANT_CHANNELS, CLOCK)),
        f"topic read {t.telemetry(COMPUTE)}",
    ]
    # The bridge carries everything the satellite sends (flightd's and the board's telemetry alike:
    # onboard, each publishes on the board's own broker) and its connection-state notification.
    bridge = [
        f"user {bridge_identity(sat)}",
        *(f"topic write {topic}" for topic in (*downlink, t.telemetry_all)),
        f"topic write $SYS/broker/connection/{bridge_identity(sat)}/state",
        *(f"topic read {topic}" for topic in uplink),
    ]
    return [*flightd, "", *plant, "", *bridge, ""]


def _ground_acl(name: str, role: str, sats: Sequence[str], root: str) -> list[str]:
    lines = [f"user {name}"]
    for sat in sats:
        t = TopicMap(sat, root)
        if role in ("operator", "user"):
            lines += [f"topic write {t.job_submit}", f"topic write {t.command}"]
        if role == "operator":  # sequences are operator commands (flight.keyring), as uploads are
            lines += [f"topic write {t.upload_all}", f"topic write {t.sequence_command}", f"topic read {t.everything}"]
        elif role == "user":
            lines += [
                f"topic read {t.job_state_all}",
                f"topic read {t.result_all}",
                f"topic read {t.command_reply_all}",
                f"topic read {t.status}",
                f"topic read {t.events}",
                f"topic read {t.telemetry_all}",
            ]
        else:
            lines.append(f"topic read {t.everything}")
    if role in ("operator", "observer"):
        lines.append(f"topic {'readwrite' if role == 'operator' else 'read'} {REPLAY_ROOT}/#")
    return [*lines, ""]


def render_acl(sats: Sequence[str], ground: Mapping[str, str], root: str = LIVE_ROOT) -> str:
    """The Mosquitto ``acl_file`` for satellites ``sats`` and ground identities ``ground`` (name -> role)."""
    lines = ["# orbitd broker ACL, written by `ground pki init` (ground/pki.py). Nothing is allowed",
             "# that is not listed; there are no anonymous clients.", ""]
    for sat in sats:
        lines += _space_acl(sat, root)
    for name, role in ground.items():
        if role not in GROUND_ROLES:
            raise PkiError(f"ground identity {name!r} has unknown role {role!r}: one of {', '.join(GROUND_ROLES)}")
        lines += _ground_acl(check_id("ground identity", name), role, sats, root)
    return "\n".join(lines)


# ------------------------------------------------------------------------------- Mosquitto config


@dataclass(frozen=True)
class BrokerListeners:
    """Where Mosquitto listens and where it reads the files of ``DIR/broker`` (``config_dir``: the
    path as the broker sees it, e.g. ``/mosquitto/config`` inside the container)."""

    config_dir: str
    space_port: int = SPACE_PORT
    ground_port: int = GROUND_PORT
    bind: str = "0.0.0.0"

    def lines(self) -> list[str]:
        """The ``per_listener_settings`` block: both TLS listeners with their CA, CRL and the ACL."""
        d = self.config_dir.rstrip("/")
        out = ["per_listener_settings true"]
        for comment, port, ca, pin_client_id in (
            ("space segment: flightd-<sat>, plant-<sat>; the client id is the certificate's CN",
             self.space_port, "space-ca", True),
            ("ground segment: ground identities; client ids chosen by the tools", self.ground_port, "ground-ca", False),
        ):
            out += [
                "",
                f"# {comment}",
                f"listener {port} {self.bind}",
                "allow_anonymous false",
                f"cafile {d}/{ca}.pem",
                f"crlfile {d}/{ca}.crl",
                f"certfile {d}/server.pem",
                f"keyfile {d}/server.key",
                "tls_version tlsv1.2",
                "require_certificate true",
                "use_identity_as_username true",
                f"use_username_as_clientid {'true' if pin_client_id else 'false'}",
                f"acl_file {d}/acl",
            ]
        return out


def render_mosquitto_conf(listeners: BrokerListeners, persistence_dir: str | None = "/mosquitto/data/") -> str:
    """A complete mosquitto.conf: the secure listeners and the link's broker settings (docker/mosquitto.conf)."""
    general = [
        "# orbitd locked broker, written by `ground pki init` (ground/pki.py); see docs/security.md.",
        "# Nagle + delayed ACK cost ~40 ms per small QoS 1 message (shared/reference/boards-and-runtime.md).",
        "set_tcp_nodelay true",
        "max_packet_size 67108864",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    if persistence_dir is not None:
        general += ["persistence true", f"persistence_location {persistence_dir}"]
    return "\n".join([*general, "", *listeners.lines(), ""])


# ------------------------------------------------------------------------------------ certificates


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "orbitd"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


@dataclass
class Authority:
    """A certificate authority: its key, certificate and the serials it revoked."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    revoked: list[int] = field(default_factory=list)

    @classmethod
    def create(cls, cn: str, days: int = CA_DAYS) -> Authority:
        key = _key()
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(
        self, cn: str, *, server_hosts: Sequence[str] = (), days: int = LEAF_DAYS
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A key and certificate for ``cn``: a client identity, or the broker when ``server_hosts`` is given
        (DNS names and IP addresses, put in subjectAltName)."""
        key = _key()
        now = _now()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_hosts else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if server_hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName(_alt_names(server_hosts)), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())

    def issued(self, cert: x509.Certificate) -> bool:
        """True when this authority signed ``cert`` (by key identifier, not by name: every orbitd PKI
        names its CAs alike)."""
        try:
            aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        except x509.ExtensionNotFound:
            return False
        return aki == x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()).digest

    def crl(self, days: int = 365) -> x509.CertificateRevocationList:
        """The CRL of every serial revoked so far (Mosquitto's ``crlfile``; it must exist even when empty)."""
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - BACKDATE)
            .next_update(now + datetime.timedelta(days=days))
        )
        for serial in self.revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - BACKDATE).build()
            )
        return builder.sign(self.key, hashes.SHA256())

    def save(self, directory: Path, stem: str) -> None:
        _write_key(directory / f"{stem}.key", self.key)
        _write(directory / f"{stem}.pem", self.cert.public_bytes(serialization.Encoding.PEM))

    @classmethod
    def load(cls, directory: Path, stem: str) -> Authority:
        key = serialization.load_pem_private_key((directory / f"{stem}.key").read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{directory / stem}.key is not an EC key")
        cert = x509.load_pem_x509_certificate((directory / f"{stem}.pem").read_bytes())
        crl_path = directory / f"{stem}.crl"
        revoked = []
        if crl_path.is_file():
            revoked = [r.serial_number for r in x509.load_pem_x509_crl(crl_path.read_bytes())]
        return cls(key, cert, revoked)


def _alt_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(path, pem, 0o600)


def _save_identity(directory: Path, stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> TlsFiles:
    _write_key(directory / f"{stem}.key", key)
    _write(directory / f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM))
    return TlsFiles(directory / "ca.pem", directory / f"{stem}.pem", directory / f"{stem}.key")


# ----------------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Pki:
    """The files of a PKI directory written by :func:`init_pki`."""

    root: Path

    @property
    def broker_dir(self) -> Path:
        return self.root / "broker"

    def flightd(self, sat: str) -> TlsFiles:
        d = self.root / check_id("satellite id", sat)
        return TlsFiles(d / "ca.pem", d / "flightd.pem", d / "flightd.key")

    def plant(self, sat: str) -> TlsFiles:
        d = self.root / check_id("satellite id", sat)
        return TlsFiles(d / "ca.pem", d / "plant.pem", d / "plant.key")

    def bridge(self, sat: str) -> TlsFiles:
        d = self.root / check_id("satellite id", sat)
        return TlsFiles(d / "ca.pem", d / "bridge.pem", d / "bridge.key")

    def ground(self, identity: str) -> TlsFiles:
        d = self.root / "ground"
        name = check_id("ground identity", identity)
        return TlsFiles(d / "ca.pem", d / f"{name}.pem", d / f"{name}.key")


def init_pki(
    out: Path,
    sats: Sequence[str],
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    ground: Mapping[str, str] | None = None,
    listeners: BrokerListeners | None = None,
    persistence_dir: str | None = "/mosquitto/data/",
) -> Pki:
    """Write a complete PKI and broker configuration under ``out`` (see the module docstring).

    ``hosts``: the names and addresses clients use to reach the broker (in its certificate).
    ``listeners``: ports, bind address and the broker's view of ``out/broker`` (default: that path
    on this machine). Raises :class:`PkiError` if ``out/ca`` exists: a second run would orphan every
    certificate already on the boards; renewing identities is done with the same CA keys.
    """
    if not sats:
        raise PkiError("name at least one satellite (--sat)")
    for sat in sats:
        check_id("satellite id", sat)
    if not hosts:
        raise PkiError("name at least one broker host (--host)")
    ground = dict(DEFAULT_GROUND_IDENTITIES if ground is None else ground)
    acl = render_acl(sats, ground)  # validates roles and names before anything is written
    if (out / "ca").exists():
        raise PkiError(f"{out / 'ca'} exists: refusing to replace the certificate authorities")
    pki = Pki(out)
    listeners = listeners or BrokerListeners(str((out / "broker").resolve()))
    ca_dir, broker = out / "ca", pki.broker_dir
    ca_dir.mkdir(parents=True, mode=0o700)
    space, ground_ca = Authority.create("orbitd space-segment CA"), Authority.create("orbitd ground-segment CA")
    space.save(ca_dir, "space-ca")
    ground_ca.save(ca_dir, "ground-ca")
    space_pem = space.cert.public_bytes(serialization.Encoding.PEM)
    for stem, authority in (("space-ca", space), ("ground-ca", ground_ca)):
        crl = authority.crl().public_bytes(serialization.Encoding.PEM)
        _write(ca_dir / f"{stem}.crl", crl)
        _write(broker / f"{stem}.crl", crl)
        _write(broker / f"{stem}.pem", authority.cert.public_bytes(serialization.Encoding.PEM))
    _save_identity(broker, "server", *space.issue(hosts[0], server_hosts=hosts))
    for sat in sats:
        _write(out / sat / "ca.pem", space_pem)
        _write(out / sat / "flightd.toml", flightd_config(sat, out / sat, hosts[0], listeners.space_port).encode())
        _save_identity(out / sat, "flightd", *space.issue(flightd_identity(sat)))
        _save_identity(out / sat, "plant", *space.issue(plant_identity(sat)))
        _save_identity(out / sat, "bridge", *space.issue(bridge_identity(sat)))
    _write(out / "ground" / "ca.pem", space_pem)
    for name in ground:
        _save_identity(out / "ground", name, *ground_ca.issue(name))
    _write(broker / "acl", acl.encode())
    _write(broker / "mosquitto.conf", render_mosquitto_conf(listeners, persistence_dir).encode())
    return pki


def flightd_config(sat: str, directory: Path, host: str, port: int) -> str:
    """flightd's configuration for the locked broker: the broker URL and its TLS files (paths as on
    this machine; a container or a board overrides them with ``ORBITD_LINK__TLS_*``). ``ground keys
    new --config`` appends the signing keys."""
    d = directory.resolve()
    host = f"[{host}]" if ":" in host else host
    return "\n".join([
        "# flightd on the locked broker, written by `ground pki init` (docs/security.md).",
        "# Signing keys: `ground keys new NAME --role operator|user --config THIS_FILE` appends them.",
        f'broker = "mqtts://{host}:{port}"',
        f'sat = "{sat}"',
        "",
        "[link]",
        f'tls_ca = "{d / "ca.pem"}"',
        f'tls_cert = "{d / "flightd.pem"}"',
        f'tls_key = "{d / "flightd.key"}"',
        "",
    ])


def bridge_tls_lines(files: TlsFiles) -> list[str]:
    """Lines for a ``connection`` block of the onboard broker (after :func:`hil.link.bridge.bridge_config`'s):
    TLS to the ground broker's space listener, presenting ``files`` (:meth:`Pki.bridge`), verifying
    the broker's name and chain (``bridge_insecure`` stays false)."""
    if files.cert is None or files.key is None:
        raise PkiError("a bridge needs its identity's certificate and key")
    return [
        f"bridge_cafile {files.ca}",
        f"bridge_certfile {files.cert}",
        f"bridge_keyfile {files.key}",
        "bridge_tls_version tlsv1.2",
        "bridge_insecure false",
    ]


def revoke_identity(out: Path, certificate: Path) -> str:
    """Revoke the identity whose certificate is ``certificate``: its serial joins its CA's CRL, in
    ``out/ca`` and ``out/broker`` (Mosquitto reads the CRL when it starts). Returns the identity's CN."""
    cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    for stem in ("space-ca", "ground-ca"):
        authority = Authority.load(out / "ca", stem)
        if authority.issued(cert):
            if cert.serial_number not in authority.revoked:
                authority.revoked.append(cert.serial_number)
            crl = authority.crl().public_bytes(serialization.Encoding.PEM)
            _write(out / "ca" / f"{stem}.crl", crl)
            _write(out / "broker" / f"{stem}.crl", crl)
            cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            return str(cn[0].value) if cn else "?"
    raise PkiError(f"{certificate} was not issued by this PKI's certificate authorities")
