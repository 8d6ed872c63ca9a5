"""Distil miner: commit your distilled model on chain, once per hotkey, and ask validators about it.

    python neurons/miner.py --wallet.name W --wallet.hotkey H --netuid 97 \\
        --model-repo you/your-model [--revision SHA] [--yes] [--teacher PATH_OR_REPO]
    python neurons/miner.py --model-repo you/your-model --revision SHA --dry-run
    python neurons/miner.py --wallet.name W --wallet.hotkey H --status
    python neurons/miner.py --wallet.name W --wallet.hotkey H --write-owner ./my-model

A hotkey commits exactly once, forever: to submit another model, register a new hotkey.
The commitment pins `repo@revision`; without `--revision` the repo's current commit is
asked from the hub and pinned. Every repo must hold, at that revision, a `distil.json`
naming the hotkey that commits it (spec v3; `--write-owner DIR` writes it for this wallet's
hotkey): a commitment whose repo names no hotkey or another one is INVALID. Before a
commitment, and in a dry run, the validators' pre-checks run on the model at that revision
(`distil-check` runs them alone), the ownership check against this wallet's hotkey
included; a model that fails them is not committed. `--skip-checks` skips every check but
the ownership one (not recommended).
A one-shot command, not a service: run it once per hotkey (under pm2 it would restart-loop).
Exit status (docs/cli.md): 0 done, 1 the pre-checks refuse the model (commit or --dry-run),
2 anything else: a bad argument, a hotkey that cannot commit, no validator answering
`--status`, the hub or the chain out of reach.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loguru import logger  # noqa: E402

from distil import TEACHER_REPO, __version__  # noqa: E402
from distil.checks.args import source_problem  # noqa: E402
from distil.checks.codes import is_verdict  # noqa: E402
from distil.checks.pipeline import hub_failure  # noqa: E402
from distil.commitment import Commitment, CommitmentError, validate_repo, validate_revision  # noqa: E402
from distil.exits import EXIT_ERROR, EXIT_OK, EXIT_VERDICT  # noqa: E402
from distil.hub import HubError, HuggingFaceStore, LocalModelStore, ModelStore  # noqa: E402
from distil.protocol import DistilStatus  # noqa: E402
from template.base import BaseMinerNeuron  # noqa: E402
from template.chain import ChainError  # noqa: E402
from template.config import add_alias, parse_config  # noqa: E402
from template.log import setup_logging_from_config  # noqa: E402
from template.text import LINE_LIMIT, printable  # noqa: E402
from template.wallet import WalletError, load_wallet  # noqa: E402


class AlreadyCommitted(ChainError):
    """This hotkey already has a commitment; there is no second one."""


class NotConfirmed(Exception):
    """The user did not confirm the commitment."""


class PrecheckFailed(Exception):
    """The model fails the validators' pre-checks (`verdict`), or they could not run; nothing committed."""

    def __init__(self, message: str, verdict: bool):
        super().__init__(message)
        self.verdict = verdict


class Miner(BaseMinerNeuron):
    """Commit a distilled model (`repo@revision`) for this hotkey, once, forever."""

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        super().add_args(parser)
        parser.add_argument("--model-repo", dest="model_repo", default=None, help="Hugging Face repo id, namespace/name")
        add_alias(parser, "--model_repo", dest="model_repo", help="alias of --model-repo")
        parser.add_argument(
            "--revision", default=None, help="40-hex commit sha to pin (default: the repo's current commit)"
        )
        parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
        parser.add_argument(
            "--dry-run",
            dest="dry_run",
            action="store_true",
            help="validate, run the pre-checks and print the exact commitment string; no wallet, no chain",
        )
        parser.add_argument(
            "--status",
            action="store_true",
            help="show this hotkey's registration and commitment, and ask every validator about it "
            "(exit 1 when none answers)",
        )
        parser.add_argument(
            "--status.timeout", dest="status_timeout", type=float, default=12.0, help="seconds per validator"
        )
        parser.add_argument(
            "--skip-checks",
            dest="skip_checks",
            action="store_true",
            help="commit without running the pre-checks first, except the ownership check (distil.json must "
            "name this hotkey); not recommended: a failing model is disqualified and the hotkey cannot commit again",
        )
        parser.add_argument(
            "--write-owner",
            dest="write_owner",
            default=None,
            metavar="DIR",
            help="write DIR/distil.json naming this wallet's hotkey (upload it with the model, then commit), and exit",
        )
        parser.add_argument(
            "--teacher",
            default=None,
            help=f"the teacher's tokenizer for the tokenizer check: a directory or a repo (default: {TEACHER_REPO})",
        )
        parser.add_argument(
            "--mock.models_dir",
            dest="mock_models_dir",
            default=None,
            help="with --mock: directory of <namespace>/<name> model directories served as repos",
        )

    def commit(self, commitment: Commitment, assume_yes: bool = False, confirm=input, precheck=None) -> str:
        """Write `commitment` for this hotkey unless it already has one. Returns the stored string.

        `precheck(commitment)`, when given, runs after the cheap chain checks and before the
        confirmation; it raises PrecheckFailed to stop the commitment.
        """
        existing = self.current_commitment()
        if existing is not None:
            raise AlreadyCommitted(
                f"hotkey {self.hotkey} already committed {existing.data!r} at block {existing.block}. "
                "One commitment per hotkey, forever: to submit another model, register a new hotkey."
            )
        self.sync()  # still registered? (raises NotRegisteredError saying how to register)
        if precheck is not None:
            precheck(commitment)
        data = str(commitment)
        if not assume_yes:
            if not sys.stdin.isatty() and confirm is input:
                raise NotConfirmed("not a terminal and --yes not given; refusing to commit without confirmation")
            answer = confirm(
                f"Commit {data} for hotkey {self.hotkey} on netuid {self.config.netuid}? "
                "This cannot be changed or undone for this hotkey. [y/N] "
            )
            if answer.strip().lower() not in ("y", "yes"):
                raise NotConfirmed("commitment not confirmed; nothing written")
        record = self.write_commitment(data)
        return record.data


