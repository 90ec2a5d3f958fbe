"""NAME.maps, the maps' bytes beside the manifest (policyc/mapsfile.py, #12, #11): what a load
reads back is what the code generator made; index arrays store no keys; manifests of format 1
(hex `data`) still load; a changed or missing file is a clear error; the output is
deterministic; `policyc inspect` shows the manifest with its maps as format 1 had them;
`install` and `load --sync` carry the file along (the unchanged-build short cut's cases are
in tests/unit/test_build_unchanged.py: "maps changed", "maps removed")."""

from __future__ import annotations

import io
import json
import lzma
import shutil
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policyc import codegen, deploy, mapsfile, runtime
from policyc.cli.build import compile_program
from policyc.cli.inspect_cmd import run_inspect
from policyc.cli.main import app

from _policyc_helpers import POLICIES

PACK = mapsfile.pack   # the writer itself (tests below wrap it)

# an exec transition (a hash map: keys stored), net prefixes (an LPM trie: keys stored), a
# `to cgroup` target (a cgroup fixup), owner rules, and enough path rules for the DFA tables
# to pass deploy.PACKED_MIN (so they go to the runtime packed)
MIXED = ('policy mixed {\n    subject exe "/usr/bin/mixed"\n    default deny\n'
         '    allow exec "/usr/bin/child" as policy other\n'
         '    allow net connect tcp 10.1.0.0/16 port 443\n'
         '    allow signal to cgroup "/system.slice/jobs.slice"\n'
         + "".join(f'    allow file read "/srv/m{i}/f{i}.conf"\n' for i in range(60))
         + '}\n'
         'policy other {\n    subject exe "/usr/bin/child"\n    default allow\n'
         '    deny file write "/etc/**"\n}\n')


def build(srcs: list[Path], out: Path, capture: dict | None = None, monkeypatch=None) -> None:
    """`policyc build SRCS -o OUT`; with CAPTURE, the sha256 of each maps file written ->
    {map name: MapData} the code generator handed to the writer for it."""
    if capture is not None:
        real = mapsfile.pack

        def pack(maps, rules=b"[]"):
            out = real(maps, rules)
            capture[mapsfile.sha256_of(out[0])] = maps
            return out
        monkeypatch.setattr(mapsfile, "pack", pack)
    err = io.StringIO()
    code, _ = compile_program([str(s) for s in srcs], out, None, False, io.StringIO(), err, quiet=True)
    assert code == 0, err.getvalue()


@pytest.fixture
def mixed(tmp_path):
    src = tmp_path / "mixed.policy"
    src.write_text(MIXED)
    return src


def manifests(out: Path) -> dict[str, Path]:
    return {p.name.removesuffix(".manifest.json"): p for p in sorted(out.glob("*.manifest.json"))}


# ---- what a load reads back ----------------------------------------------------------------------

@pytest.mark.parametrize("packed_min", [deploy.PACKED_MIN, 0, 1 << 30])
def test_a_load_fills_the_maps_with_what_the_code_generator_made(tmp_path, mixed, monkeypatch, packed_min):
    made: dict = {}
    build([mixed, POLICIES / "nginx.policy", POLICIES / "ci-runner.policy"], tmp_path / "out", made, monkeypatch)
    monkeypatch.setattr(deploy, "PACKED_MIN", packed_min)
    monkeypatch.setattr(deploy, "cgroup_id", lambda path: 0x0102030405060708)
    by_name = made   # the policy whose maps these are: the manifest whose maps_sha256 is of these bytes
    assert len(by_name) == len(made) == len(manifests(tmp_path / "out")) == 4
    packed_seen = stored_seen = fixed = 0
    for name, path in manifests(tmp_path / "out").items():
        m = deploy.read_manifest(path)
        assert m["format"] == codegen.MANIFEST_FORMAT == 3 and m["maps_file"] == f"{name}.maps"
        gen = by_name[m["maps_sha256"]]
        fills = deploy.map_fills(m, directory=path.parent)
        fixups = {(f["map"], f["index"]): f["offset"] for f in m["cgroup_fixups"]}
        for mname, data in gen.items():
            fill = fills[mname]
            assert fill.max_entries == data.max_entries
            packed_seen += fill.packed is not None
            stored_seen += m["maps"][mname]["keys"] == "stored" and bool(data.entries)
            want = list(data.entries)
            for i, (k, v) in enumerate(want):
                off = fixups.get((mname, i))
                if off is not None:   # the cgroup's id, made where the policy is loaded
                    want[i] = (k, v[:off] + struct.pack("<Q", 0x0102030405060708) + v[off + 8:])
                    fixed += 1
            assert fill.pairs() == want, (name, mname)
            if fill.packed is not None:
                assert not fill.entries and fill.packed[0] == len(want)
        # the same pairs through the one reader tools use
        entries = deploy.map_entries(m, path.parent)
        assert {k: v for k, v in entries.items()} == {k: list(v.entries) for k, v in gen.items()}
    assert stored_seen >= 3 and fixed >= 3
    assert (packed_seen > 0) == (packed_min < 1 << 30)


