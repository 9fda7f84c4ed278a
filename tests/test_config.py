"""Parameter files: profiles load, every kind of bad input names its key, and a stage's `load`
checks exactly the sections it asks for."""

from __future__ import annotations

import dataclasses
import importlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lowdim.config.data import DataConfig
from lowdim.config.distances import DistancesConfig
from lowdim.config.figures import FiguresConfig
from lowdim.config.grid import GridConfig
from lowdim.config.load import NAMES, SECTIONS, ConfigError, as_dict, from_dict, load
from lowdim.config.models import ModelsConfig
from lowdim.config.profile import Config, load_profile, profile_from_dict
from lowdim.tools.params import validate, validate_file

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted(path.stem for path in (ROOT / "profiles").glob("*.yaml"))


def _quick(root) -> dict:
    return yaml.safe_load((root / "profiles" / "quick.yaml").read_text())


def test_params_yaml_is_a_valid_profile(root):
    # any profile (or an edited one): `make profile NAME=...` switches it, so no bytes are pinned
    assert validate_file(root / "params.yaml").profile


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_load_and_round_trip(root, profile):
    cfg = validate_file(root / "profiles" / f"{profile}.yaml")
    assert cfg.profile == profile
    assert profile_from_dict(as_dict(cfg)) == cfg


def test_lists_become_tuples_and_ints_floats(root):
    cfg = load_profile(root / "profiles" / "quick.yaml")
    assert isinstance(cfg.grid.arch, tuple)
    assert cfg.grid.base_lr["sgd"] == (0.1,)
    assert isinstance(cfg.grid.weight_decay[0], float)


def test_overrides_are_merged_and_validated(root):
    data = load(root / "profiles" / "tiny.yaml", {"data": {"eval_train_size": 7}}, DataConfig)
    assert data.eval_train_size == 7
    assert data.dataset == "digits"
    with pytest.raises(ConfigError, match=r"data\.eval_train_size = -1: must be positive"):
        load(root / "profiles" / "tiny.yaml", {"data": {"eval_train_size": -1}}, DataConfig)


def test_train_size_defaults_to_the_whole_split_and_needs_one_example_per_class(root):
    data = load(root / "profiles" / "tiny.yaml", {}, DataConfig)
    assert (data.train_size, data.train_seed) == (None, 0)
    data = load(root / "profiles" / "tiny.yaml", {"data": {"train_size": 10, "train_seed": 3}},
                DataConfig)
    assert (data.train_size, data.train_seed) == (10, 3)
    with pytest.raises(ConfigError, match=r"data\.train_size = 0: must be positive"):
        load(root / "profiles" / "tiny.yaml", {"data": {"train_size": 0}}, DataConfig)
    with pytest.raises(ConfigError, match=r"data\.train_size = 9: a class-balanced training "
                                          r"subset needs at least one example of each of the 10 "
                                          r"classes of digits, so at least 10"):
        load(root / "profiles" / "tiny.yaml", {"data": {"train_size": 9}}, DataConfig)


def test_unknown_key_is_named_with_a_suggestion(root):
    raw = _quick(root)
    raw["train"]["lr_reference_batchsize"] = 200
    with pytest.raises(ConfigError, match=r"unknown parameter key train\.lr_reference_batchsize "
                                          r"\(did you mean 'lr_reference_batch_size'\?\)"):
        validate(raw)


def test_unknown_section_is_named(root):
    raw = _quick(root)
    raw["trainer"] = {}
    with pytest.raises(ConfigError, match=r"unknown parameter key trainer"):
        validate(raw)


def test_unknown_architecture_is_named(root):
    raw = _quick(root)
    raw["grid"]["arch"] = ["fc", "vgg16"]
    with pytest.raises(ConfigError, match=r"grid\.arch\[1\] = 'vgg16': .*unknown architecture"):
        validate(raw)


def test_bad_model_size_is_named(root):
    raw = _quick(root)
    raw["models"]["fc"] = {"width": [3]}
    with pytest.raises(ConfigError, match=r"models\.fc = 'fc': .*width"):
        validate(raw)


def test_negative_learning_rate_is_named(root):
    raw = _quick(root)
    raw["grid"]["base_lr"]["sgdn"] = [-0.1]
    with pytest.raises(ConfigError,
                       match=r"grid\.base_lr\.sgdn\[0\] = -0\.1: a learning rate must be positive"):
        validate(raw)


