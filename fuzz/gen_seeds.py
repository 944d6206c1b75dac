#!/usr/bin/env python3
"""Writes the seed inputs under fuzz/seeds/<target>/ (deterministic; the outputs are committed).

Run from anywhere: python3 fuzz/gen_seeds.py
"""
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def u8(n): return struct.pack(">B", n)
def u16(n): return struct.pack(">H", n)
def u24(n): return struct.pack(">I", n)[1:]
def vec8(b): return u8(len(b)) + b
def vec16(b): return u16(len(b)) + b


def ext(ty, data): return u16(ty) + vec16(data)


def client_hello(sni):
    """A TLS 1.3 ClientHello handshake message (RFC 8446 §4.1.2), as a browser-like client sends it."""
    exts = b""
    if sni is not None:
        host = sni.encode()
        exts += ext(0, vec16(u8(0) + vec16(host)))            # server_name
    exts += ext(10, vec16(u16(0x001d) + u16(0x0017)))          # supported_groups: x25519, secp256r1
    exts += ext(11, vec8(u8(0)))                               # ec_point_formats
    exts += ext(13, vec16(b"".join(u16(s) for s in (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501))))
    exts += ext(16, vec16(vec8(b"h2") + vec8(b"http/1.1")))    # ALPN
    exts += ext(43, vec8(u16(0x0304) + u16(0x0303)))           # supported_versions
    exts += ext(45, vec8(u8(1)))                               # psk_key_exchange_modes: psk_dhe_ke
    exts += ext(51, vec16(u16(0x001d) + vec16(bytes(range(32)))))  # key_share: x25519
    body = (
        u16(0x0303)                                            # legacy_version
        + bytes((7 * i + 3) & 0xFF for i in range(32))         # random
        + vec8(bytes(range(0x40, 0x60)))                       # legacy_session_id (32 bytes)
        + vec16(u16(0x1301) + u16(0x1302) + u16(0x1303) + u16(0xC02F))
        + vec8(u8(0))                                          # legacy_compression_methods: null
        + vec16(exts)
    )
    return u8(1) + u24(len(body)) + body


def records(msg, sizes=None):
    """Wraps a handshake message in TLS records, split at the given fragment sizes."""
    out, rest = b"", msg
    for n in (sizes or []) + [len(msg)]:
        frag, rest = rest[:n], rest[n:]
        if frag:
            out += u8(22) + u16(0x0301) + vec16(frag)
    return out


def openssl_client_hello(sni):
    """The ClientHello the local OpenSSL sends (via Python's ssl; random/key share differ per run)."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def field(tag, value): return u8(tag) + vec16(value)


def stream_header(fields, trailer=b""):
    body = b"".join(field(t, v) for t, v in fields)
    return u8(1) + vec16(body) + trailer


def dns_name(name): return b"".join(vec8(l.encode()) for l in name.split(".") if l) + b"\0"


def dns_query(qid, name, qtype, edns=None, flags=0x0100):
    """A DNS query (RFC 1035 §4.1), with an OPT record (RFC 6891) when edns is a payload size."""
    header = u16(qid) + u16(flags) + u16(1) + u16(0) + u16(0) + u16(1 if edns else 0)
    opt = b"\0" + u16(41) + u16(edns) + struct.pack(">I", 0) + u16(0) if edns else b""
    return header + dns_name(name) + u16(qtype) + u16(1) + opt


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    sni = "payments.prod.svc.clusterset.local"
    ch = client_hello(sni)
    write("sni", "tls13-client-hello", records(ch))
    write("sni", "tls13-client-hello-split", records(ch, [4, 60]))   # across three records
    write("sni", "tls13-no-sni", records(client_hello(None)))
    write("sni", "openssl-client-hello", openssl_client_hello(sni))

    write("http_head", "get-host", b"GET / HTTP/1.1\r\nHost: api.prod\r\n\r\n")
    write("http_head", "absolute-form", b"GET http://user@payments.prod:8080/x?y HTTP/1.1\r\nHost: other.prod\r\nAccept: */*\r\n\r\nBODY")
    write("http_head", "post-headers", b"POST /v1/charge HTTP/1.1\r\nHost: Payments.Prod.svc.clusterset.local.:443\r\n"
          b"Content-Length: 4\r\nUser-Agent: curl/8\r\n\r\nabcd")

    base = [(1, b"prod"), (2, b"payments"), (3, u16(8443)), (4, b"aws-1")]
    trace = [(5, b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), (6, b"x=y")]
    write("stream_header", "minimal", stream_header(base))
    write("stream_header", "with-trace-and-payload", stream_header(base + trace, b"GET / HTTP/1.1\r\n"))
    write("stream_header", "unknown-optional-field", stream_header([(0x10, b"future")] + base))

    clusters = (b'[[clusters]]\nid = "aws-1"\ncloud = "aws"\nregion = "us-east-1"\n'
                b'[[clusters]]\nid = "gcp-1"\ncloud = "gcp"\nregion = "europe-west1"\n')
    service = (b'[[services]]\nnamespace = "prod"\nname = "payments"\n[[services.exports]]\ncluster = "aws-1"\n'
               b'[[services.exports.ports]]\nport = 8443\nprotocol = "tls"\nendpoints = ["10.0.1.5:8443", "[fd00::5]:8443"]\n')
    write("catalog_file", "two-clusters-one-service.toml", clusters + service)
    write("catalog_file", "empty.toml", b"")
    write("catalog_file", "one-service.json", b'{"clusters": [{"id": "gcp-1", "cloud": "gcp", "region": "europe-west1"}], '
          b'"services": [{"namespace": "prod", "name": "web", "exports": [{"cluster": "gcp-1", '
          b'"ports": [{"port": 80, "protocol": "http", "endpoints": ["10.1.0.7:8080"]}]}]}]}')

    write("policy_body", "weights", b'{"weights": {"aws-1": 70, "gcp-1": 30}}')
    write("policy_body", "failover-avoid-allow", b'{"failover": ["aws-1", "gcp-1"], "avoid": ["azure-1"], "allow": ["aws-1"]}')
    write("policy_body", "empty", b"{}")

    write("dns_request", "a", dns_query(1, "payments.prod.svc.clusterset.local", 1))
    write("dns_request", "aaaa-edns", dns_query(2, "Web.Prod.svc.clusterset.local", 28, edns=4096))
    write("dns_request", "srv", dns_query(3, "_tcp._tcp.db.prod.svc.clusterset.local", 33))
    write("dns_request", "nxdomain", dns_query(4, "typo.prod.svc.clusterset.local", 1))
    write("dns_request", "other-zone", dns_query(5, "example.com", 1))
    write("dns_request", "soa-apex", dns_query(6, "clusterset.local", 6))
    # A question name that is a compression pointer to itself.
    write("dns_request", "pointer-loop", u16(7) + u16(0x0100) + u16(1) + u16(0) * 3 + b"\xc0\x0c" + u16(1) + u16(1))


if __name__ == "__main__":
    main()
