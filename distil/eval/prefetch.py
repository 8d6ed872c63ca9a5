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
import threading
from concurrent.futures import Future
from typing import Callable

from loguru import logger

Fetch = Callable[[], str]


class Prefetch:
    """Run each (key, fetch) in a background thread, in order; `fetch()` returns a local path.

    `sources`: [(key, Future of the path)] in the given order; `seconds[key]`: how long
    each download took; `errors[key]`: the exception of a failed one. `close()` (also on
    leaving a `with` block) cancels downloads not yet started and waits for the running
    one; `close(wait=False)` does not wait (a program about to exit: the thread is a
    daemon, and huggingface_hub resumes a partial file next time).
    """

    def __init__(self, fetches: list[tuple[str, Fetch]]):
        self.seconds: dict[str, float] = {}
        self.errors: dict[str, BaseException] = {}
        self._fetches = list(fetches)
        self.sources: list[tuple[str, Future]] = [(key, Future()) for key, _ in fetches]
        self._thread = threading.Thread(target=self._loop, name="prefetch", daemon=True)
        self._thread.start()
        if fetches:
            logger.info(f"downloading {len(fetches)} student(s) in the background while the teacher runs")

    def _loop(self) -> None:
        for (key, fetch), (_, future) in zip(self._fetches, self.sources):
            if not future.set_running_or_notify_cancel():
                continue  # cancelled by close()
            started = time.perf_counter()
            try:
                path = str(fetch())
            except BaseException as exc:
                self.errors[key] = exc
                future.set_exception(exc)
                continue
            finally:
                self.seconds[key] = time.perf_counter() - started
            logger.info(f"{key}: downloaded in {self.seconds[key]:.1f}s")
            future.set_result(path)

    @property
    def download_s(self) -> float:
        """Seconds the background thread spent downloading (all students together)."""
        return sum(self.seconds.values())

    def close(self, wait: bool = True) -> None:
        for _, future in self.sources:
            future.cancel()  # only those not started yet
        if wait:
            self._thread.join()

    def __enter__(self) -> "Prefetch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
