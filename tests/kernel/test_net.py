"""Network rules in a real kernel: connect, bind, UDP sendto without connect, IPv4-mapped
IPv6, AF_UNSPEC, ports and protocols, each denied with EACCES; allowed traffic still works
(loopback)."""

import socket
import threading

import pytest

from .harness import Loaded, governed_worker

POLICY = """
policy netpol {
    subject exe "/nonexistent/netpol"
    default allow
    deny  net connect any 169.254.169.254
    deny  net connect tcp 10.0.0.0/8 port 8000-8999
    deny  net connect udp 192.0.2.0/24
    deny  net connect fd00::/8
    deny  net bind tcp port 2222
    audit net connect tcp 127.0.0.1 port 9
}
"""


@pytest.fixture(scope="module")
def pol():
    with Loaded(POLICY, "net") as p:
        yield p


@pytest.fixture
def w(pol):
    yield from governed_worker(pol)


# a net denial fails with EACCES (policyc/abi.py DENY_ERRNO_BY_FAMILY); an allowed operation
# gets neither errno (ECONNREFUSED, a timeout, no route: the network's answer)
DENIED = ("EACCES", "EPERM")


def ev_for(pol, addr, port):
    evs = [e for e in pol.drain() if e.family == "net"]
    return [e for e in evs if e.addr == addr and e.port == port]


def test_connect_denied_any_protocol(pol, w):
    assert w.op("connect", addr="169.254.169.254", port=80, proto="tcp")["errno"] == "EACCES"
    (ev,) = ev_for(pol, "169.254.169.254", 80)
    assert ev.decision == "deny" and ev.proto == "tcp" and ev.op == "connect"
    assert ev.rule_id == pol.rule_id_of("169.254.169.254")
    assert w.op("connect", addr="169.254.169.254", port=53, proto="udp")["errno"] == "EACCES"


def test_ports_and_protocols(pol, w):
    assert w.op("connect", addr="10.1.2.3", port=8080, proto="tcp")["errno"] == "EACCES"
    other_port = w.op("connect", addr="10.1.2.3", port=9000, proto="tcp")
    assert other_port["errno"] not in DENIED, other_port
    udp = w.op("connect", addr="10.1.2.3", port=8080, proto="udp")
    assert udp["errno"] not in DENIED, udp


def test_unconnected_udp_sendto(pol, w):
    assert w.op("sendto", addr="192.0.2.7", port=53, proto="udp")["errno"] == "EACCES"
    (ev,) = ev_for(pol, "192.0.2.7", 53)
    assert ev.hook == "socket_sendmsg"


def test_ipv4_mapped_ipv6(pol, w):
    assert w.op("connect", addr="::ffff:169.254.169.254", port=80, proto="tcp")["errno"] == "EACCES"
    (ev,) = ev_for(pol, "169.254.169.254", 80)
    assert ev.rule_id == pol.rule_id_of("169.254.169.254")
    assert w.op("sendto", addr="::ffff:192.0.2.1", port=53, proto="udp")["errno"] == "EACCES"


def test_ipv6_prefix(pol, w):
    assert w.op("connect", addr="fd00::1", port=443, proto="tcp")["errno"] == "EACCES"
    assert w.op("connect", addr="fe80::1", port=443, proto="tcp")["errno"] not in DENIED


def test_bind_port(pol, w):
    assert w.op("bind", addr="127.0.0.1", port=2222, proto="tcp")["errno"] == "EACCES"
    assert w.op("bind", addr="127.0.0.1", port=2223, proto="tcp")["ok"]


def test_allowed_loopback_traffic_works_and_audit_logs(pol, w):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    t = threading.Thread(target=lambda: srv.accept()[0].close())
    t.start()
    ans = w.op("connect", addr="127.0.0.1", port=port, proto="tcp")
    t.join(5)
    srv.close()
    assert ans["ok"], ans
    assert ev_for(pol, "127.0.0.1", port) == []
    ans = w.op("connect", addr="127.0.0.1", port=9, proto="tcp")
    assert ans["errno"] not in DENIED  # ECONNREFUSED: allowed, and audited
    (ev,) = ev_for(pol, "127.0.0.1", 9)
    assert ev.decision == "audit"


def test_connect_af_unspec_disconnects(pol):
    code = ("import socket,ctypes; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.connect(('127.0.0.1', 5353)); "
            "libc=ctypes.CDLL(None, use_errno=True); "
            "buf=(ctypes.c_ubyte*16)(); "
            "r=libc.connect(s.fileno(), buf, 16); print('rc', r, ctypes.get_errno())")
    res = pol.run(["python3", "-c", code])
    assert "rc 0" in res.stdout, res.stdout + res.stderr
