"""A pool of started, idle containers for the docker backend (one execution each)."""

from __future__ import annotations

import queue
import threading
from typing import Any

from agentrl.errors import ConfigError, SandboxError

__all__ = ["ContainerPool", "remove_container"]


class ContainerPool:
    """Started, idle containers ready for one execution each; refilled in the background.

    Args:
        start: callable that creates and starts one idle container.
        size: how many to keep ready.
    """

    def __init__(self, start: Any, size: int) -> None:
        if size < 1:
            raise ConfigError(f"pool size must be >= 1, got {size}")
        self._start, self.size = start, size
        self._ready: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._starting = 0
        self._closed = False
        self.started = 0
        for _ in range(size):
            self._spawn_one()

    @property
    def ready(self) -> int:
        """Containers waiting to be used."""
        return self._ready.qsize()

    def acquire(self) -> Any:
        """A ready container (started now if none is ready); schedules a replacement."""
        if self._closed:
            raise SandboxError("the container pool was closed")
        try:
            container = self._ready.get_nowait()
        except queue.Empty:
            container = self._start()
            self.started += 1
        self._spawn_one()
        return container

    def close(self) -> None:
        """Remove every idle container."""
        self._closed = True
        while True:
            try:
                remove_container(self._ready.get_nowait())
            except queue.Empty:
                return

    def _spawn_one(self) -> None:
        with self._lock:
            if self._closed or self._ready.qsize() + self._starting >= self.size:
                return
            self._starting += 1
        threading.Thread(target=self._fill, daemon=True).start()

    def _fill(self) -> None:
        try:
            container = self._start()
        except SandboxError:
            return
        finally:
            with self._lock:
                self._starting -= 1
        self.started += 1
        if self._closed:
            remove_container(container)
        else:
            self._ready.put(container)


def remove_container(container: Any) -> None:
    """Force-remove ``container``, ignoring a container that is already gone."""
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    try:
        container.remove(force=True)
    except (DockerException, RequestException):
        pass  # best effort: the container may already be gone
