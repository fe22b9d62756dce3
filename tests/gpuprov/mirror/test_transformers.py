"""transformers and huggingface_hub configured only through the environment, as on a GPU
host: HF_ENDPOINT and HF_HUB_DISABLE_XET are read at import, so each client runs in a
fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = r"""
import json, sys
from huggingface_hub import constants, hf_hub_download, snapshot_download
from transformers import AutoConfig, AutoTokenizer

cfg = AutoConfig.from_pretrained("acme/tiny-bert")
tok = AutoTokenizer.from_pretrained("acme/tiny-bert")
out = {
    "endpoint": constants.ENDPOINT,
    "model_type": cfg.model_type,
    "hidden_size": cfg.hidden_size,
    "ids": tok("the mirror serves models")["input_ids"],
    "unk": tok("zebra")["input_ids"],
    "vocab": tok.vocab_size,
}
if sys.argv[1] == "online":
    out["snapshot"] = snapshot_download("acme/tiny-bert", allow_patterns=["*.json"])
    out["readme"] = open(hf_hub_download("acme/tiny-bert", "README.md")).read()
print(json.dumps(out))
"""


def run_client(mode: str, endpoint: str, hf_home, offline: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {"HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(hf_home)}
    env |= {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_TELEMETRY": "1"}
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_autoconfig_and_autotokenizer_through_hf_endpoint_then_offline(mirror, tmp_path):
    hf_home = tmp_path / "hf-home"
    online = run_client("online", mirror.url, hf_home)
    assert online["endpoint"] == mirror.url
    assert online["model_type"] == "bert" and online["hidden_size"] == 8
    # Word ids from the trained WordLevel vocab: known words are not [UNK] (id 1).
    assert len(online["ids"]) == 4 and 1 not in online["ids"] and online["unk"] == [1]
    assert online["snapshot"].endswith(mirror.shas["model"])
    assert online["readme"].startswith("# tiny-bert")
    # The filled cache then serves HF_HUB_OFFLINE=1 with no mirror at all.
    offline = run_client("offline", "http://127.0.0.1:9", hf_home, offline=True)
    assert offline["ids"] == online["ids"] and offline["model_type"] == "bert"
