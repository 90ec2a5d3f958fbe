"""Long and deep paths: a 4,000-byte path and a 100-component path are decided exactly; a
path longer than the kernel can hand over fails closed and the event says why. A denial is a
file denial: EACCES."""

import os
import shutil

import pytest

from .harness import Loaded, governed_worker, tree

R = "/tmp/pk-long"
NAME = "n" * 200


def long_dir() -> str:
    # /tmp/pk-long + 20 * ("/" + 200 chars) = 4,032 bytes, then the file
    return R + "".join("/" + NAME for _ in range(20))


def deep_dir() -> str:
    return R + "/deep" + "/d" * 100


POLICY = f"""
policy longpaths {{
    subject exe "/nonexistent/longpaths"
    default allow
    deny file read "{R}/**/target"
    deny file write "{long_dir()}/other"
}}"""


@pytest.fixture(scope="module")
def pol():
    shutil.rmtree(R, ignore_errors=True)
    os.makedirs(long_dir())
    os.makedirs(deep_dir())
    for d in (long_dir(), deep_dir()):
        tree(d, {"target": "t\n", "other": "o\n"})
    with Loaded(POLICY, "long") as p:
        yield p


@pytest.fixture
def w(pol):
    yield from governed_worker(pol)


def test_4000_byte_path(pol, w):
    target = long_dir() + "/target"
    assert 3900 < len(target.encode()) < 4096
    assert w.op("read", target)["errno"] == "EACCES"
    assert w.op("read", long_dir() + "/other")["ok"]
    assert w.op("write", long_dir() + "/other")["errno"] == "EACCES"
    evs = pol.drain()
    assert [(e.op, e.path) for e in evs] == [("read", target), ("write", long_dir() + "/other")]
    assert evs[1].rule_id == pol.rule_id_of("deny file write")


def test_100_component_path(pol, w):
    target = deep_dir() + "/target"
    assert target.count("/") > 100
    assert w.op("read", target)["errno"] == "EACCES"
    assert w.op("read", deep_dir() + "/other")["ok"]
    (ev,) = pol.drain()
    assert ev.path == target and ev.reason == "rule"


def test_path_longer_than_the_kernel_hands_over_fails_closed(pol, w):
    # 25 levels of 200-char names under R/over: 5,000+ bytes, reachable only by dirfds
    base = R + "/over"
    os.makedirs(base, exist_ok=True)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(25):
        try:
            os.mkdir(NAME, dir_fd=fd)
        except FileExistsError:
            pass
        nfd = os.open(NAME, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
        f.write("x")
    os.close(fd)
    ans = w.op("deep-read", dir=base, name=NAME, depth=25, leaf="leaf")
    assert ans["errno"] == "EACCES", ans   # failed closed: still the file family's errno
    evs = pol.drain()
    assert any(e.reason == "path-too-long" and e.decision == "deny" and e.rule_id == 0 for e in evs), evs
