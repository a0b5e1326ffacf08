"""A throw-away CA and a server certificate for ``localhost`` and ``127.0.0.1``.

Clients trust the CA through ``SSL_CERT_FILE`` / ``REQUESTS_CA_BUNDLE``; nothing turns TLS
verification off (README, settings). Python 3.13's ``VERIFY_X509_STRICT`` wants key
identifiers and a critical basicConstraints on the CA, so both are set.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .timeutil import utcnow


@dataclass(frozen=True)
class TlsMaterial:
    ca_pem_path: Path
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_path), str(self.key_path))
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "memsync cloudsim"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)


def _load_ca(state_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    ca_path, key_path = state_dir / "ca.pem", state_dir / "ca.key"
    if not (ca_path.exists() and key_path.exists()):
        return None
    cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.not_valid_after_utc < utcnow() + timedelta(days=1):
        return None
    return cert, key


def generate_tls(state_dir: Path) -> TlsMaterial:
    """Ensure ``state_dir`` holds a CA (ca.pem + ca.key, reused when present so every simulator of
    a test session chains to one trusted CA) and write this process's server certificate."""
    state_dir.mkdir(parents=True, exist_ok=True)
    now = utcnow()
    loaded = _load_ca(state_dir)
    if loaded is not None:
        ca_cert, ca_key = loaded
        ca_name = ca_cert.subject
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    else:
        ca_cert, ca_key, ca_name, ca_ski = _new_ca(state_dir, now)
    return _server_material(state_dir, now, ca_cert, ca_key, ca_name, ca_ski)


def _new_ca(
    state_dir: Path, now: Any
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, x509.Name, x509.SubjectKeyIdentifier]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("memsync cloudsim CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # Key first: a reader that finds ca.pem can then always find its key.
    _write_atomic(
        state_dir / "ca.key",
        ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        0o600,
    )
    _write_atomic(state_dir / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
    return ca_cert, ca_key, ca_name, ca_ski


def _server_material(
    state_dir: Path,
    now: Any,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    ca_ski: x509.SubjectKeyIdentifier,
) -> TlsMaterial:
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(min(now + timedelta(days=29), ca_cert.not_valid_after_utc))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    # One server certificate per process: several simulators may share the state dir.
    cert_path = state_dir / f"server-{os.getpid()}.pem"
    key_path = state_dir / f"server-{os.getpid()}.key"
    _write_atomic(
        key_path,
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        0o600,
    )
    _write_atomic(cert_path, server_cert.public_bytes(serialization.Encoding.PEM))
    return TlsMaterial(ca_pem_path=state_dir / "ca.pem", cert_path=cert_path, key_path=key_path)
