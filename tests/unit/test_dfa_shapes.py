"""The DFA's size for rule shapes users write (#12), and that pruning absorbed patterns
(policyc/ir/dfa.py `canonical`) changes no verdict and no protect rule."""

from __future__ import annotations

import random

import pytest

from policyc.ir import dfa as D
from policyc.ir.dfa import DfaTooLarge, Pattern, build_dfa
from policyc.ir.glob import parse_glob
from policyc.diagnostics import Diagnostics
from policyc.span import Span

SECRETS = [".ssh", ".aws", ".gnupg", ".kube", ".docker", ".azure", ".password-store", ".vault", ".config/gh",
           ".netrc.d", ".git-credentials.d", ".npmrc.d", ".pypirc.d", ".terraform.d", ".vagrant.d", ".minikube",
           ".helm", ".oci", ".gcloud", ".m2", ".ivy2", ".cargo", ".rustup", ".local/share/keyrings", ".mozilla",
           ".thunderbird", ".purple", ".irssi", ".weechat", ".ssh2", ".pki", ".certs"]
N_OPS = 16
DEFAULTS = [(0, 0)] * N_OPS


def glob(text: str):
    g = parse_glob(text, Span("t", 1, 1, 1, 1), Diagnostics())
    assert g is not None, text
    return g.parts


def deny_read(texts, first_id=1):
    return [Pattern(glob(t), 1 << 0, first_id + i, 2, protects=True, source=t) for i, t in enumerate(texts)]


def test_secret_directories_anywhere_grow_with_the_names_not_their_subsets():
    # before: 12,046 states for 8 names, 315,406 for 12, out of memory for 16 (#12)
    sizes = [len(build_dfa(deny_read(["/**/{" + ",".join(SECRETS[:n]) + "}/**"]), N_OPS, DEFAULTS).states)
             for n in (8, 16, 32)]
    assert sizes[-1] < 400, sizes


def test_many_rules_with_a_mid_path_double_star_stay_small():
    # before: 16 rules gave 1,310,739 states and 4.3 GB (#12)
    n = len(build_dfa(deny_read([f"/home/*/**/.d{i}/**" for i in range(16)]), N_OPS, DEFAULTS).states)
    assert n < 1000, n


def test_an_exponential_pattern_stops_at_the_cap_naming_itself():
    pats = deny_read(['/srv/**', "/**/x*" + "/*" * 14])
    with pytest.raises(DfaTooLarge) as e:
        build_dfa(pats, N_OPS, DEFAULTS, max_states=5_000)
    assert e.value.source == "/**/x*" + "/*" * 14


def _random_glob(rng: random.Random) -> str:
    parts = ["/"]
    for _ in range(rng.randint(1, 4)):
        parts.append(rng.choice(["a", "b", "ab", ".d", "*", "**", "?", "{a,b}", "{x,**/y}"]))
        parts.append("/")
    text = "".join(parts).rstrip("/")
    if rng.random() < 0.6:
        text += "/**"
    return text.replace("***", "**") or "/**"


def _random_path(rng: random.Random) -> bytes:
    return ("/" + "/".join(rng.choice(["a", "b", "ab", ".d", "x", "y", "xa"]) for _ in range(rng.randint(0, 6)))).encode()


@pytest.mark.parametrize("seed", range(40))
def test_pruning_changes_no_verdict_and_no_protect_rule(seed, monkeypatch):
    rng = random.Random(seed)
    pats = []
    for i in range(rng.randint(2, 7)):
        text = _random_glob(rng)
        rank = rng.choice([0, 1, 2, 2])
        mask = rng.choice([1, 2, 3, 1 << 10 | 1 << 9, 1 << 12])
        target = rng.random() < 0.15
        pats.append(Pattern(glob(text), 0 if target else mask, rng.randint(1, 6), rank,
                            protects=(rank == 2 and rng.random() < 0.7), target_bit=i if target else -1,
                            source=text))
    pruned = build_dfa(pats, N_OPS, DEFAULTS)
    monkeypatch.setattr(D, "PRUNE_ABSORBED", False)
    full = build_dfa(pats, N_OPS, DEFAULTS)
    assert len(pruned.states) <= len(full.states)
    for _ in range(300):
        path = _random_path(rng)
        assert pruned.match(path) == full.match(path), (path, [p.source for p in pats])
        assert pruned.protect_rule(path) == full.protect_rule(path), (path, [p.source for p in pats])