def model_store(config) -> ModelStore:
    if config.mock:
        if not config.mock_models_dir:
            raise HubError("--mock needs --mock.models_dir to resolve revisions without the hub")
        return LocalModelStore.from_root(config.mock_models_dir)
    return HuggingFaceStore(endpoint=os.environ.get("HF_ENDPOINT"))


def build_commitment(config, store: ModelStore | None = None) -> Commitment:
    """Validate `--model-repo` and `--revision`; ask the store for the revision when none is given."""
    try:
        repo = validate_repo(config.model_repo)
    except CommitmentError as e:
        if "@" not in config.model_repo:
            raise
        # the `repo@revision` form this script prints, pasted back
        repo, _, revision = config.model_repo.partition("@")
        raise CommitmentError(f"{e}; to pin a revision, pass --model-repo {repo} --revision {revision}") from None
    if config.revision:
        revision = validate_revision(config.revision)
    else:
        store = store or model_store(config)
        revision = store.resolve_revision(repo)
        logger.info(f"{repo}: pinning the current commit {revision}")
    return Commitment(repo, revision)


def run_prechecks(config, commitment: Commitment, store: ModelStore, hotkey: str | None = None):
    """The validators' pre-checks on the model at the pinned revision, through `store`, the
    ownership check against `hotkey` included (None, in a dry run: the file must name a hotkey).

    Private repos are checked (miners may publish after committing) with a warning: the
    validators wait for the repo to become public, then disqualify it after the grace period.
    Raises PrecheckFailed with the failing code and detail.
    """
    from distil.checks import CheckLimits, check_commitment, load_reference

    teacher_source = config.teacher or TEACHER_REPO
    try:
        teacher = load_reference(teacher_source, store=store)
    except Exception as e:
        raise PrecheckFailed(
            f"could not load the teacher's tokenizer from {teacher_source} ({type(e).__name__}: {e}); "
            "pass --teacher PATH_OR_REPO", verdict=False,
        ) from None
    logger.info(f"running the pre-checks on {commitment} (tokenizer reference: {teacher.source})")
    result = check_commitment(store, commitment, CheckLimits(require_public=False), teacher=teacher, hotkey=hotkey,
                              progress=True)
    if not result.ok:
        if not is_verdict(result.code):  # the hub, our disk or memory: no verdict, try again
            raise PrecheckFailed(f"the pre-checks could not run: {result.code}: {result.detail} (nothing committed; "
                                 "try again later)", verdict=False)
        fix = ("Write distil.json for this hotkey with --write-owner DIR and upload it; --skip-checks still checks it"
               if result.code in ("OWNER_MISSING", "OWNER_MISMATCH")
               else "Run `distil-check` for the full report, or --skip-checks to commit anyway")
        raise PrecheckFailed(
            f"pre-checks failed: {result.code}: {result.detail} (reason {result.reason}; nothing committed. {fix})",
            verdict=True,
        )
    if not result.seen_public:
        print(
            f"warning: {commitment.repo} is not public. Validators keep it pending and disqualify it if it is "
            "not public within the grace period (one day by default) after the commitment.",
            file=sys.stderr,
        )
    logger.info(f"pre-checks passed: {result.params:,} parameters, content hash {result.content_hash}")
    return result


