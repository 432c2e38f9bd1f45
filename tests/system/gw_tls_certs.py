"""Test PKI made at test time with the openssl CLI: a CA, server
certificates for 127.0.0.1 and client certificates (CN = device name)."""
import subprocess


def _run(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class Pki:
    def __init__(self, directory, ca_name="gw-test-ca"):
        self.dir = directory
        self.ca_cert = str(directory / f"{ca_name}.pem")
        self.ca_key = str(directory / f"{ca_name}.key")
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "2", "-subj",
             f"/CN={ca_name}", cwd=directory)

    def issue(self, name, cn, server=False):
        """Sign a new key + certificate; returns (cert_path, key_path)."""
        key = str(self.dir / f"{name}.key")
        csr = str(self.dir / f"{name}.csr")
        cert = str(self.dir / f"{name}.pem")
        ext = self.dir / f"{name}.ext"
        if server:
            ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                           "extendedKeyUsage=serverAuth\n")
        else:
            ext.write_text("extendedKeyUsage=clientAuth\n")
        _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", f"/CN={cn}", cwd=self.dir)
        _run("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
             "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", str(ext), cwd=self.dir)
        return cert, key

    def crl(self, revoked=(), out="crl.pem", next_update=None):
        """A CRL of this CA listing the given certificate files (openssl
        ca); next_update "YYMMDDHHMMSSZ" sets nextUpdate (a past one makes
        an expired CRL), default one day. Returns its path."""
        d = self.dir / ("ca-db-" + self.ca_cert.rsplit("/", 1)[-1])
        d.mkdir(exist_ok=True)
        (d / "index.txt").write_text("")
        (d / "crlnumber").write_text("1000\n")
        cnf = d / "ca.cnf"
        cnf.write_text("[ca]\ndefault_ca = d\n[d]\n"
                       f"database = {d}/index.txt\ncrlnumber = {d}/crlnumber\n"
                       "default_md = sha256\ndefault_crl_days = 1\n")
        base = ["ca", "-config", str(cnf), "-keyfile", self.ca_key, "-cert", self.ca_cert]
        for cert in revoked:
            _run(*base, "-revoke", cert, cwd=self.dir)
        path = str(self.dir / out)
        extra = []
        if next_update:
            extra = ["-crl_lastupdate", "200101000000Z", "-crl_nextupdate", next_update]
        _run(*base, "-gencrl", "-out", path, *extra, cwd=self.dir)
        return path


import socket  # noqa: E402
import ssl  # noqa: E402

import gw_mqtt_raw  # noqa: E402


def client_context(ca_cert, cert=None, key=None):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_cert)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


class TlsRawClient(gw_mqtt_raw.RawClient):
    """gw_mqtt_raw.RawClient over TLS (handshake in the constructor). A TLS
    alert from the server reads as Closed, like an EOF."""

    def __init__(self, port, ctx, timeout=5.0):  # noqa: super().__init__ not called on purpose
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        self.buf = b""

    def _fill(self, n, deadline):
        try:
            super()._fill(n, deadline)
        except (ssl.SSLError, ssl.SSLEOFError, BrokenPipeError) as e:
            raise gw_mqtt_raw.Closed() from e

    def send(self, data):
        try:
            self.sock.sendall(data)
        except (ssl.SSLError, BrokenPipeError, ConnectionResetError) as e:
            raise gw_mqtt_raw.Closed() from e

    def peer_cn(self):
        subj = dict(x[0] for x in self.sock.getpeercert()["subject"])
        return subj["commonName"]
