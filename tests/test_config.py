"""Config loading: good files load, every bad value is one error that names the file and the key."""
import pytest
import yaml

from hpcsynth.config import ConfigError, from_dict, load, to_dict


def test_demo_job_loads_with_documented_keys():
    cfg = load("jobs/demo.yaml")
    assert cfg.data.builtin == "mds"
    assert cfg.strategies == ["centralized", "isolated", "fedavg", "local_sgd"]
    assert cfg.model.name == "tvae" and cfg.federation.rounds == 30
    assert cfg.output == "runs/demo.h5"
    assert "builtin: mds" in cfg.text


def test_defaults_fill_missing_sections():
    cfg = from_dict({"data": {"path": "x.csv"}})
    assert cfg.strategies == ["fedavg"] and cfg.model.batch_size == 500 and cfg.seed == 0


def test_local_epochs_come_from_model_epochs_spread_over_rounds():
    cfg = from_dict({"data": {"builtin": "mds"}, "model": {"epochs": 50}, "federation": {"rounds": 5}})
    assert cfg.local_epochs == 10


@pytest.mark.parametrize("mapping, key", [
    ({"data": {"builtin": "mds"}, "modle": {}}, "modle"),
    ({"data": {"builtin": "mds", "sitecolumn": "s"}}, "data.sitecolumn"),
    ({"data": {"builtin": "mds"}, "model": {"epochs": "ten"}}, "model.epochs"),
    ({"data": {"builtin": "mds"}, "model": {"epochs": 0}}, "model.epochs"),
    ({"data": {"builtin": "mds"}, "model": {"batch_size": 1.5}}, "model.batch_size"),
    ({"data": {"builtin": "mds"}, "model": {"name": "gan9000"}}, "model.name"),
    ({"data": {"builtin": "mds"}, "model": {"lr": -1}}, "model.lr"),
    ({"data": {"builtin": "mds"}, "model": {"hidden": [128, "x"]}}, "model.hidden[1]"),
    ({"data": {"builtin": "mds"}, "model": {"device": "tpu"}}, "model.device"),
    ({"data": {"builtin": "mds"}, "federation": {"strategy": "fedsgd"}}, "federation.strategy"),
    ({"data": {"builtin": "mds"}, "federation": {"strategy": ["fedavg", "fedavg"]}}, "federation.strategy"),
    ({"data": {"builtin": "mds"}, "federation": {"rounds": 0}}, "federation.rounds"),
    ({"data": {"builtin": "mds"}, "federation": {"local_epochs": -2}}, "federation.local_epochs"),
    ({"data": {"builtin": "mds"}, "federation": {"mu": -0.1}}, "federation.mu"),
    ({"data": {"builtin": "mds"}, "federation": {"server_lr": 0}}, "federation.server_lr"),
    ({"data": {"builtin": "mds"}, "federation": {"secure_aggregation": "yes"}}, "federation.secure_aggregation"),
    ({"data": {"builtin": "mds"}, "model": {"name": "bayesnet"}, "federation": {"secure_aggregation": True}},
     "federation.secure_aggregation"),
    ({"data": {"builtin": "mds"}, "sample": {"n_rows": 0}}, "sample.n_rows"),
    ({"data": {"builtin": "mds"}, "seed": "zero"}, "seed"),
    ({"data": {"builtin": "mds", "holdout": 1.0}}, "data.holdout"),
    ({"data": {"builtin": "nope"}}, "data.builtin"),
    ({"data": {"builtin": "mds", "path": "x.csv"}}, "data"),
    ({"data": {}}, "data"),
    ({"data": {"sites": ["a.csv", "b.csv"], "n_sites": 3}}, "data.n_sites"),
    ({"data": {"builtin": "mds"}, "model": {"epochs": 7}, "federation": {"rounds": 2, "local_epochs": 3}},
     "model.epochs"),
    ({"data": "mds"}, "data"),
    ({"data": {"builtin": "mds"}, "model": {"name": "bayesnet"}, "federation": {"strategy": "sd_sharing"}},
     "federation.strategy"),
    ({"data": {"builtin": "mds"}, "model": {"name": "ctgan"}, "federation": {"strategy": "latent_alignment"}},
     "federation.strategy"),
    ({"data": {"builtin": "mds"}, "model": {"name": "ctgan"}, "privacy": {"epsilon": 1.0}}, "model.pac"),
    ({"data": {"builtin": "mds"}, "model": {"name": "vae_bgm", "prior_clip": 0}}, "model.prior_clip"),
    ({"data": {"builtin": "mds"}, "model": {"name": "vae_bgm", "prior_noise_multiplier": -1.0}},
     "model.prior_noise_multiplier"),
    ({"data": {"builtin": "mds"}, "model": {"name": "vae_bgm", "prior_iterations": 0}}, "model.prior_iterations"),
    ({"data": {"builtin": "mds"}, "model": {"name": "bayesnet", "epsilon": 1.0}, "federation": {"ranks_per_site": 2}},
     "model.epsilon"),
    ({"data": {"builtin": "mds"}, "model": {"name": "ctgan"},
      "federation": {"strategy": "fedavg", "ranks_per_site": 2}}, "federation.ranks_per_site"),
])
def test_bad_values_name_the_key(mapping, key):
    with pytest.raises(ConfigError) as err:
        from_dict(mapping, source="job.yaml")
    message = str(err.value)
    assert message.startswith("job.yaml: "), message
    assert f" {key}" in message or f"{key}:" in message, message
    assert "\n" not in message


def test_missing_and_unparsable_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="nothere.yaml: no such config file"):
        load(tmp_path / "nothere.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML \(line"):
        load(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        load(top)


def test_to_dict_round_trips_through_yaml():
    cfg = load("jobs/demo.yaml")
    again = from_dict(yaml.safe_load(yaml.safe_dump(to_dict(cfg))))
    assert to_dict(again) == to_dict(cfg)


def test_the_names_config_accepts_are_the_registries():
    from hpcsynth.federated.registry import STRATEGIES
    from hpcsynth.models import MODELS, SEQUENCE_MODELS

    with pytest.raises(ConfigError, match=f"known: {', '.join(STRATEGIES)}\\)"):
        from_dict({"data": {"builtin": "mds"}, "federation": {"strategy": "fedsgd"}})
    with pytest.raises(ConfigError, match=f"known: {', '.join([*MODELS, *SEQUENCE_MODELS])}\\)"):
        from_dict({"data": {"builtin": "mds"}, "model": {"name": "gan9000"}})


def test_a_sequence_model_goes_with_visits_and_a_table_model_with_one_row_per_patient():
    with pytest.raises(ConfigError, match="model.name: tvae models one row per patient; the data are visits"):
        from_dict({"data": {"builtin": "mds_followup"}, "model": {"name": "tvae"}})
    with pytest.raises(ConfigError, match="model.name: sequence_vae models visit sequences"):
        from_dict({"data": {"builtin": "mds"}, "model": {"name": "sequence_vae"}})
    assert from_dict({"data": {"builtin": "mds_followup"}, "model": {"name": "sequence_vae"}}).model.gru_dim is None