def check_owner(commitment: Commitment, store: ModelStore, hotkey: str) -> None:
    """The ownership check alone (no download): with --skip-checks, still refuse a repo whose
    distil.json does not name `hotkey`, since validators would refuse it whatever its weights.
    Raises PrecheckFailed."""
    from distil.checks import CheckLimits, check_ownership

    result = check_ownership(store, commitment, hotkey, CheckLimits(require_public=False))
    if not result.ok:
        if not is_verdict(result.code):  # the hub or our disk: no verdict, try again
            raise PrecheckFailed(f"the ownership check could not run: {result.code}: {result.detail} (nothing "
                                 "committed; try again later)", verdict=False)
        raise PrecheckFailed(
            f"ownership check failed: {result.code}: {result.detail} (reason {result.reason}; nothing committed. "
            f"Write the file with `python neurons/miner.py --write-owner DIR` and upload it)", verdict=True,
        )


def write_owner(config) -> int:
    """`--write-owner DIR`: DIR/distil.json naming this wallet's hotkey."""
    from distil.checks.owner import write_owner_file

    directory = Path(config.write_owner).expanduser()
    if not directory.is_dir():
        print(f"error: --write-owner {config.write_owner}: no such directory (give the model's directory)", file=sys.stderr)
        return EXIT_ERROR
    hotkey = load_wallet(config).hotkey.ss58_address
    try:
        path = write_owner_file(directory, hotkey)
    except OSError as e:
        print(f"error: --write-owner {config.write_owner}: cannot write distil.json ({e.strerror or type(e).__name__})",
              file=sys.stderr)
        return EXIT_ERROR
    print(f"wrote {path} naming hotkey {hotkey}: upload it with the model, then commit the new revision from this "
          "hotkey", file=sys.stderr)
    print(path)
    return EXIT_OK


class StatusUnavailable(ChainError):
    """The validators cannot be asked from here."""


def make_dendrite(wallet, mock: bool = False):
    """bittensor's Dendrite, which asks the internet for this machine's external IP.

    With `--mock` everything runs on this machine, so the address is 127.0.0.1 and nothing
    is looked up; without it, a failed lookup is a clear error instead of a traceback.
    """
    import bittensor as bt
    from bittensor.utils import networking

    if not mock:
        try:
            return bt.Dendrite(wallet=wallet.hotkey)
        except networking.ExternalIPNotFound:
            raise StatusUnavailable(
                "--status needs internet access: bittensor's Dendrite could not find this machine's external IP"
            ) from None
    lookup = networking.get_external_ip
    networking.get_external_ip = lambda: "127.0.0.1"
    try:
        return bt.Dendrite(wallet=wallet.hotkey)
    finally:
        networking.get_external_ip = lookup


def query_status(config, wallet, chain) -> list[tuple[str, dict | None, str | None]]:
    """Ask each validator's axon about this hotkey: [(validator hotkey, answer or None, error)]."""
    axons = chain.validator_axons()
    if not axons:
        return []
    dendrite = make_dendrite(wallet, mock=bool(config.mock))
    infos = [a.to_axon_info() for a in axons]
    responses = dendrite.query(
        infos, DistilStatus(hotkey=wallet.hotkey.ss58_address), timeout=config.status_timeout, deserialize=False
    )
    if not isinstance(responses, list):
        responses = [responses]
    out = []
    for axon, response in zip(axons, responses):
        code = getattr(response.dendrite, "status_code", None)
        if code == 200:
            out.append((axon.hotkey, response.deserialize(), None))
        else:
            out.append((axon.hotkey, None, f"{code} {getattr(response.dendrite, 'status_message', '')}".strip()))
    return out


def format_own_status(hotkey: str, netuid: int, uid: int | None, record) -> str:
    """What the chain itself says about this hotkey: registered (and its uid), its commitment."""
    registration = (
        f"registered as uid {uid} on netuid {netuid}"
        if uid is not None
        else f"NOT registered on netuid {netuid} (deregistered, or never registered)"
    )
    commitment = f"{record.data} (block {record.block})" if record is not None else "none"
    return printable(f"hotkey {hotkey}: {registration}; commitment: {commitment}", LINE_LIMIT)


