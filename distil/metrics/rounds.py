"""Each round's document, kept where a user can find it: `<full_path>/rounds/round-<block>.json`.

The file is what `distil-eval --json` prints and `distil-eval --round FILE` re-scores: the
round's seed block, seed, resolved spec, prompt and continuation token ids and every
model's per-prompt KL. The newest `--neuron.keep_rounds` files are kept (by seed block);
older ones are deleted. Written atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from loguru import logger

ROUND_FILE = re.compile(r"^round-(\d+)\.json$")


class RoundFiles:
    def __init__(self, directory: str | Path, keep: int):
        if keep < 1:
            raise ValueError(f"--neuron.keep_rounds must be at least 1, not {keep}")
        self.directory = Path(directory)
        self.keep = keep

    def path(self, block: int) -> Path:
        return self.directory / f"round-{int(block)}.json"

    def save(self, round_json: dict[str, Any], block: int) -> Path | None:
        """Write the round's file and prune; a disk error is logged, never raised (reporting)."""
        path = self.path(block)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(round_json, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            self.prune()
        except OSError as e:
            logger.warning(f"could not keep the round file {path}: {e}")
            return None
        logger.info(f"round {block}: kept as {path} (re-score with: distil-eval --round {path} ...)")
        return path

    def blocks(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.directory.iterdir() if (m := ROUND_FILE.match(p.name)))

    def prune(self) -> None:
        for block in self.blocks()[: -self.keep]:
            self.path(block).unlink(missing_ok=True)