def test_index_arrays_store_their_values_only_and_other_maps_their_pairs(tmp_path, mixed):
    build([mixed], tmp_path / "out")
    m = deploy.read_manifest(tmp_path / "out" / "mixed.manifest.json")
    blob = (tmp_path / "out" / "mixed.maps").read_bytes()
    magic, fmt, comp, length = mapsfile.HEADER.unpack_from(blob)
    assert (magic, fmt, comp) == (b"PCMAPS\r\n", 1, mapsfile.XZ)
    payload = lzma.decompress(blob[mapsfile.HEADER.size:])
    assert len(payload) == length
    offset = 0
    for name in sorted(m["maps"]):   # the manifest's order, one after the other
        spec = m["maps"][name]
        assert spec["offset"] == offset and "data" not in spec
        if spec["type"] == "array":
            assert spec["keys"] == "index"
            assert spec["length"] == spec["count"] * spec["value_size"]
        else:
            assert spec["keys"] == "stored"
            assert spec["length"] == spec["count"] * (spec["key_size"] + spec["value_size"])
        offset += spec["length"]
    # then the rule list, as JSON, where the manifest says
    at = json.loads((tmp_path / "out" / "mixed.manifest.json").read_text())["rules_at"]
    assert at["offset"] == offset and offset + at["length"] == length
    assert json.loads(payload[offset:]) == m["rules"] and at["count"] == len(m["rules"]) > 3
    assert m["maps"]["dfa_states"]["count"] > 60
    assert m["maps"]["exec_transitions"]["count"] == 1 and m["maps"]["net_prefixes"]["count"] >= 1


def test_an_array_whose_keys_are_not_0_to_n_keeps_them():
    from policyc.codegen.tables import MapData
    k = struct.Struct("<I").pack
    gap = MapData("array", 4, 2, 8, ((k(0), b"aa"), (k(2), b"bb")))
    order = MapData("array", 4, 2, 8, ((k(1), b"aa"), (k(0), b"bb")))
    dense = MapData("array", 4, 2, 8, ((k(0), b"aa"), (k(1), b"bb")))
    blob, specs, _ = mapsfile.pack({"gap": gap, "order": order, "dense": dense})
    assert {n: s["keys"] for n, s in specs.items()} == {"dense": "index", "gap": "stored", "order": "stored"}
    payload = mapsfile.unpack(blob)
    for name, data in (("gap", gap), ("order", order), ("dense", dense)):
        assert mapsfile.entries(specs[name], payload) == list(data.entries)
    assert mapsfile.index_keys(3) == k(0) + k(1) + k(2)


# ---- manifests of format 1 -------------------------------------------------------------------------

def test_a_manifest_of_format_1_with_hex_data_still_loads(tmp_path, mixed, monkeypatch):
    build([mixed], tmp_path / "out")
    new = tmp_path / "out" / "mixed.manifest.json"
    m = deploy.read_manifest(new)
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    old = mapsfile.as_format1(m, new.parent)
    assert old["format"] == 1 and "maps_file" not in old and all("data" in s for s in old["maps"].values())
    (old_dir / "mixed.manifest.json").write_text(json.dumps(old))
    shutil.copy(new.parent / "mixed.bpf.o", old_dir / "mixed.bpf.o")   # and no NAME.maps
    monkeypatch.setattr(deploy, "cgroup_id", lambda path: 7)
    back = deploy.read_manifest(old_dir / "mixed.manifest.json")
    want = {n: f.pairs() for n, f in deploy.map_fills(m, directory=new.parent).items()}
    assert {n: f.pairs() for n, f in deploy.map_fills(back, directory=old_dir).items()} == want
    assert {n: f.pairs() for n, f in deploy.map_fills(back).items()} == want   # format 1 needs no directory
    # `inspect` shows the old manifest as it is
    out, err = io.StringIO(), io.StringIO()
    assert run_inspect([str(old_dir / "mixed.manifest.json")], True, out, err) == 0, err.getvalue()
    assert json.loads(out.getvalue()) == back


# ---- a maps file that is not the manifest's -----------------------------------------------------

