"""Downloads overlap the teacher pass (distil-eval and the validator's scorer), a failed
download fails that student alone, and the hub server's throttle holds its bandwidth.

The overlap is shown without timing: each student's download waits until the teacher
pass has begun, so a round that downloaded before the teacher would fail it.
"""

import json
import threading
import time

import pytest

from distil.commitment import Commitment
from distil.eval import cli, engine
from distil.eval.prompts import JsonlPromptSource
from distil.eval.spec import EvalSpec
from distil.hub import HuggingFaceStore
from distil.scoring.epoch import FailedModel, ScoredModel
from distil.validator.scorer import EngineScorer
from eval_helpers import model_dir, new_dir
from hub_server import HubServer

SEED = "0x" + "7a" * 32
GONE = "0" * 40


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The local hub, as the default endpoint of the real huggingface_hub client."""
    import huggingface_hub.constants as constants

    with HubServer() as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        yield server


@pytest.fixture
def teacher_running(monkeypatch):
    """An event set when the teacher pass (generation + cache) begins."""
    event = threading.Event()
    build = engine.build_teacher_cache

    def marked(*args, **kwargs):
        event.set()
        return build(*args, **kwargs)

    monkeypatch.setattr(engine, "build_teacher_cache", marked)
    return event


def after_teacher_starts(event, what):
    if not event.wait(90):
        raise TimeoutError(f"{what} was downloaded before the teacher pass began (no overlap)")


@pytest.fixture(scope="module")
def prompts_file():
    path = new_dir("prefetch") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"text": f"Prompt {i}: students download while the teacher runs."}) + "\n" for i in range(4)))
    return str(path)


def test_distil_eval_downloads_hub_students_while_the_teacher_runs(hub, teacher_running, monkeypatch, prompts_file, capsys):
    revision = hub.add_repo("alice/near", model_dir("near"))
    resolve = cli.resolve_model

    def gated(source):
        if source.startswith("alice/"):
            after_teacher_starts(teacher_running, source)
        return resolve(source)

    monkeypatch.setattr(cli, "resolve_model", gated)
    code = cli.main(["--teacher", model_dir("teacher"), "--student", f"alice/near@{revision}", "--student", model_dir("near"),
                     "--student", f"alice/gone@{GONE}", "--prompts-file", prompts_file, "--seed", SEED,
                     "--n-prompts", "2", "--max-new-tokens", "4", "--devices", "cpu,cpu", "--json", "--timings"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1  # alice/gone got its verdict
    models = {m["key"]: m for m in doc["models"]}
    assert list(models) == [f"alice/near@{revision}", model_dir("near"), f"alice/gone@{GONE}"]
    hub_near, local_near = models[f"alice/near@{revision}"], models[model_dir("near")]
    assert hub_near["status"] == local_near["status"] == "ok"
    assert hub_near["per_prompt_kl"] == local_near["per_prompt_kl"]  # the same files, scored on another worker
    gone = models[f"alice/gone@{GONE}"]["failure"]  # judged by the header checks, before the teacher; never downloaded
    assert gone["kind"] == "invalid" and gone["phase"] == "precheck" and gone["detail"].startswith("NOT_PUBLIC: ")
    assert hub.weight_bytes_served() > 0
    assert doc["devices"] == ["cpu", "cpu"]
    assert doc["timings"]["download_s"] > 0 and "download_wait_s" in doc["timings"]


def test_validator_scorer_downloads_while_the_teacher_runs(hub, teacher_running, tmp_path, prompts_file):
    revision = hub.add_repo("alice/near", model_dir("near"))

    class GatedStore(HuggingFaceStore):
        def download(self, commitment, *args, **kwargs):
            after_teacher_starts(teacher_running, str(commitment))
            return super().download(commitment, *args, **kwargs)

    store = GatedStore(endpoint=hub.endpoint, cache_dir=tmp_path / "cache", token=False)
    spec = EvalSpec(n_prompts=2, max_new_tokens=4)
    scorer = EngineScorer(store, spec, model_dir("teacher"), "tiny-teacher", JsonlPromptSource(prompts_file))
    models = [("hk-near", Commitment("alice/near", revision)), ("hk-gone", Commitment("alice/gone", GONE))]
    scores = scorer.score(models, 100, "7a" * 32)
    assert isinstance(scores.results["hk-near"], ScoredModel)
    gone = scores.results["hk-gone"]
    assert isinstance(gone, FailedModel) and gone.kind == "transient" and gone.code == "DOWNLOAD_UNAVAILABLE"
    for timings in (scores.timings, scores.round_json["timings"]):
        assert timings["download_s"] > 0 and timings["round_s"] > 0 and "download_wait_s" in timings
    assert scores.round_json["devices"] == ["cpu"]


def test_throttled_hub_holds_its_bandwidth(tmp_path):
    from huggingface_hub import hf_hub_download

    with HubServer(bandwidth=4 * 2**20) as server:  # 4 MiB/s
        (tmp_path / "repo").mkdir()
        (tmp_path / "repo" / "blob.safetensors").write_bytes(b"\0" * (2 * 2**20))
        revision = server.add_repo("bob/blob", tmp_path / "repo")
        started = time.monotonic()
        hf_hub_download("bob/blob", "blob.safetensors", revision=revision, endpoint=server.endpoint,
                        cache_dir=tmp_path / "cache", token=False)
        assert time.monotonic() - started >= 0.45  # 2 MiB at 4 MiB/s: at least 0.5 s (a lower bound only)
    with pytest.raises(ValueError, match="bandwidth"):
        HubServer(bandwidth=0)
