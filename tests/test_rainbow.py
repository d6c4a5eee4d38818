"""`rainbow` is one word for its parts: it resolves to exactly their merge, says what it expands
to, combines with the mitigations, and clashes where a part clashes."""

from __future__ import annotations

import dataclasses

import pytest

from configs import UserError, describe_variants, resolve

PARTS = "c51+nstep3+per+dueling+noisy+double"
OWN = ["network.noisy_sigma0=0.1"]  # rainbow's own key: Dopamine's NoisyNetwork sigma
ADAM = ["agent.lr=6.25e-5", "agent.adam_eps=1.5e-4", "network.init=xavier_uniform"]
"""rainbow's soft keys over c51's: full_rainbow.gin's Adam and FullRainbowNetwork's init."""


def test_rainbow_is_the_merge_of_its_parts_as_dopamine_runs_them() -> None:
    rainbow, parts = resolve(variant="rainbow"), resolve(variant=PARTS, assignments=OWN + ADAM)
    assert dataclasses.replace(rainbow, variant=PARTS) == parts
    assert resolve(variant=PARTS).agent.lr == 2.5e-4  # c51's own, which rainbow replaces
    a, n, r = rainbow.agent, rainbow.network, rainbow.replay
    assert (a.loss, a.n_step, a.double, a.epsilon_start, a.epsilon_end) == ("c51", 3, True, 0, 0)
    assert (n.dueling, n.noisy, n.num_atoms, n.v_min, n.v_max) == (True, True, 51, -10.0, 10.0)
    assert (r.prioritized, r.priority_exponent, r.importance_exponent) == (True, 0.5, 0.5)
    assert (a.lr, a.adam_eps, a.target_update_interval) == (6.25e-5, 1.5e-4, 8000)


def test_list_variants_shows_what_rainbow_expands_to() -> None:
    assert dict(describe_variants())["rainbow"].endswith(f"Expands to {PARTS}.")


def test_rainbow_combines_with_the_mitigations() -> None:
    c = resolve(variant="rainbow+ln+wd")
    assert c.network.layer_norm and c.agent.weight_decay == 0.01 and c.network.noisy
    assert c.variant == "rainbow+ln+wd"


def test_an_option_named_outright_replaces_the_part_of_rainbow_it_clashes_with() -> None:
    parts = resolve(variant="per+dueling+noisy+nstep3+double+ln+wd+hl_gauss", assignments=OWN)
    for spelling in ["rainbow+ln+wd+hl_gauss", "hl_gauss+ln+wd+rainbow"]:
        c = resolve(variant=spelling)  # HL-Gauss in place of C51's loss, the rest of Rainbow kept
        assert (c.agent, c.network, c.replay) == (parts.agent, parts.network, parts.replay)
        assert c.agent.loss == "hl_gauss" and c.agent.n_step == 3 and c.agent.double
    with pytest.raises(UserError, match=r"'c51' and 'hl_gauss' clash"):  # both named outright
        resolve(variant="c51+hl_gauss")
