"""Dynamic batching: requests arriving while the model is busy (or within ``wait_ms`` of the
first) are prepared and generated together, up to ``max_batch_size`` prompts, in one worker
thread.

    job = batcher.submit(lambda: processor.process(row, generation=True), options, on_token=f)
    sample = job.prepared.result()     # the prompt, or the error that makes the request a 4xx
    completion = job.result.result()

Preparing a prompt (decoding media, feature extraction) is many tiny torch ops, which run far
faster on one torch thread than split over several: a preparing thread makes each request's
prompt as it arrives while the worker generates the previous round, each on one torch thread
(the server process's setting), so the two keep two cores busy. Requests whose generation
options differ run in separate batches of the same round (one ``generate`` call decodes with one
set of options). ``on_token(token_id)`` is called from the worker thread as tokens are made.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mmgen.model.generation import Completion, GenerationOptions, generate


@dataclass
class Job:
    prepare: Callable[[], Any]
    options: GenerationOptions
    on_token: Callable[[int], None] | None
    prepared: Future = field(default_factory=Future)  # the sample, or why it cannot be made
    result: Future = field(default_factory=Future)  # the Completion
    sample: Any = None


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    largest: int = 0  # most prompts generated together

    def add(self, size: int) -> None:
        self.batches += 1
        self.requests += size
        self.largest = max(self.largest, size)


class Batcher:
    def __init__(
        self, model: Any, processor: Any, *, max_batch_size: int = 16, wait_ms: float = 5.0
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model, self.processor = model, processor
        self.max_batch_size, self.wait = max_batch_size, wait_ms / 1000
        self.stats = BatchStats()
        # prompts are prepared in their own thread while the worker generates: two threads of
        # torch work, each on one torch thread (preparing is many tiny ops, fastest so)
        import torch

        torch.set_num_threads(1)
        self._prepare_pool = ThreadPoolExecutor(1, thread_name_prefix="mmgen-prepare")
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="mmgen-batcher", daemon=True)
        self._thread.start()

    def submit(
        self,
        prepare: Callable[[], Any],
        options: GenerationOptions,
        on_token: Callable[[int], None] | None = None,
    ) -> Job:
        """Queue a request: ``prepare()`` makes its prompt (a ``ProcessedSample``) in the
        worker; ``job.prepared`` and ``job.result`` resolve as it goes."""
        job = Job(prepare, options, on_token)
        self._prepare_pool.submit(self._prepare_one, job)
        self._queue.put(job)
        return job

    @staticmethod
    def _prepare_one(job: Job) -> None:
        try:
            job.sample = job.prepare()
        except Exception as error:  # the request's own problem: its 4xx, nothing more
            job.prepared.set_exception(error)
            job.result.set_exception(error)
            return
        job.prepared.set_result(job.sample)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)
        self._prepare_pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            deadline = time.monotonic() + self.wait
            while len(jobs) < self.max_batch_size:
                try:  # whatever is already waiting joins at once; then until the deadline
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # stop after this round
                    break
                jobs.append(job)
            ready = self._prepare(jobs)
            groups: dict[GenerationOptions, list[Job]] = {}
            for job in ready:
                groups.setdefault(job.options, []).append(job)
            for options, group in groups.items():
                self._generate(options, group)

    @staticmethod
    def _prepare(jobs: list[Job]) -> list[Job]:
        """The jobs whose prompts were made (waiting for those still being prepared)."""
        ready = []
        for job in jobs:
            try:
                job.prepared.result()
            except Exception:  # its request already has its error
                continue
            ready.append(job)
        return ready

    def _generate(self, options: GenerationOptions, jobs: list[Job]) -> None:
        live = [job for job in jobs if job.result.set_running_or_notify_cancel()]
        if not live:
            return

        def on_token(row: int, token: int) -> None:
            callback = live[row].on_token
            if callback is not None:
                callback(token)

        try:
            completions: list[Completion] = generate(
                self.model, self.processor, [job.sample for job in live], options,
                on_token=on_token if any(job.on_token for job in live) else None,
            )  # fmt: skip
        except Exception as error:  # every request of the batch gets it; the server lives on
            for job in live:
                job.result.set_exception(error)
            return
        self.stats.add(len(live))
        for job, completion in zip(live, completions, strict=True):
            job.result.set_result(completion)