def test_missing_dataset_directory_is_named(root, tmp_path):
    raw = _quick(root)
    raw["data"].update(dataset="fashion-mnist", root=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"data\.root = '.*nowhere': this dataset directory "
                                          r"does not exist"):
        validate(raw)


@pytest.mark.parametrize("section, key, value, message", [
    ("grid", "optimizer", ["sgd", "rmsprop"], r"grid\.optimizer\[1\] = 'rmsprop' is not known"),
    ("grid", "batch_size", [0], r"grid\.batch_size\[0\] = 0: must be positive"),
    ("grid", "batch_size", 64, r"grid\.batch_size = 64: must be a list"),
    ("grid", "seed", [42, 42], r"grid\.seed = \[42, 42\] repeats a value"),
    ("grid", "weight_decay", [-1e-4], r"grid\.weight_decay\[0\] = -0\.0001: .*cannot be negative"),
    ("grid", "augment", ["full"], r"grid\.augment\[0\] = 'full' is not known"),
    ("grid", "epochs", ["ten"], r"grid\.epochs\[0\] = 'ten': must be a whole number"),
    ("data", "dataset", "mnist", r"data\.dataset = 'mnist' is not known"),
    ("data", "download", "yes", r"data\.download = 'yes': must be true or false"),
    ("data", "test_fraction", 1.5, r"data\.test_fraction = 1\.5: must be in \(0, 1\)"),
    ("train", "device", "tpu", r"train\.device = 'tpu': must be one of auto, cpu, cuda"),
    ("distances", "bc_floor", 0.0, r"distances\.bc_floor = 0\.0: must be in \(0, 1\)"),
    ("figures", "formats", ["jpg"], r"figures\.formats = \['jpg'\]: dvc\.yaml declares the "
     r"\.pdf and the \.png of every figure as its stage's outs.*: use \[pdf, png\]"),
    ("figures", "formats", ["svg"], r"figures\.formats = \['svg'\]: dvc\.yaml declares"),
    ("figures", "formats", ["png"], r"figures\.formats = \['png'\]: dvc\.yaml declares"),
    ("figures", "formats", ["pdf", "png", "svg"], r"figures\.formats = \['pdf', 'png', 'svg'\]"),
    ("trajectories", "reindex_by", "lambda",
     r"trajectories\.reindex_by = 'lambda': must be one of accuracy, progress"),
    ("trajectories", "trained_max_error", 0.0,
     r"trajectories\.trained_max_error = 0\.0: must be in \(0, 1\]"),
    ("trajectories", "grid_points", 0, r"trajectories\.grid_points = 0: must be positive"),
    ("trajectories", "size_pair", ["wr-10-4-8"],
     r"trajectories\.size_pair = \['wr-10-4-8'\]: give two different architectures"),
    ("trajectories", "size_pair", ["wr-10-1-8", "wr-16-4-64"],
     r"trajectories\.size_pair\[1\] = 'wr-16-4-64' is not in grid\.arch"),
    ("trajectories", "size_pair", ["wr-16-1-8", "wr-10-1-8"],
     r"wr-10-1-8 has 19,\d+ parameters, not more than wr-16-1-8's .*list the smaller network "
     r"first"),
])
def test_bad_values_are_named(root, section, key, value, message):
    raw = _quick(root)
    raw[section][key] = value
    with pytest.raises(ConfigError, match=message):
        validate(raw)


def test_optimizer_without_learning_rate(root):
    raw = _quick(root)
    raw["grid"]["base_lr"] = {"sgd": [0.1]}
    with pytest.raises(ConfigError, match=r"grid\.base_lr has no entry for optimizer 'sgdn'"):
        validate(raw)


def test_missing_required_key(root):
    raw = _quick(root)
    del raw["grid"]["arch"]
    with pytest.raises(ConfigError, match=r"missing key grid\.arch"):
        validate(raw)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"parameter file .*absent\.yaml does not exist"):
        load(tmp_path / "absent.yaml", {}, DataConfig)


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_train_locally_by_default(root, profile):
    assert load_profile(root / "profiles" / f"{profile}.yaml").train.backend == "local"


