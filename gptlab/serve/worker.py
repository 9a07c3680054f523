"""The engine worker: one thread that owns the Engine and batches every active request.

The HTTP side (asyncio) never touches the model. It `submit`s a prompt and reads events from an
asyncio queue; the worker thread loops:

    1. open slots for waiting requests while slots are free (prefill),
    2. one `Engine.step()` for all running slots together (one batched forward pass),
    3. push each new token to its request's queue with `loop.call_soon_threadsafe`,
    4. close finished and cancelled slots.

Requests join and leave between decode steps (continuous batching), so 8 concurrent clients
share each forward pass instead of queueing behind each other. Queues are unbounded (a request
holds at most max_tokens events), so a slow reader only grows its own queue and never stalls
the loop. Cancelling (a client that disconnected) frees the slot before the next step.

Events on a request's queue: ("token", id), then exactly one of ("done", finish_reason) with
finish_reason 'stop' | 'length' | 'cancelled', or ("error", message).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field

from gptlab.infer.engine import Engine, SamplingParams


@dataclass
class Request:
    prompt_ids: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.perf_counter)

    def cancel(self) -> None:
        """Thread-safe: the worker closes the slot before its next step."""
        self.cancelled.set()

    def _push(self, event: tuple) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self.cancelled.set()


def _push_many(items: list[tuple[Request, tuple]]) -> None:
    """One wake-up of each event loop per step, not one per token."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Request, tuple]]] = {}
    for req, event in items:
        by_loop.setdefault(req.loop, []).append((req, event))
    for loop, batch in by_loop.items():
        try:
            loop.call_soon_threadsafe(_deliver, batch)
        except RuntimeError:  # that loop is closed: nobody is listening any more
            for req, _ in batch:
                req.cancelled.set()


def _deliver(batch: list[tuple[Request, tuple]]) -> None:
    for req, event in batch:
        req.events.put_nowait(event)


class EngineWorker:
    """Owns `engine` from its own thread; `submit()` from the event loop, `stop()` at shutdown."""

    def __init__(self, engine: Engine, idle_wait_s: float = 0.05):
        self.engine = engine
        self.idle_wait_s = idle_wait_s
        self._inbox: queue.Queue[Request] = queue.Queue()
        self._running: dict[int, Request] = {}  # slot -> request
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.steps = 0  # decode steps run (for /health and tests)
        self.tokens = 0  # tokens produced

    # ----- event-loop side -----
    def start(self) -> EngineWorker:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="gptlab-engine", daemon=True)
                self._thread.start()
        return self

    def submit(self, prompt_ids: list[int], params: SamplingParams,
               loop: asyncio.AbstractEventLoop | None = None) -> Request:
        """Queue a prompt; read the returned request's `events` queue from `loop`."""
        self.start()
        req = Request(list(prompt_ids), params, loop or asyncio.get_running_loop(), asyncio.Queue())
        self._inbox.put(req)
        return req

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def active(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return self._inbox.qsize()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ----- worker thread -----
    def _admit(self) -> None:
        block = not self._running  # idle: wait a little for work instead of spinning
        while self.engine.free_slots() > 0:
            try:
                req = self._inbox.get(timeout=self.idle_wait_s) if block else self._inbox.get_nowait()
            except queue.Empty:
                return
            block = False
            if req.cancelled.is_set():
                req._push(("done", "cancelled"))
                continue
            try:
                slot = self.engine.open_slot(req.prompt_ids, req.params)
            except (ValueError, RuntimeError) as e:  # prompt too long for the cache, etc.
                req._push(("error", str(e)))
                continue
            self._running[slot] = req

    def _reap(self) -> None:
        for slot, req in list(self._running.items()):
            reason = "cancelled" if req.cancelled.is_set() else self.engine.finish_reason(slot)
            if reason is not None:
                self.engine.close_slot(slot)
                del self._running[slot]
                req._push(("done", reason))

    def _fail_all(self, message: str) -> None:
        for slot, req in list(self._running.items()):
            self.engine.close_slot(slot)
            req._push(("error", message))
        self._running.clear()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._admit()
                self._reap()  # max_tokens=0 or cancelled before the first step
                if not self._running:
                    continue
                try:
                    out = self.engine.step(list(self._running))
                except Exception as e:  # noqa: BLE001 - one bad step must not kill the server
                    self._fail_all(f"engine error: {type(e).__name__}: {e}")
                    continue
                self.steps += 1
                self.tokens += len(out)
                _push_many([(self._running[s], ("token", t)) for s, t in out.items()
                            if not self._running[s].cancelled.is_set()])
                self._reap()
        finally:
            self._fail_all("server is shutting down")
            while True:
                try:
                    self._inbox.get_nowait()._push(("error", "server is shutting down"))
                except queue.Empty:
                    break
