"""Certificates made at test time: a CA, the broker's certificate (for 127.0.0.1 and
localhost) and clients' certificates, written as PEM and PKCS12 files."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

PASSWORD = "test-secret"


@dataclass
class Issued:
    cert: Path  # PEM certificate
    key: Path  # PEM private key, unencrypted
    p12: Path  # PKCS12 with key and certificate, PASSWORD
    subject: str  # RFC 4514 subject


def _name(cn: str, ou: Optional[str] = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "US"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fastlog tests")]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


class CertificateAuthority:
    def __init__(self, directory: Path, name: str = "fastlog test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = _name(name)
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = directory / f"{name.replace(' ', '-')}.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.p12 = directory / f"{name.replace(' ', '-')}-trust.p12"
        self.p12.write_bytes(pkcs12.serialize_java_truststore([pkcs12.PKCS12Certificate(self.cert, b"ca")], serialization.BestAvailableEncryption(PASSWORD.encode())))

    def issue(self, cn: str, ou: Optional[str] = None, server: bool = False, days: int = 30) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder().subject_name(_name(cn, ou)).issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
        cert = builder.sign(self.key, hashes.SHA256())
        stem = self.directory / cn.replace(" ", "-")
        cert_path, key_path, p12_path = stem.with_suffix(".crt"), stem.with_suffix(".key"), stem.with_suffix(".p12")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + self.cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        p12_path.write_bytes(pkcs12.serialize_key_and_certificates(cn.encode(), key, cert, [self.cert], serialization.BestAvailableEncryption(PASSWORD.encode())))
        return Issued(cert_path, key_path, p12_path, cert.subject.rfc4514_string())