@pytest.mark.parametrize("ray, message", [
    ({"num_gpus": 1.5}, r"train\.ray\.num_gpus = 1\.5: must be a fraction in \[0, 1\] or a "
                        r"whole number"),
    ({"num_cpus": -1}, r"train\.ray\.num_cpus = -1\.0: must be a fraction in \[0, 1\]"),
    ({"num_cpus": 0, "num_gpus": 0}, r"train\.ray\.num_cpus and train\.ray\.num_gpus are both "
                                     r"0: a task must reserve some CPU or GPU"),
    ({"runs_per_task": 0}, r"train\.ray\.runs_per_task = 0: must be positive"),
    ({"max_retries": -1}, r"train\.ray\.max_retries = -1: must be >= 0"),
    ({"max_failed_fraction": 1.0}, r"train\.ray\.max_failed_fraction = 1\.0: must be in \[0, "
                                   r"1\)"),
    ({"address": " "}, r"train\.ray\.address = ' ': use auto \(the running cluster\)"),
    ({"adress": "auto"}, r"unknown parameter key train\.ray\.adress \(did you mean "
                         r"'address'\?\)"),
])
def test_bad_ray_values_are_named(root, ray, message):
    raw = _quick(root)
    raw["train"]["ray"].update(ray)
    with pytest.raises(ConfigError, match=message):
        validate(raw)


def test_unknown_backend_is_named(root):
    raw = _quick(root)
    raw["train"]["backend"] = "slurm"
    with pytest.raises(ConfigError, match=r"train\.backend = 'slurm': must be one of local, ray"):
        validate(raw)


@pytest.mark.parametrize("device, num_gpus, message", [
    ("cpu", 0.5, r"train\.ray\.num_gpus = 0\.5 but train\.device = 'cpu'"),
    ("cuda", 0, r"train\.device = 'cuda' but train\.ray\.num_gpus = 0: Ray hides GPUs"),
])
def test_ray_device_and_gpus_must_agree(root, device, num_gpus, message):
    raw = _quick(root)
    raw["train"].update(device=device, backend="ray")
    raw["train"]["ray"]["num_gpus"] = num_gpus
    with pytest.raises(ConfigError, match=message):
        validate(raw)
    raw["train"]["backend"] = "local"  # the ray section is not used, so not checked against it
    assert validate(raw).train.ray.num_gpus == num_gpus


def test_ray_section_accepts_fractional_gpus_and_a_local_instance(root):
    raw = _quick(root)
    raw["train"]["backend"] = "ray"
    raw["train"]["ray"].update(address=None, num_gpus=0.25, num_cpus=2)
    ray = validate(raw).train.ray
    assert (ray.address, ray.num_gpus, ray.num_cpus) == (None, 0.25, 2.0)


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_pack_automatically_with_every_speed_option_off(root, profile):
    train = load_profile(root / "profiles" / f"{profile}.yaml").train
    assert train.pack_size == "auto"
    assert not (train.channels_last or train.compile or train.tf32 or train.bf16)


@pytest.mark.parametrize("value", ["auto", 1, 16])
def test_pack_size_is_auto_or_a_count(root, value):
    raw = _quick(root)
    raw["train"]["pack_size"] = value
    assert validate(raw).train.pack_size == value


@pytest.mark.parametrize("key, value, message", [
    ("pack_size", "big", r"train\.pack_size = 'big': must be auto or a whole number"),
    ("pack_size", 2.5, r"train\.pack_size = 2\.5: must be auto or a whole number"),
    ("pack_size", True, r"train\.pack_size = True: must be auto or a whole number"),
    ("pack_size", 0, r"train\.pack_size = 0: must be positive"),
    ("compile", "yes", r"train\.compile = 'yes': must be true or false"),
    ("bf16", 1, r"train\.bf16 = 1: must be true or false"),
])
def test_bad_packing_values_are_named(root, key, value, message):
    raw = _quick(root)
    raw["train"][key] = value
    with pytest.raises(ConfigError, match=message):
        validate(raw)


def test_studies_section_has_defaults_and_profiles_set_it(root):
    cfg = load_profile(root / "profiles" / "quick.yaml")
    assert (cfg.studies.averaging.arch, cfg.studies.averaging.optimizer) == ("allcnn", "sgdn")
    assert cfg.studies.tangents.centres == (0.2, 0.8) and cfg.studies.tangents.width == 0.05
    raw = _quick(root)
    del raw["studies"]
    assert validate(raw).studies.joint.enabled is True


