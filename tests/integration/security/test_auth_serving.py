"""Serving securely: refusing to expose an open server, TLS, security headers, CORS, and a
clear error for a bad settings file."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from headwater.testing import ServerProcess, free_port


def serve(db: str, *args: str, env: dict[str, str] | None = None,
          timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headwater", "serve", db, *args],
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_open_server_refuses_non_loopback(demo_sqlite: str) -> None:
    done = serve(demo_sqlite, "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 2
    assert "Refusing to listen on a non-loopback address without authentication" in done.stderr
    assert "--insecure" in done.stderr
    # with --insecure it starts (and says it allows everything)
    with ServerProcess(demo_sqlite, args=("--host", "0.0.0.0", "--insecure")) as s:
        assert httpx.get(s.url + "/products?limit=1").status_code == 200


def test_bad_settings_file_is_a_clear_error(demo_sqlite: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[policy]]\nrole = "x"\ntable = "products"\nactions = ["select"]\n'
                   'rows = "price=between.1"\n')
    done = serve(demo_sqlite, "--config", str(bad))
    assert done.returncode == 2
    assert "policy[0]" in done.stderr and "operator" in done.stderr
    done = serve(demo_sqlite, "--config", str(tmp_path / "missing.toml"))
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_security_headers_and_cors(demo_sqlite: str, tmp_path: Path) -> None:
    config = tmp_path / "headwater.toml"
    config.write_text('[http]\ncors_origins = ["https://shop.example"]\n')
    with ServerProcess(demo_sqlite, args=("--config", str(config))) as s, \
            httpx.Client(base_url=s.url) as c:
        for path in ("/products?limit=1", "/nope", "/-/live", "/"):
            r = c.get(path)
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["x-frame-options"] == "DENY"
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
            assert r.headers["referrer-policy"] == "no-referrer"
            assert "strict-transport-security" not in r.headers  # plain HTTP
        pre = c.options("/products", headers={
            "Origin": "https://shop.example", "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, apikey, prefer"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://shop.example"
        assert "PATCH" in pre.headers["access-control-allow-methods"]
        r = c.get("/products?limit=1", headers={"Origin": "https://shop.example"})
        assert r.headers["access-control-allow-origin"] == "https://shop.example"
        assert "content-range" in r.headers["access-control-expose-headers"].lower()
        other = c.get("/products?limit=1", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        bad = c.options("/products", headers={"Origin": "https://evil.example",
                                              "Access-Control-Request-Method": "DELETE"})
        assert bad.status_code == 400


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls(demo_sqlite: str, tmp_path: Path) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "headwater", "serve", demo_sqlite, "--port", str(port),
         "--tls-cert", str(cert), "--tls-key", str(key)],
        env={**os.environ, "HEADWATER_LOG_LEVEL": "warning"}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"https://127.0.0.1:{port}/products?limit=1", verify=ctx)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()
        assert r.headers["strict-transport-security"].startswith("max-age=")
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/products", timeout=3).raise_for_status()
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
    done = serve(demo_sqlite, "--tls-cert", str(cert))
    assert done.returncode == 2 and "--tls-key" in done.stderr
