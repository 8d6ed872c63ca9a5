"""The mock world of `--mock`: an in-memory chain and local model directories served as repos.

A scenario file (`--mock.scenario`, format in docs/validators.md) names the teacher and the
miners' model directories; `load_scenario` registers each miner and commits its model at
its commit block. The template's chain knows nothing of models: this module is where the
mock chain meets the model store.
"""

from __future__ import annotations

import json
from pathlib import Path

from distil import TEACHER_REPO
from distil.hub import LocalModelStore
from distil.scoring.epoch import DEFAULT_COMMIT_DELAY, first_seed_block
from template.mock_chain import InMemoryChain


class ScenarioError(ValueError):
    """A mock scenario that cannot be used; the message says what is wrong."""


def load_scenario(path: str | Path, netuid: int, validator_hotkey: str, epoch_length: int, chain_path: str | None = None,
                  commit_delay: int = DEFAULT_COMMIT_DELAY):
    """A mock world from a scenario file: the in-memory chain and a local model store.

    Each miner's directory is served as a repo (`repo`, default `mock/<dirname>`) whose
    revision is derived from its contents, registered and committed as `repo@revision` at
    its `commit_block`. The chain starts at `start_block` (default: the first epoch boundary
    S with every commit block < S − `commit_delay`, so the first round may score every
    commitment). With `chain_path`, an existing chain file is resumed instead of rebuilt (a
    restarted validator).
    """
    try:
        scenario = json.loads(Path(path).read_text())
        if not isinstance(scenario, dict) or not isinstance(scenario.get("miners", []), list):
            raise ScenarioError(f"scenario {path}: not a JSON object with a 'miners' list (see docs/validators.md)")
        base = Path(path).resolve().parent
        teacher = base / scenario["teacher"]  # an absolute path stays as it is
        miners = scenario.get("miners", [])
        store = LocalModelStore()
        commitments = []
        for miner in miners:
            model = base / miner["model"]
            if not model.is_dir():
                raise ScenarioError(f"scenario {path}: miner {miner.get('hotkey')}: model directory {model} does not exist")
            repo = miner.get("repo") or f"mock/{model.name}"
            commitments.append((miner["hotkey"], f"{repo}@{store.add(repo, model)}", int(miner["commit_block"]),
                                miner.get("coldkey")))  # optional owner coldkey (default: one of its own)
    except ScenarioError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ScenarioError(f"cannot use scenario {path}: {type(e).__name__}: {e}") from None
    if not teacher.is_dir():
        raise ScenarioError(f"scenario {path}: teacher directory {teacher} does not exist")
    teacher = str(teacher)
    if chain_path and Path(chain_path).exists():
        return InMemoryChain(netuid=netuid, path=chain_path), store, teacher
    last_commit = max((c[2] for c in commitments), default=None)
    default_start = 0 if last_commit is None else first_seed_block(last_commit, epoch_length, commit_delay)
    start = int(scenario.get("start_block", default_start))
    chain = InMemoryChain(netuid=netuid, start_block=start, path=chain_path)
    chain.register(validator_hotkey, validator_permit=True, stake=1000.0)
    for hotkey, data, block, coldkey in commitments:
        chain.register(hotkey, coldkey=coldkey)
        chain.put_commitment(hotkey, data, block=block)
    return chain, store, teacher


def mock_world(config, validator_hotkey: str):
    """(chain, store, teacher) for `--mock`; the scenario's teacher becomes the tokenizer
    reference unless `--checks.teacher` names another. With `--mock.models_dir DIR` the
    store also serves `DIR/<namespace>/<name>` as `namespace/name`, as the miner does, so a
    mock miner's commitment of a local model can be scored."""
    if not config.mock_scenario:
        raise ScenarioError("--mock needs --mock.scenario FILE (a mock chain and models to serve; see docs/validators.md)")
    chain, store, teacher = load_scenario(
        config.mock_scenario, int(config.netuid), validator_hotkey, int(config.neuron.epoch_length), config.mock_chain_state,
        int(config.eval.commit_delay),
    )
    chain.block_time_s = float(config.mock_block_time)
    if config.mock_models_dir:
        store.serve_root(config.mock_models_dir)
    if config.checks.teacher == TEACHER_REPO:
        config.checks.teacher = teacher
    return chain, store, teacher
