"""Transport security: TLS and mutual TLS for every listener and every channel, and the
development certificates `fanline certs DIR` makes.

With FANLINE_TLS_CERT and FANLINE_TLS_KEY set, every server listens with TLS, and every channel
one Fanline process opens to another uses TLS. With FANLINE_TLS_CA set too, it is mutual:
servers require a client certificate issued by that CA, and clients trust only servers whose
certificate it issued. Health is then also served in plain text on FANLINE_HEALTH_PORT (if
set), because Kubernetes' gRPC probes cannot speak TLS; that port answers health only.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

# Names the development certificate is valid for: local runs and the Kubernetes Services.
DEV_NAMES = ("localhost", "post", "fanout", "timeline", "fanout-worker")
DEV_IPS = ("127.0.0.1", "::1")
DEV_DAYS = 90


@dataclass(frozen=True)
class TlsFiles:
    cert: bytes
    key: bytes
    ca: bytes | None

    @classmethod
    def read(cls, cert: str, key: str, ca: str) -> TlsFiles | None:
        """None when TLS is off (no certificate); ValueError naming what is wrong otherwise."""
        if not cert and not key:
            if ca:
                raise ValueError("FANLINE_TLS_CA needs FANLINE_TLS_CERT and FANLINE_TLS_KEY")
            return None
        if not cert or not key:
            raise ValueError("FANLINE_TLS_CERT and FANLINE_TLS_KEY go together")
        return cls(_read(cert, "FANLINE_TLS_CERT"), _read(key, "FANLINE_TLS_KEY"),
                   _read(ca, "FANLINE_TLS_CA") if ca else None)

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca,
                                           require_client_auth=self.ca is not None)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        # With a CA: trust only it, and present our certificate (mutual TLS). Without: the
        # system's roots, and no client certificate.
        if self.ca is None:
            return grpc.ssl_channel_credentials()
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)


def _read(path: str, setting: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"{setting}: {path} is not a PEM file")
    return data


def make_dev_certs(directory: Path, names: Sequence[str] = DEV_NAMES,
                   ips: Sequence[str] = DEV_IPS, days: int = DEV_DAYS) -> dict[str, Path]:
    """A development CA and one certificate (server and client use) signed by it, as PEM files:
    ca.crt, tls.crt, tls.key (the names a Kubernetes TLS Secret uses). Never for production."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fanline development CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fanline")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = {"ca.crt": ca.public_bytes(serialization.Encoding.PEM),
             "tls.crt": cert.public_bytes(serialization.Encoding.PEM),
             "tls.key": key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())}
    paths = {}
    for name, data in files.items():
        path = directory / name
        path.write_bytes(data)
        if name.endswith(".key"):
            path.chmod(0o600)
        paths[name] = path
    return paths
