"""API keys and (mutual) TLS against real servers; certificates are made for the test."""

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bindery_client import BinderyError, Client, Item, PermissionDenied, Unauthenticated

READ_WRITE_KEY = "rw-key-0123456789abcdef"
READ_ONLY_KEY = "ro-key-0123456789abcdef"


def test_api_keys(start_server) -> None:
    server = start_server(env={"BINDERY_API_KEYS": f"{READ_WRITE_KEY} rw,{READ_ONLY_KEY} ro"})
    server.wait_listening()
    with Client(server.address, api_key=READ_WRITE_KEY, timeout=60) as writer:
        server.wait_serving(writer)
        assert len(writer.embed(["hello"])) == 1
        writer.collections.create("keyed")
        assert writer.collections.upsert("keyed", [Item("a", "hello")]).upserted == 1
    with Client(server.address, timeout=60) as anonymous:
        with pytest.raises(Unauthenticated):
            anonymous.embed(["hello"])
    with Client(server.address, api_key="not-a-configured-key-at-all", timeout=60) as stranger:
        with pytest.raises(Unauthenticated):
            stranger.list_models()
    with Client(server.address, api_key=READ_ONLY_KEY, timeout=60) as reader:
        assert reader.collections.search("keyed", "hello", top_k=1).ids == ["a"]
        with pytest.raises(PermissionDenied):
            reader.collections.upsert("keyed", [Item("b", "refused")])


def test_api_key_from_the_environment(start_server, monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_server(env={"BINDERY_API_KEYS": READ_WRITE_KEY})
    monkeypatch.setenv("BINDERY_API_KEY", READ_WRITE_KEY)
    with Client(server.address, timeout=60) as client:
        server.wait_serving(client)
        assert client.list_models()[0].dimension > 0


class Authority:
    """A throw-away certificate authority."""

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = (
            self._builder(self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def _builder(self, subject: x509.Name, public_key) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.timezone.utc)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def leaf(self, server: bool) -> tuple[bytes, bytes]:
        """A certificate (for localhost and 127.0.0.1 when `server`) and its key, as PEM."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost" if server else "client")])
        builder = self._builder(subject, key.public_key())
        if server:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def test_tls_and_mutual_tls(start_server, tmp_path: Path) -> None:
    authority = Authority("bindery test CA")
    client_authority = Authority("bindery test client CA")
    cert, key = authority.leaf(server=True)
    ca_path = _write(tmp_path, "ca.pem", authority.pem())
    server = start_server(
        [
            "--tls-cert", str(_write(tmp_path, "server.pem", cert)),
            "--tls-key", str(_write(tmp_path, "server.key", key)),
            "--tls-client-ca", str(_write(tmp_path, "client-ca.pem", client_authority.pem())),
        ]
    )  # fmt: skip
    client_cert, client_key = client_authority.leaf(server=False)
    with Client(
        f"https://{server.address}",
        root_certificates=ca_path,
        client_certificate=client_cert,
        client_key=client_key,
        timeout=60,
    ) as client:
        server.wait_serving(client)
        assert len(client.embed(["over tls"])) == 1
    # Bare host:port with a root certificate also means TLS; without a client certificate the
    # server refuses the connection.
    with Client(server.address, root_certificates=authority.pem(), timeout=10) as no_identity:
        with pytest.raises(BinderyError) as refused:
            no_identity.list_models()
        assert refused.value.code_name == "UNAVAILABLE"
    # A client trusting another CA refuses the server.
    with Client(
        server.address,
        root_certificates=client_authority.pem(),
        client_certificate=client_cert,
        client_key=client_key,
        timeout=10,
    ) as distrustful:
        with pytest.raises(BinderyError) as untrusted:
            distrustful.list_models()
        assert untrusted.value.code_name == "UNAVAILABLE"


def test_certificates_with_plaintext_are_refused() -> None:
    with pytest.raises(ValueError, match="TLS is off"):
        Client("http://127.0.0.1:1", root_certificates=b"pem")