def show_status(config, wallet, chain) -> int:
    """Print the hotkey's own chain record, then each validator's answer. 2 when none answered (try again)."""
    hotkey = wallet.hotkey.ss58_address
    uid = chain.metagraph().uid_of(hotkey)
    print(format_own_status(hotkey, int(config.netuid), uid, chain.commitment_of(hotkey)))
    rows = query_status(config, wallet, chain)
    print(format_status(rows))
    if not any(answer is not None for _, answer, _ in rows):
        print("error: no validator answered; try again later", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def format_status(rows) -> str:
    """One line per validator. Each line is escaped and bounded: an answer is a peer's text, and a hostile
    validator could otherwise forge, erase or hide lines on the miner's terminal."""
    if not rows:
        return "no validator is serving an axon on this subnet"
    lines = []
    for validator, answer, error in rows:
        if answer is None:
            lines.append(f"{validator}: no answer ({error})")
            continue
        kl = f"{answer['kl']:.6f}" if answer.get("kl") is not None else "-"
        lines.append(
            f"{validator}: status={answer.get('status') or 'unknown'} commitment={answer.get('commitment') or '-'} "
            f"kl={kl} rank={answer.get('rank') or '-'} reason={answer.get('reason') or '-'}"
            + (f" ({answer['detail']})" if answer.get("detail") else "")
            + f" | king={answer.get('king_hotkey') or '-'} king_kl="
            + (f"{answer['king_kl']:.6f}" if answer.get("king_kl") is not None else "-")
        )
    return "\n".join(printable(line, LINE_LIMIT) for line in lines)


def dry_run(config, commitment: Commitment, store) -> int:
    """What the real commit would do, short of the chain: the same pre-checks, then the string."""
    if config.skip_checks:
        print("dry run: --skip-checks: the pre-checks would not run", file=sys.stderr)
    else:
        try:
            run_prechecks(config, commitment, store())
        except PrecheckFailed as e:
            if not e.verdict:
                print(f"dry run: error: {e}", file=sys.stderr)
                return EXIT_ERROR
            print(f"dry run: the commit would be refused: {e}", file=sys.stderr)
            return EXIT_VERDICT
    print(
        f"dry run: the commit would write {commitment} for your hotkey, once and forever, if it is registered "
        "and has no commitment yet (not checked: a dry run uses no wallet and no chain)",
        file=sys.stderr,
    )
    print(commitment)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = Miner.build_parser(__doc__.split("\n\n")[0])
    parser.prog = "miner.py"  # its usage errors name it, however it was started
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    config = parse_config(parser, argv)
    setup_logging_from_config(config)
    if config.mock_models_dir and not Path(config.mock_models_dir).is_dir():
        parser.error(f"--mock.models_dir {config.mock_models_dir}: no such directory")
    if config.teacher and (problem := source_problem(config.teacher, "--teacher", required=())):
        parser.error(problem)  # a typo of a directory is named as such, not sent to the hub
    try:
        if config.status:
            from template.base.neuron import make_chain

            return show_status(config, load_wallet(config), make_chain(config, existing_file=True))
        if config.write_owner:
            return write_owner(config)
        if not config.model_repo:
            parser.error("--model-repo is required (namespace/name of your model on Hugging Face)")
        stores: list[ModelStore] = []

        def store() -> ModelStore:
            """One store for resolving the revision and for the pre-checks, built on first use."""
            if not stores:
                stores.append(model_store(config))
            return stores[0]

        commitment = build_commitment(config, store=None if config.revision else store())
        if config.dry_run:
            return dry_run(config, commitment, store)
        if not config.yes and not sys.stdin.isatty():  # before the pre-checks, which download the model
            raise NotConfirmed(
                "not a terminal and --yes not given; refusing to commit without confirmation (nothing checked or written)"
            )
        miner = Miner(config, setup_logs=False)
        if config.skip_checks:
            print(
                "WARNING: --skip-checks: committing WITHOUT the pre-checks (only the ownership file is checked). If "
                "the model fails them, validators disqualify it and this hotkey can never commit again.",
                file=sys.stderr,
            )

            def precheck(c: Commitment) -> None:
                check_owner(c, store(), miner.hotkey)
        else:

            def precheck(c: Commitment) -> None:
                run_prechecks(config, c, store(), hotkey=miner.hotkey)

        stored = miner.commit(commitment, assume_yes=config.yes, precheck=precheck)
        print(f"committed {stored} for hotkey {miner.hotkey} (distil {__version__})")
        print(stored)
        return EXIT_OK
    except CommitmentError as e:
        print(f"error: invalid commitment: {e}", file=sys.stderr)
        return EXIT_ERROR
    except HubError as e:  # resolving the revision: a repo that is not there is a verdict, an outage is not
        code, detail = hub_failure(e)
        print(f"error: could not resolve the model on the hub: {detail}", file=sys.stderr)
        return EXIT_VERDICT if is_verdict(code) else EXIT_ERROR
    except PrecheckFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_VERDICT if e.verdict else EXIT_ERROR
    except (AlreadyCommitted, NotConfirmed, WalletError, ChainError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
