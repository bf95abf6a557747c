"""A real HTTPS tool server on loopback, with a throwaway CA the tool runner is told to trust."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Names the server certificate is valid for; tests point other names at loopback to prove TLS is checked.
CERT_DNS_NAMES = ("localhost", "tool.example")
CERT_IPS = ("127.0.0.1",)


@dataclass(frozen=True)
class TlsFiles:
    ca_bundle: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    now = datetime.datetime.now(datetime.UTC)
    valid = {
        "not_valid_before": now - datetime.timedelta(hours=1),
        "not_valid_after": now + datetime.timedelta(days=1),
    }

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder(**valid)
        .subject_name(_name("voiceops test CA"))
        .issuer_name(_name("voiceops test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in CERT_DNS_NAMES]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in CERT_IPS]
    cert = (
        x509.CertificateBuilder(**valid)
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    folder = tmp_path_factory.mktemp("tls")
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca_bundle.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ToolServer:
    port: int
    requests: list[RecordedRequest] = field(default_factory=list)
    slow_seconds: float = 3.0

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"


def _handler_for(server_state: ToolServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """Answers by path; every request is recorded first."""

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(
            self,
            status: int,
            body: bytes,
            content_type: str,
            *,
            length: bool = True,
            extra: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if length:
                self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            server_state.requests.append(RecordedRequest("POST", self.path, dict(self.headers.items()), body))
            path = self.path.split("?", 1)[0]
            if path == "/echo":
                payload = {"received": json.loads(body), "greeting": "héllo"}
                self._send(200, json.dumps(payload).encode(), "application/json; charset=utf-8")
            elif path == "/text":
                self._send(200, b"a" * 10_000, "text/plain")
            elif path == "/empty":
                self.send_response(204)
                self.end_headers()
            elif path == "/slow":
                time.sleep(server_state.slow_seconds)
                self._send(200, b"{}", "application/json")
            elif path == "/big":
                self._send(200, b'"' + b"x" * (70 * 1024) + b'"', "application/json")
            elif path == "/big-unsized":  # no Content-Length: the reader's own cap must stop it
                self._send(200, b'"' + b"x" * (70 * 1024) + b'"', "application/json", length=False)
            elif path == "/endless":  # never ends: only a reader that stops at the cap returns in time
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                try:
                    while True:
                        self.wfile.write(b"x" * 8192)
                except OSError:
                    pass  # the client hung up, as it should
            elif path == "/fail":
                self._send(500, b'{"detail": "db at 10.0.0.7 down"}', "application/json")
            elif path == "/redirect":
                self._send(
                    302, b"", "text/plain", extra={"Location": "https://169.254.169.254/latest/meta-data/"}
                )
            else:
                self._send(404, b"not found", "text/plain")

    return Handler


@pytest.fixture
def tool_server(tls_files: TlsFiles) -> Iterator[ToolServer]:
    state = ToolServer(port=0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    state.port = httpd.server_address[1]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files.cert, tls_files.key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def tool_settings(settings, tls_files: TlsFiles):
    settings.TOOL_CA_BUNDLE = str(tls_files.ca_bundle)
    settings.TOOL_ALLOWED_PRIVATE_HOSTS = ["localhost", "127.0.0.1"]
    return settings
