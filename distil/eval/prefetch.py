"""Downloads that overlap the teacher pass.

A round needs the teacher first and each student only once the teacher's cache exists,
so students' downloads run in one background thread, in the given order (earliest
commit first), while the teacher loads and generates. `Prefetch.sources` hands the
engine one Future per student; the engine scores each as soon as its download is done,
and a failed download fails that student alone (transient).

    with Prefetch([(key, lambda: download(repo)) for key, repo in models]) as prefetch:
        result = run_round(teacher, prefetch.sources, prompts, spec)

One thread, not one per student: the downloads share the link, so running them in
parallel would only delay the first student, which is needed first.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from loguru import logger

Fetch = Callable[[], str]


class Prefetch:
    """Run each (key, fetch) in a background thread, in order; `fetch()` returns a local path.

    `sources`: [(key, Future of the path)] in the given order; `seconds[key]`: how long
    each download took; `errors[key]`: the exception of a failed one. Leaving the `with`
    block cancels downloads not yet started and waits for the running one.
    """

    def __init__(self, fetches: list[tuple[str, Fetch]]):
        self.seconds: dict[str, float] = {}
        self.errors: dict[str, BaseException] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self.sources: list[tuple[str, Future]] = [(key, self._executor.submit(self._run, key, fetch)) for key, fetch in fetches]
        if fetches:
            logger.info(f"downloading {len(fetches)} student(s) in the background while the teacher runs")

    def _run(self, key: str, fetch: Fetch) -> str:
        started = time.perf_counter()
        try:
            path = str(fetch())
        except BaseException as exc:
            self.errors[key] = exc
            raise
        finally:
            self.seconds[key] = time.perf_counter() - started
        logger.info(f"{key}: downloaded in {self.seconds[key]:.1f}s")
        return path

    @property
    def download_s(self) -> float:
        """Seconds the background thread spent downloading (all students together)."""
        return sum(self.seconds.values())

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Prefetch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
