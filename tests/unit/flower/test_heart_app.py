"""The heart Flower app's ClientApp, called directly in ``.venv-flower`` (it imports flwr).

One site (Hungary's FLamby rows) and its own settings: a round trains and reports the kit's round
metrics, the validation carries bootstrap intervals, and the site's floor (``limits``,
:mod:`fedhealth.policy.site_limits`) declines a round as in the FLARE heart jobs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flower_modules import FLOWER_PYTHON, run_in_flower

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.skipif(
    not FLOWER_PYTHON.is_file(), reason=".venv-flower is missing (make .venv-flower/.installed)"
)

SCRIPT = """
import json, os, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from fedhealth.constants import FLOWER_SITE_ROOT_ENV
from fedhealth.data.site_data import write_site
from fedhealth_tools.data.heart_source import load_heart_sites
import fedhealth.flower.heart_flower as heart

TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0  # what a ClientApp process has
root, settings = Path(sys.argv[1]), json.loads(sys.argv[2])
split = load_heart_sites(None)["hungary"]
write_site(root / "data", split.train, split.test)
(root / "local").mkdir(parents=True, exist_ok=True)
(root / "local" / "fedhealth_site.json").write_text(json.dumps(settings))
os.environ[FLOWER_SITE_ROOT_ENV] = str(root)
cfg = {"arch": "logreg", "seed": 0, "lr": 0.1, "batch-size": 16, "local-steps": 0, "local-epochs": 1,
       "mu": 1.0, "n-bootstrap": 200}
ctx = Context(run_id=1, node_id=2, node_config={"client-name": "hungary"}, state=RecordDict(), run_config=cfg)
weights = ArrayRecord(heart._model(cfg).state_dict())
content = RecordDict({"arrays": weights, "config": ConfigRecord({"round": 0})})
out = {}
try:
    reply = heart.train(Message(content=content, dst_node_id=2, message_type="train"), ctx)
    out["site"] = reply.content["fedhealth"]["site"]
    out["train"] = json.loads(reply.content["fedhealth"]["metrics"])
    out["weight"] = reply.content["metrics"]["num-examples"]
    ask = Message(content=RecordDict({"arrays": weights}), dst_node_id=2, message_type="evaluate")
    out["evaluate"] = json.loads(heart.evaluate(ask, ctx).content["fedhealth"]["metrics"])
except RuntimeError as exc:
    out["declined"] = str(exc)
print(json.dumps(out))
"""


def _client(tmp_path: Path, settings: dict) -> dict:
    return run_in_flower(SCRIPT, tmp_path / "hungary", json.dumps(settings))


def test_round_and_validation_at_a_site(tmp_path: Path) -> None:
    out = _client(tmp_path, {})
    assert out["site"] == "hungary" and out["weight"] == 172
    train = out["train"]
    assert (train["round"], train["steps"], train["n_train"], train["n_test"]) == (
        0,
        11.0,
        172.0,
        89.0,
    )  # ceil(172/16)
    assert train["eval_split"] == "test" and 0 < train["train_loss"] < 1.0
    assert 0.0 <= train["global_accuracy"] <= 1.0 and train["global_loss"] > 0
    evaluation = out["evaluate"]
    assert evaluation["accuracy"] == pytest.approx(train["global_accuracy"])  # the same model, the same split
    intervals = evaluation["intervals"]
    assert (intervals["n"], intervals["n_pos"], intervals["n_neg"]) == (89, 33, 56)
    for metric in ("accuracy", "auc", "sensitivity", "specificity"):
        assert intervals[metric]["lo"] <= intervals[metric]["value"] <= intervals[metric]["hi"], metric


# (case id, the site's settings, the reason in the decline)
DECLINED = [
    (
        "learning-rate",
        {"limits": {"max_learning_rate": 0.01}},
        "learning rate 0.1 is above this site's max_learning_rate 0.01",
    ),
    (
        "batch-size",
        {"limits": {"min_batch_size": 32}},
        "batch_size 16 is below this site's min_batch_size 32",
    ),
    ("requires-dp", {"limits": {"require_dp": True}, "dp_max_epsilon": 4.0}, "this site requires DP-SGD"),
]


@pytest.mark.parametrize(("settings", "why"), [c[1:] for c in DECLINED], ids=[c[0] for c in DECLINED])
def test_site_floor_declines_the_round(tmp_path: Path, settings: dict, why: str) -> None:
    declined = _client(tmp_path, settings)["declined"]
    assert declined.startswith("site hungary: site policy: ") and why in declined
