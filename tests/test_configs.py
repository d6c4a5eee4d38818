"""Config resolution: presets, variants as merged options, overrides, and clear refusals."""

from __future__ import annotations

import pytest

import train
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


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("train.seed=010", r"'train\.seed' got '010'.*010 as 8 \(octal\), so write 10 \(or 8\)"),
        ("train.seed=08", r"'train\.seed' got '08'.*write 8, without the leading zero"),
        ("train.total_steps=1:30", r"got '1:30'.*read 1:30 as 90 \(base 60\), so write 90\."),
        ("train.seed=0x10", r"got '0x10'.*read 0x10 as 16 \(hexadecimal\), so write 16\."),
        ("train.seed=0b101", r"read 0b101 as 5 \(binary\), so write 5\."),
        ("train.seed=1__0", r"read 1__0 as 10 \(underscores dropped\), so write 10\."),
        ("agent.lr=1:30", r"'agent\.lr' got '1:30'; it takes a number.*as 90 \(base 60\)"),
        ("agent.lr=0:0.5", r"read 0:0.5 as 0.5 \(base 60\), so write 0.5\."),
        ("network.mlp_hidden=[010, 16]", r"'network\.mlp_hidden' got '010'.*write 10 \(or 8\)"),
        ("agent.double=yes", r"got 'yes'; it takes true or false: YAML 1\.1 .* as true, so write"),
        ("agent.double=off", r"takes true or false: YAML 1\.1 would read off as false, so write"),
    ],
)
def test_set_refuses_numbers_and_booleans_that_yaml_1_1_reads_otherwise(assignment, message):
    # PyYAML reads YAML 1.1: 010 is octal 8, 1:30 is 60 + 30, yes/off are booleans.
    with pytest.raises(UserError, match=message):
        resolve(assignments=[assignment])


def test_set_takes_numbers_in_decimal_with_underscores_and_exponents():
    c = resolve(
        assignments=[
            "train.seed=0",
            "replay.capacity=1_000_000",
            "agent.batch_size=3.2e1",
            "agent.lr=1e-4",  # YAML 1.1 reads this as a string: we read it as written
            "agent.adam_eps=.5E-3",
            "network.v_min=-1_0.5",
            "agent.double=True",
        ]
    )
    assert (c.train.seed, c.replay.capacity, c.agent.batch_size) == (0, 1_000_000, 32)
    assert (c.agent.lr, c.agent.adam_eps, c.network.v_min, c.agent.double) == (
        0.0001,
        0.0005,
        -10.5,
        True,
    )


@pytest.mark.parametrize("text", ["on", "no", "1.0", "010", "null", "~", "true", "2024-01-01"])
def test_set_gives_a_string_key_the_text_as_written(text):
    assert resolve(assignments=[f"env.id={text}"]).env.id == text


def test_set_on_a_string_key_reads_yaml_quotes_and_refuses_an_empty_value():
    assert resolve(assignments=["env.id='Pong'"]).env.id == "Pong"
    with pytest.raises(UserError, match=r"'env\.id' got None; it takes a string"):
        resolve(assignments=["env.id="])


def test_a_config_file_is_read_with_the_same_rules_as_set(tmp_path):
    file = tmp_path / "mine.yaml"
    file.write_text("env: {id: on}\nagent: {lr: 1e-4, double: false}\n")
    c = resolve(config_file=str(file))
    assert (c.env.id, c.agent.lr, c.agent.double) == ("on", 0.0001, False)
    file.write_text("train: {seed: 010}\n")
    with pytest.raises(UserError, match=r"'train\.seed' got '010'.*so write 10 \(or 8\)"):
        resolve(config_file=str(file))
    file.write_text("agent: {double: on}\n")
    with pytest.raises(UserError, match=r"read on as true, so write true"):
        resolve(config_file=str(file))
    file.write_text("env: {id: 1.0}\n")  # a file has no --set text to fall back on: quote it
    with pytest.raises(UserError, match=r"'env\.id' got 1\.0; it takes a string \(quote"):
        resolve(config_file=str(file))


def test_an_option_that_replaces_a_config_file_value_says_so_and_still_wins(tmp_path):
    file = tmp_path / "mine.yaml"
    file.write_text("agent: {weight_decay: 0.001, l2: 1.0e-5, n_step: 5, loss: mse}\n")
    lines: list[str] = []
    c = resolve(
        preset="classic",  # sets agent.loss: mse too, which hl_gauss replaces without a word
        config_file=str(file),
        variant="ln+wd+l2+rainbow+hl_gauss",
        on_override=lines.append,
    )
    assert (c.agent.weight_decay, c.agent.l2, c.agent.n_step) == (0.01, 1e-5, 3)
    assert lines == [  # l2 sets the file's own 1e-5: nothing to say
        f"warning: option 'wd' replaces agent.weight_decay=0.001 from {file} with 0.01 "
        "(--variant is applied after --config); add --set agent.weight_decay=0.001 to keep it.",
        f"warning: option 'nstep3' (from 'rainbow') replaces agent.n_step=5 from {file} with 3 "
        "(--variant is applied after --config); add --set agent.n_step=5 to keep it.",
        f"warning: option 'hl_gauss' replaces agent.loss=mse from {file} with hl_gauss "
        "(--variant is applied after --config); add --set agent.loss=mse to keep it.",
    ]


def test_an_option_that_replaces_a_preset_or_a_set_value_says_nothing(tmp_path):
    file = tmp_path / "mine.yaml"
    file.write_text("agent: {weight_decay: 0.001}\n")
    lines: list[str] = []
    c = resolve(
        preset="classic",
        config_file=str(file),
        variant="wd+c51",
        assignments=["agent.weight_decay=0.001"],
        on_override=lines.append,
    )
    assert (c.agent.weight_decay, c.agent.loss, lines) == (0.001, "c51", [])


def test_train_prints_the_override_warning_once_per_run(tmp_path, capsys):
    file = tmp_path / "mine.yaml"
    file.write_text("agent: {weight_decay: 0.001}\n")
    argv = ["--preset", "classic", "--config", str(file), "--variant", "ln+wd",
            "--logdir", str(tmp_path / "runs"), "--total-steps", "200",
            "--set", "probes.enabled=false"]  # fmt: skip
    assert train.main(argv) == 0
    expected = (
        f"warning: option 'wd' replaces agent.weight_decay=0.001 from {file} with 0.01 "
        "(--variant is applied after --config); add --set agent.weight_decay=0.001 to keep it."
    )
    assert capsys.readouterr().err.splitlines().count(expected) == 1