@pytest.mark.parametrize("section, key, value, message", [
    ("averaging", "arch", "resnet", r"studies\.averaging\.arch = 'resnet' is not in grid\.arch"),
    ("averaging", "optimizer", None, r"studies\.averaging\.arch and studies\.averaging\.optimizer "
                                     r"name one configuration together"),
    ("averaging", "bhattacharyya_iterations", 0,
     r"studies\.averaging\.bhattacharyya_iterations = 0: must be positive"),
    ("tangents", "width", -0.1, r"studies\.tangents\.width = -0\.1: must be positive"),
    ("tangents", "centres", [0.8, 0.2], r"studies\.tangents\.centres = \[0\.8, 0\.2\]: give two "
                                        r"progress values \[start, end\]"),
    ("tangents", "centres", [0.2], r"studies\.tangents\.centres = \[0\.2\]"),
    ("tangents", "dims", 0, r"studies\.tangents\.dims = 0: must be positive"),
    ("joint", "enabled", "yes", r"studies\.joint\.enabled = 'yes': must be true or false"),
    ("joint", "enable", True, r"unknown parameter key studies\.joint\.enable \(did you mean "
                              r"'enabled'\?\)"),
])
def test_bad_studies_values_are_named(root, section, key, value, message):
    raw = _quick(root)
    raw["studies"][section][key] = value
    with pytest.raises(ConfigError, match=message):
        validate(raw)


def test_a_stage_load_builds_no_network_but_names_still_fail(root):
    raw = _quick(root)
    raw["models"]["fc"] = {"width": [3]}  # builds only with torch: checked by the train stage
    assert from_dict(raw, ModelsConfig)["fc"] == {"width": [3]}
    from lowdim.models import check_sizes

    with pytest.raises(ConfigError, match=r"models\.fc = 'fc': .*width"):
        check_sizes(from_dict(raw, ModelsConfig), ("fc",), "digits")
    with pytest.raises(ConfigError, match=r"models\.fc = 'fc': .*width"):
        validate(raw)
    raw = _quick(root)
    raw["grid"]["optimizer"] = ["sgdn", "rmsprop"]
    with pytest.raises(ConfigError, match=r"grid\.optimizer\[1\] = 'rmsprop'"):
        from_dict(raw, GridConfig)