@pytest.mark.parametrize("damage", ["missing", "one byte changed", "another build's", "truncated"])
def test_a_changed_or_missing_maps_file_is_a_clear_error(tmp_path, mixed, damage):
    build([mixed], tmp_path / "out")
    out = tmp_path / "out"
    maps = out / "mixed.maps"
    if damage == "missing":
        maps.unlink()
    elif damage == "one byte changed":
        blob = bytearray(maps.read_bytes())
        blob[-3] ^= 0x40
        maps.write_bytes(bytes(blob))
    elif damage == "another build's":
        shutil.copy(out / "other.maps", maps)
    elif damage == "truncated":
        maps.write_bytes(maps.read_bytes()[:10])
    # the manifest's one reader needs the file too (the rules are in it), and so do the fills
    m = json.loads((out / "mixed.manifest.json").read_text())
    for read in (lambda: deploy.read_manifest(out / "mixed.manifest.json"), lambda: deploy.map_fills(m, directory=out)):
        with pytest.raises(deploy.DeployError) as e:
            read()
        assert str(maps) in e.value.message
        assert ("cannot read" in e.value.message) == (damage == "missing")
        assert damage == "missing" or "maps_sha256" in e.value.message
        assert "policyc build" in e.value.hint
    with pytest.raises(deploy.DeployError, match="no build directory"):
        deploy.map_fills(m)
    # `policyc load` says so before touching the kernel (exit 2, one message naming the file)
    r = CliRunner().invoke(app, ["inspect", str(out / "mixed.manifest.json")])
    assert r.exit_code == 2 and str(maps) in r.output and "Traceback" not in r.output, r.output
    r = CliRunner().invoke(app, ["inspect", "--no-maps", str(out / "mixed.manifest.json")])
    shown = json.loads(r.stdout)
    assert r.exit_code == 0 and "data" not in shown["maps"]["verdicts"] and "rules" not in shown
    assert "rules_at" in shown and "rules of" in r.stderr and str(maps) in r.stderr


def test_a_load_checks_the_maps_file_before_the_kernel(tmp_path, mixed, monkeypatch):
    build([mixed], tmp_path / "out")
    (tmp_path / "out" / "mixed.maps").unlink()
    monkeypatch.setattr(deploy.runtime, "load", lambda *a, **k: pytest.fail("the kernel was asked"))
    with pytest.raises(deploy.DeployError, match=r"mixed\.maps"):
        deploy.load_manifest(tmp_path / "out" / "mixed.manifest.json")


def test_a_damaged_payload_is_named():
    blob, _, _ = mapsfile.pack({})
    with pytest.raises(mapsfile.MapsFileError, match="not a policyc maps file"):
        mapsfile.unpack(b"GARBAGE!" + blob[8:], "x.maps")
    with pytest.raises(mapsfile.MapsFileError, match="format 9"):
        mapsfile.unpack(mapsfile.HEADER.pack(mapsfile.MAGIC, 9, 0, 0), "x.maps")
    with pytest.raises(mapsfile.MapsFileError, match="damaged"):
        mapsfile.unpack(mapsfile.HEADER.pack(mapsfile.MAGIC, 1, 0, 5) + b"abc", "x.maps")
    with pytest.raises(mapsfile.MapsFileError, match="damaged"):
        mapsfile.unpack(mapsfile.HEADER.pack(mapsfile.MAGIC, 1, 1, 5) + b"not zlib", "x.maps")
    assert mapsfile.unpack(mapsfile.HEADER.pack(mapsfile.MAGIC, 1, 0, 3) + b"abc") == b"abc"


# ---- determinism ------------------------------------------------------------------------------------

def test_the_same_input_gives_the_same_bytes(tmp_path, mixed):
    build([mixed], tmp_path / "a")
    build([mixed], tmp_path / "b")
    a = {p.name: p.read_bytes() for p in sorted((tmp_path / "a").iterdir())}
    b = {p.name: p.read_bytes() for p in sorted((tmp_path / "b").iterdir())}
    assert sorted(a) == ["mixed.bpf.o", "mixed.manifest.json", "mixed.maps",
                         "other.bpf.o", "other.manifest.json", "other.maps"]
    assert a == b
    m = json.loads(a["mixed.manifest.json"])
    assert m["maps_sha256"] == "sha256:" + __import__("hashlib").sha256(a["mixed.maps"]).hexdigest()


# ---- policyc inspect ---------------------------------------------------------------------------------

