"""Config resolution: presets, variants as merged options, overrides, and clear refusals."""

from __future__ import annotations

import pytest

from configs import (
    UserError,
    available,
    describe_variants,
    from_dict,
    grid_variants,
    resolve,
    to_dict,
)


def test_a_combined_options_own_keys_win_over_its_parts_and_yield_to_named_options():
    # rainbow's parts include c51 (Adam 2.5e-4 / 3.125e-4); rainbow's own keys restore
    # Dopamine's full_rainbow Adam (6.25e-5 / 1.5e-4), and hl_gauss named outright replaces c51.
    c = resolve(variant="rainbow")
    assert (c.agent.loss, c.agent.lr, c.agent.adam_eps) == ("c51", 6.25e-5, 1.5e-4)
    assert (c.network.noisy_sigma0, c.network.init) == (0.1, "xavier_uniform")
    c = resolve(variant="rainbow+hl_gauss")
    assert (c.agent.loss, c.agent.lr) == ("hl_gauss", 6.25e-5)
    assert resolve(variant="c51").agent.lr == 2.5e-4
    # The order of the options never matters: c51 named outright keeps its keys either way.
    for variant in ("rainbow+c51", "c51+rainbow"):
        c = resolve(variant=variant)
        assert (c.agent.lr, c.network.init, c.agent.n_step) == (2.5e-4, "variance_scaling", 3)
    with pytest.raises(UserError, match="clash"):
        resolve(variant="nstep3+rainbow+nstep5")


def test_a_baselines_optimiser_and_init_yield_to_a_presets_own():
    # c51's Adam and init are Dopamine's Atari values (its `defaults` section); the classic preset
    # sets its own lr, eps and init, and keeps them under c51 and rainbow.
    for variant in ("c51", "rainbow"):
        c = resolve(preset="classic", variant=variant)
        assert (c.agent.lr, c.agent.adam_eps, c.network.init) == (5e-4, 1e-8, "torch")
    c = resolve(preset="atari100k", variant="c51")  # sets lr only: c51's eps and init remain
    assert (c.agent.lr, c.agent.adam_eps, c.network.init) == (1e-4, 3.125e-4, "variance_scaling")
    assert resolve(variant="c51", assignments=["agent.lr=1e-3"]).agent.lr == 1e-3


def test_a_variant_merges_its_options_in_order():
    c = resolve(variant="ln+wd+hl_gauss+nstep3+double")
    assert c.network.layer_norm and c.agent.weight_decay == 0.01
    assert (c.agent.loss, c.agent.n_step, c.agent.double, c.variant) == (
        "hl_gauss",
        3,
        True,
        "ln+wd+hl_gauss+nstep3+double",
    )


def test_precedence_is_preset_then_file_then_variant_then_flags_then_set(tmp_path):
    file = tmp_path / "mine.yaml"
    file.write_text("agent: {lr: 0.002, loss: c51}\ntrain: {seed: 5}\n")
    c = resolve(
        preset="classic",
        config_file=str(file),
        variant="two_hot",
        overrides={"train": {"seed": 9}},
        assignments=["agent.batch_size=8"],
    )
    assert c.env.id == "CartPole-v1"  # preset
    assert c.agent.lr == 0.002  # file over the preset's 5e-4
    assert c.agent.loss == "two_hot"  # variant over file
    assert c.train.seed == 9  # command-line flag over file
    assert c.agent.batch_size == 8  # --set over preset's 64


def test_set_reads_yaml_numbers_and_lists():
    c = resolve(assignments=["agent.lr=1e-4", "replay.capacity=1e5", "network.mlp_hidden=[32, 16]"])
    assert (c.agent.lr, c.replay.capacity, c.network.mlp_hidden) == (1e-4, 100_000, (32, 16))


def test_the_variant_label_is_normalised_from_the_options_given():
    assert resolve(variant=" ln + wd ").variant == "ln+wd"


def test_resolved_config_round_trips_through_plain_data():
    c = resolve(preset="smoke", variant="ln+c51")
    assert from_dict(to_dict(c)) == c


def test_a_config_saved_before_newer_keys_existed_takes_their_defaults():
    saved = to_dict(resolve(preset="classic", variant="ln"))
    del saved["eval"], saved["env"]["full_action_space"]  # keys this version added
    loaded = from_dict(saved)
    assert loaded.eval == resolve().eval and loaded.env.full_action_space is False
    assert loaded.network.layer_norm and loaded.env.id == "CartPole-v1"  # what was saved stays
    del saved["network"]["init"]  # a run from before init schemes was drawn by PyTorch's default
    assert from_dict(saved).network.init == "torch"
    assert from_dict(to_dict(resolve())).network.init == "xavier_uniform"


def test_clashing_options_name_both():
    with pytest.raises(UserError, match=r"'c51' and 'hl_gauss' clash.*agent\.loss"):
        resolve(variant="c51+hl_gauss")


def test_unknown_option_lists_the_known_ones():
    with pytest.raises(UserError, match=r"Unknown option 'lnn'.*Did you mean 'ln'.*Known options:"):
        resolve(variant="lnn")


def test_unknown_key_names_it_and_the_valid_keys():
    with pytest.raises(UserError, match=r"'agent\.lrr'.*Did you mean 'agent\.lr'.*agent\.gamma"):
        resolve(assignments=["agent.lrr=1"])


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("agent.lr=0", r"agent\.lr = 0\.0 is impossible.*learning rate > 0"),
        ("agent.lr=-1e-3", r"agent\.lr = -0\.001"),
        ("train.total_steps=0", r"train\.total_steps = 0 is impossible"),
        ("agent.batch_size=2000000", r"no larger than replay\.capacity \(1000000\)"),
        ("agent.loss=ce", r"agent\.loss' got 'ce'; it takes one of huber, mse, c51"),
        ("agent.double=maybe", r"agent\.double' got 'maybe'; it takes true or false"),
        ("agent.batch_size=3.5", r"it takes a whole number"),
        ("train.total_steps=1e400", r"it takes a whole number \(finite\)"),
        ("train.total_steps=abc", r"'abc'; it takes a whole number\."),
        ("train.seed=-1", r"train\.seed = -1 is impossible; it needs a seed from 0"),
        ("agent.n_step=300", r"agent\.n_step = 300 is impossible; it needs n from 1 to 255"),
        ("variant=ln", r"'variant' cannot be set in --set variant=ln; choose options with"),
    ],
)
def test_impossible_values_are_refused(assignment, message):
    with pytest.raises(UserError, match=message):
        resolve(assignments=[assignment])


def test_c51_refuses_a_value_transform():
    with pytest.raises(UserError, match="value_transform"):
        resolve(variant="c51+hyperbolic")


def test_unknown_preset_and_missing_file_are_named(tmp_path):
    with pytest.raises(
        UserError, match=r"Unknown preset 'tiny'. Known presets: atari100k, classic"
    ):
        resolve(preset="tiny")
    with pytest.raises(UserError, match=r"nope\.yaml does not exist"):
        resolve(config_file=str(tmp_path / "nope.yaml"))


def test_every_option_file_has_a_description_and_the_paper_grid_resolves():
    rows = dict(describe_variants())
    assert set(available("variants")) | {"nstepN"} == set(rows)
    assert all(len(text) > 10 for text in rows.values())
    grid = grid_variants("plasticity")
    assert {
        "dqn",
        "ln",
        "l2",
        "wd",
        "ln+wd",
        "c51",
        "two_hot",
        "hl_gauss",
        "ln+wd+hl_gauss",
    } <= set(grid)
    for variant in grid:
        resolve(variant=variant)
