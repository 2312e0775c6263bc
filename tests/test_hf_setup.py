"""The user's Hugging Face setup is respected (issue #14 item 6): without ``cache_dir`` a job
keeps the user's HF_HOME (a site-wide cache); with it, the hub token the user stored with
``hf auth login`` is still found. Each case runs in a fresh process with a fake home, and asks
huggingface_hub itself (``get_token``, ``constants.HF_HOME``) what it sees."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

TOKEN = "hf_user_token_from_the_stored_file"
# Everything huggingface_hub reads a token or a home from: the test sets what each case needs
HF_VARS = ("HF_HOME", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "XDG_CACHE_HOME", "HF_OIDC_RESOURCE")

# How a job sets up: the entry scripts' preamble (``_bootstrap.logged``) or the prefetch CLI
VIA_BOOTSTRAP = """
from types import SimpleNamespace
sys.path.insert(0, {entry!r})
from _bootstrap import logged
with logged(SimpleNamespace(config=CONFIG, log=[])):
    report()
"""
VIA_PREFETCH_CLI = """
from workflow_scripts import prefetch
prefetch.prefetch_model = lambda model_id, revision: report() or {{}}
argv = ["some/model"] + (["--cache-dir", CONFIG["cache_dir"]] if CONFIG.get("cache_dir") else [])
prefetch.main(argv)
"""
PROLOGUE = """
import json, os, sys
sys.path.insert(0, {repo!r})
CONFIG = json.loads({config!r})

def report():
    from huggingface_hub import constants, get_token
    print("SEEN " + json.dumps({{"token": get_token(), "hf_home": constants.HF_HOME,
                                "env_home": os.environ.get("HF_HOME"),
                                "token_path": os.environ.get("HF_TOKEN_PATH")}}))
"""


def seen(tmp_path, config, env_extra, via):
    env = {k: v for k, v in os.environ.items() if k not in HF_VARS}
    env.update(HOME=str(tmp_path / "home"), **env_extra)
    code = PROLOGUE.format(repo=str(REPO), config=json.dumps(config)) + via.format(
        entry=str(REPO / "workflow_scripts" / "entry")
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("SEEN ", 1)[1].splitlines()[0])


def store_token(folder, token=TOKEN):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "token").write_text(token)
    return folder


@pytest.fixture(params=[VIA_BOOTSTRAP, VIA_PREFETCH_CLI], ids=["bootstrap", "prefetch_cli"])
def via(request):
    return request.param


def test_with_cache_dir_the_token_under_the_default_home_is_found(tmp_path, via):
    store_token(tmp_path / "home" / ".cache" / "huggingface")  # `hf auth login`, nothing set
    got = seen(tmp_path, {"cache_dir": "study-cache"}, {}, via)
    assert got["token"] == TOKEN
    assert got["hf_home"] == got["env_home"] == str(tmp_path / "study-cache")


def test_with_cache_dir_the_token_under_a_site_hf_home_is_found(tmp_path, via):
    site = store_token(tmp_path / "site" / "hf")
    got = seen(tmp_path, {"cache_dir": str(tmp_path / "scratch" / "hf")}, {"HF_HOME": str(site)}, via)
    assert got["token"] == TOKEN
    assert got["hf_home"] == str(tmp_path / "scratch" / "hf")
    assert got["token_path"] == str(site / "token")


def test_without_cache_dir_the_users_hf_home_is_untouched(tmp_path, via):
    site = store_token(tmp_path / "site" / "hf")
    got = seen(tmp_path, {}, {"HF_HOME": str(site)}, via)
    assert got == {"token": TOKEN, "hf_home": str(site), "env_home": str(site), "token_path": None}


def test_a_token_given_by_the_environment_is_left_to_win(tmp_path, via):
    store_token(tmp_path / "home" / ".cache" / "huggingface")
    got = seen(tmp_path, {"cache_dir": "study-cache"}, {"HF_TOKEN": "hf_from_env"}, via)
    assert got["token"] == "hf_from_env" and got["token_path"] is None


def test_a_token_stored_in_the_cache_dir_itself_is_used(tmp_path, via):
    store_token(tmp_path / "home" / ".cache" / "huggingface")
    store_token(tmp_path / "study-cache", token="hf_stored_in_cache_dir")
    got = seen(tmp_path, {"cache_dir": "study-cache"}, {}, via)
    assert got["token"] == "hf_stored_in_cache_dir" and got["token_path"] is None


def test_no_token_anywhere_stays_no_token(tmp_path, via):
    got = seen(tmp_path, {"cache_dir": "study-cache"}, {}, via)
    assert got["token"] is None and got["token_path"] is None