def test_inspect_shows_the_manifest_with_its_maps_as_format_1_had_them(tmp_path, mixed, monkeypatch):
    made: dict = {}
    build([mixed], tmp_path / "out", made, monkeypatch)
    path = tmp_path / "out" / "mixed.manifest.json"
    r = CliRunner().invoke(app, ["inspect", str(path)])
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output)
    assert r.output.startswith("{\n  \"") and list(shown) == sorted(shown)   # indented, keys sorted
    m = json.loads(path.read_text())
    assert {k: v for k, v in shown.items() if k not in ("maps", "rules")} == {k: v for k, v in m.items() if k != "maps"}
    assert shown["rules"] == deploy.read_manifest(path)["rules"] and len(shown["rules"]) == m["rules_at"]["count"]
    gen = next(maps for maps in made.values() if "exec_transitions" in maps and maps["exec_transitions"].entries)
    for name, spec in shown["maps"].items():
        assert spec["data"] == gen[name].to_json()["data"], name   # the hex format 1 wrote
        assert {k: v for k, v in spec.items() if k != "data"} == m["maps"][name]
    # a directory, DIR/NAME and --no-maps
    r = CliRunner().invoke(app, ["inspect", str(tmp_path / "out")])
    docs = [json.loads(d) for d in r.output.replace("}\n{", "}\n\x00{").split("\x00")]
    assert r.exit_code == 0 and [d["policy"] for d in docs] == ["mixed", "other"]
    r = CliRunner().invoke(app, ["inspect", "--no-maps", str(tmp_path / "out" / "mixed")])
    assert r.exit_code == 0 and json.loads(r.output)["maps"] == m["maps"]
    assert json.loads(r.output)["rules"] == shown["rules"]


@pytest.mark.parametrize("arg, message", [
    ("nosuch", "`nosuch` is not a build directory, a manifest or a built policy's name"),
    ("{tmp}/empty", "no `*.manifest.json` in"),
    ("{tmp}/bad.manifest.json", "cannot read manifest"),
    ("{tmp}/other.manifest.json", "is not a policyc manifest"),
])
def test_inspect_of_bad_input_exits_2_naming_it(tmp_path, monkeypatch, arg, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.manifest.json").write_text("{not json")
    (tmp_path / "other.manifest.json").write_text(json.dumps({"format": 7}))
    r = CliRunner().invoke(app, ["inspect", arg.format(tmp=tmp_path)])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output


# ---- the runtime's packed fill -------------------------------------------------------------------------

def test_mapfill_pairs_cut_the_packed_entries():
    f = runtime.MapFill(4, [(b"\x09\0\0\0", b"zz")], packed=(2, b"\0\0\0\0\1\0\0\0", b"aabb"))
    assert f.pairs() == [(b"\x09\0\0\0", b"zz"), (b"\0\0\0\0", b"aa"), (b"\1\0\0\0", b"bb")]
    assert runtime.MapFill(1, packed=(0, b"", b"")).pairs() == []


# ---- install and load --sync carry NAME.maps ----------------------------------------------------------

def test_install_builds_the_maps_files_and_sync_checks_them(tmp_path):
    from policyc import sync as S

    from policyc.cli.install_cmd import run_install

    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/policyc").write_text("#!/bin/sh\n")
    (root / "usr/bin/policyc").chmod(0o755)
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(POLICIES / "sshd.policy", src / "sshd.policy")
    out, err = io.StringIO(), io.StringIO()
    code = run_install([str(src)], str(root), "/usr/bin/policyc", None, False, out, err,
                       run_systemctl=lambda *a, **k: None, systemd=lambda: True)
    assert code == 0, err.getvalue()
    built = root / "var/lib/policyc"
    names = ("sshd", "sshd-sessions")   # sshd.policy holds both
    assert sorted(p.name for p in built.iterdir()) == sorted(f"{n}{s}" for n in names
                                                             for s in (".bpf.o", ".manifest.json", ".maps"))
    m = deploy.read_manifest(built / "sshd.manifest.json")
    assert deploy.map_fills(m, directory=built)["dfa_states"].pairs()
    w = {x.name: x for x in S.wanted_in(built)}
    assert w["sshd"].error is None and w["sshd"].manifest_digest == deploy.manifest_digest(m)
    # a maps file that is not the manifest's: sync will not load it
    (built / "sshd.maps").write_bytes((built / "sshd.maps").read_bytes() + b"\0")
    w = {x.name: x for x in S.wanted_in(built)}
    assert "sshd.maps" in w["sshd"].error and "maps_sha256" in w["sshd"].error and "rebuild" in w["sshd"].error
    assert w["sshd-sessions"].error is None
    (built / "sshd.maps").unlink()
    w = {x.name: x for x in S.wanted_in(built)}
    assert "cannot read maps file" in w["sshd"].error