def test_loading_every_section_does_not_import_torch(root):
    probe = ("import sys; from lowdim.config.profile import load_profile; "
             f"load_profile({str(root / 'profiles' / 'quick.yaml')!r}); "
             "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


def test_the_datasets_config_knows_are_the_ones_the_data_package_loads():
    from lowdim.config.data import DATASET_SHAPES
    from lowdim.data import DATASETS

    assert tuple(DATASET_SHAPES) == DATASETS


def test_the_init_schemes_config_knows_are_the_ones_the_models_apply():
    from lowdim import models
    from lowdim.config import grid

    assert grid.INIT_SCHEMES == models.INIT_SCHEMES


# --------------------------------------------------------------------------- a stage's load


def test_load_returns_one_section_or_a_tuple_in_the_order_asked(root):
    path = root / "profiles" / "tiny.yaml"
    figures = load(path, None, FiguresConfig)
    assert isinstance(figures, FiguresConfig)
    distances, data = load(path, {}, DistancesConfig, DataConfig)
    assert (distances, data) == (load_profile(path).distances, load_profile(path).data)
    with pytest.raises(TypeError, match="name at least one section class"):
        load(path, {})


def test_load_checks_only_the_sections_asked_for(root):
    raw = _quick(root)
    raw["figures"]["dpi"] = 0
    raw["distances"]["sample_stepp"] = 2
    assert from_dict(raw, GridConfig).arch == tuple(raw["grid"]["arch"])
    with pytest.raises(ConfigError, match=r"figures\.dpi = 0: must be positive"):
        from_dict(raw, GridConfig, FiguresConfig)
    with pytest.raises(ConfigError, match=r"unknown parameter key distances\.sample_stepp"):
        from_dict(raw, DistancesConfig)


@pytest.mark.parametrize("section, key", [("trainer", "trainer"), ("corners", "corners")])
def test_load_rejects_an_unknown_section_whichever_sections_it_builds(root, section, key):
    raw = _quick(root)
    raw[section] = {}
    with pytest.raises(ConfigError, match=rf"unknown parameter key {key}"):
        from_dict(raw, FiguresConfig)


def test_load_rejects_unknown_study_sections_and_override_sections(root):
    raw = _quick(root)
    raw["studies"]["corner"] = {}
    with pytest.raises(ConfigError, match=r"unknown parameter key studies\.corner \(did you "
                                          r"mean 'corners'\?\)"):
        from_dict(raw, FiguresConfig)
    with pytest.raises(ConfigError, match=r"overrides: unknown parameter key figure \(did you "
                                          r"mean 'figures'\?\)"):
        load(root / "profiles" / "tiny.yaml", {"figure": {"dpi": 10}}, FiguresConfig)


def test_an_absent_section_takes_its_defaults_and_a_required_key_is_named(root):
    raw = _quick(root)
    del raw["distances"], raw["grid"]
    assert from_dict(raw, DistancesConfig) == DistancesConfig()
    with pytest.raises(ConfigError, match=r"missing key grid\.arch"):
        from_dict(raw, GridConfig)


def test_every_section_has_its_module_and_the_profile_holds_them_all():
    for section in SECTIONS:
        module = importlib.import_module(f"lowdim.config.{section}")
        named = [c for c in vars(module).values()
                 if isinstance(c, type) and getattr(c, "SECTION", None) == section]
        assert len(named) == 1, section
    top = [f.name for f in dataclasses.fields(Config)]
    studies = [f"studies.{f.name}" for f in dataclasses.fields(Config.__dataclass_fields__[
        "studies"].default_factory)]
    assert set(top) == set(NAMES) | {s for s in SECTIONS if "." not in s} | {"studies"}
    assert set(studies) == {s for s in SECTIONS if s.startswith("studies.")}


def test_the_params_command_validates_whole_files(root, tmp_path):
    files = [root / "params.yaml", *sorted((root / "profiles").glob("*.yaml"))]
    done = subprocess.run([sys.executable, "-m", "lowdim.tools.params", *map(str, files)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": valid") == len(files)
    raw = _quick(root)
    raw["figures"]["dpi"] = 0  # a section the first stages never read
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, "-m", "lowdim.tools.params", str(bad)],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert "figures.dpi = 0: must be positive" in done.stderr


def test_figure_formats_are_the_outs_dvc_yaml_declares(root):
    # the schema accepts exactly the formats every figure stage declares as outs (pdf, png)
    from lowdim.config.figures import FIGURE_FORMATS

    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    figure_stages = {name: stage for name, stage in stages.items() if "figures" in
                     stage.get("params", [])}
    assert len(figure_stages) >= 16
    for name, stage in figure_stages.items():
        images = {Path(out).suffix.lstrip(".") for out in stage["outs"]
                  if isinstance(out, str) and out.startswith(f"figures/{name}.")}
        assert images == set(FIGURE_FORMATS), name


def test_sections_log_the_keys_read_only_when_asked(root, tmp_path, monkeypatch):
    from lowdim.config.train import TrainConfig

    tiny = root / "profiles" / "tiny.yaml"
    plain = load(tiny, {}, FiguresConfig)
    assert type(plain) is FiguresConfig  # unset: the plain sections
    log = tmp_path / "reads.jsonl"
    monkeypatch.setenv("LOWDIM_PARAMS_LOG", str(log))
    monkeypatch.setenv("DVC_STAGE", f"stage-{tmp_path.name}")
    train, models, figures = load(tiny, {}, TrainConfig, ModelsConfig, FiguresConfig)
    assert isinstance(train, TrainConfig) and isinstance(models, ModelsConfig)
    assert not log.exists()  # building and validating read nothing on the stage's behalf
    assert (train.device, train.ray.num_gpus, train.device) == ("auto", 0.0, "auto")
    assert models.get("fc") == {"widths": [32, 16]} and models.get("nope") is None
    assert pickle.loads(pickle.dumps(train)).threads == 1  # a worker process logs too
    list(models)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert {line["stage"] for line in lines} == {f"stage-{tmp_path.name}"}
    assert [line["key"] for line in lines] == [
        "train.device", "train.ray.num_gpus", "models.fc", "models.nope", "train.threads",
        "models"]
    assert repr(figures) == repr(plain) and figures == load(tiny, {}, FiguresConfig)
