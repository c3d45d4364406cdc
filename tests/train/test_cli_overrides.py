"""python -m t2t.train: --config.model.overrides.FIELD=value for fields the config file lacks."""
import ml_collections
import pytest
from absl import app

from t2t.train import __main__ as cli


def test_split_and_apply_model_overrides():
    argv = ["t2t.train", "--config", "configs/quickstart.py", "--config.train.num_steps=3",
            "--config.model.overrides.scan_layers=True", "--config.model.overrides.d_ff=96",
            "--config.model.overrides.remat_policy=dots", "--config.model.overrides.dtype=float32"]
    rest, found = cli.split_model_overrides(argv)
    assert rest == argv[:4]
    assert found == {"scan_layers": "True", "d_ff": "96", "remat_policy": "dots",
                     "dtype": "float32"}
    cfg = ml_collections.ConfigDict({"model": {"name": "tiny", "overrides": {"d_ff": 64}}})
    cfg.lock()
    cli.apply_model_overrides(cfg, found)
    assert cfg.model.overrides.to_dict() == {"d_ff": 96, "scan_layers": True,
                                             "remat_policy": "dots", "dtype": "float32"}


@pytest.mark.parametrize("field,text,message", [
    ("scan_layer", "True", "scan_layer: unknown model field"),
    ("scan_layers", "maybe", "scan_layers=maybe: expected true or false"),
    ("d_ff", "wide", "d_ff=wide: expected int"),
])
def test_bad_model_override_names_the_flag(field, text, message):
    with pytest.raises(app.UsageError, match=message):
        cli.parse_model_override(field, text)
