"""The file key store: `keyring.json` (the commit point) and one PKCS#8 `<kid>.pem` per live key.

A change writes the new PEMs first, then `keyring.json`, then deletes the PEMs it no longer
names, each file through temp file, fsync, rename and a directory fsync. A crash at any point
leaves the old or the new `keyring.json` with all its PEMs; the leftovers (orphan PEMs, temp
files) are removed by the next load. An flock on `.lock` serialises processes sharing the directory.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from keys._algorithms._base import Algorithm
from keys._ring._document import build_ring, decode_records, encode_ring
from keys._ring._errors import CorruptKeyRing, KeyStoreUnavailable
from keys._ring._keyring import KeyRing
from keys._ring._rotation_policy import RotationPolicy

RING_FILE = "keyring.json"
_LOCK_FILE = ".lock"
_TEMP_PREFIX = ".tmp-"

Change = Callable[[KeyRing], KeyRing]
StepHook = Callable[[str, Path], None]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileKeyStore:
    """The key ring in one directory (`$VOICEBANK_STATE/keys`), shared by the processes of one machine.

    `step_hook(step, path)` runs after each durable step ("written": a temp file is complete,
    "replaced": it took its final name, "deleted": a PEM is gone); tests raise from it to crash.
    """

    def __init__(
        self,
        directory: Path,
        *,
        passphrase: bytes | None,
        policy: RotationPolicy,
        algs: Sequence[Algorithm] = ("ES256",),
        clock: Callable[[], float] = time.time,
        step_hook: StepHook | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.policy = policy
        self._passphrase = passphrase
        self._algs = tuple(algs)
        self._clock = clock
        self._step_hook = step_hook
        self._ring_path = self.directory / RING_FILE
        self._cached: KeyRing | None = None
        self._signature: tuple[int, int, int] | None = None
        self._mutex = asyncio.Lock()

    def __repr__(self) -> str:
        return f"FileKeyStore({str(self.directory)!r})"

    # -- async API ---------------------------------------------------------------------------------

    async def load(self, now: float) -> KeyRing:
        """The stored ring, bootstrapped when the directory holds none."""
        return (await self._transact(lambda ring: ring, now))[0]

    async def peek(self) -> KeyRing | None:
        """The stored ring as it is, or None when there is none; nothing is created, cleaned or cached."""
        try:
            return await asyncio.to_thread(self._stored)
        except OSError as exc:
            raise KeyStoreUnavailable(f"{self.directory}: {exc.strerror or type(exc).__name__}") from None

    async def current(self) -> KeyRing:
        """The cached ring; reread only when `keyring.json` was replaced (by this or another process)."""
        if self._cached is not None and self._signature == self._stat():
            return self._cached
        return await self.load(self._clock())

    async def rotate(self, now: float, *, alg: Algorithm | None = None, force: bool = False) -> KeyRing:
        def change(ring: KeyRing) -> KeyRing:
            return ring.rotate(now, self.policy, alg=alg, force=force)

        return (await self._transact(change, now))[0]

    async def rotate_if_due(self, now: float) -> KeyRing | None:
        if not (await self.current()).due(now, self.policy):
            return None
        # Re-checked under the lock: another process may have rotated in the meantime.
        ring, changed = await self._transact(lambda ring: ring.advance(now, self.policy), now)
        return ring if changed else None

    async def revoke(self, kid: str, now: float) -> KeyRing:
        return (await self._transact(lambda ring: ring.revoke(kid, now), now))[0]

    async def retire_alg(self, alg: Algorithm, now: float) -> KeyRing:
        return (await self._transact(lambda ring: ring.retire_alg(alg, now), now))[0]

    async def _transact(self, change: Change, now: float) -> tuple[KeyRing, bool]:
        async with self._mutex:
            try:
                return await asyncio.to_thread(self._transact_sync, change, now)
            except OSError as exc:
                # A directory that cannot be read or written (permissions, a read-only or full disk)
                # is an outage of the store, not a bug: one line naming the directory and the cause.
                raise KeyStoreUnavailable(f"{self.directory}: {exc.strerror or type(exc).__name__}") from None

    # -- the locked read-modify-write, run in a worker thread ---------------------------------------

    def _transact_sync(self, change: Change, now: float) -> tuple[KeyRing, bool]:
        with self._locked():
            stored = self._read()
            if stored is None:
                ring = KeyRing.bootstrap(self._algs, now)
            else:
                ring = stored.ensure_algs(self._algs, now, self.policy.publish_ahead)
            new = change(ring)
            if new is not stored:
                self._write(stored, new)
            self._cached, self._signature = new, self._stat()
            return new, new is not ring

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._ring_path)
        except OSError:  # gone or unreadable: the next load says which
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _read(self) -> KeyRing | None:
        """Under the lock: the committed ring (None when there is none), then leftovers removed."""
        ring = self._stored()
        self._clean(set(ring.pairs) if ring is not None else set())
        return ring

    def _stored(self) -> KeyRing | None:
        """The ring `keyring.json` names, with its private keys decrypted; None when there is none."""
        if not self._ring_path.exists():
            return None
        records = decode_records(self._ring_path.read_bytes(), str(self._ring_path))
        pems = {}
        for record in records:
            path = self.directory / f"{record.kid}.pem"
            if record.live and path.exists():
                pems[record.kid] = path.read_bytes()
        known = self._cached.pairs if self._cached is not None else None
        try:
            return build_ring(records, pems, self._passphrase, known)
        except CorruptKeyRing as err:
            raise CorruptKeyRing(f"{self._ring_path}: {err}") from None

    def _clean(self, live: set[str]) -> None:
        """Remove what a crashed writer left: temp files and PEMs that `keyring.json` does not name."""
        removed = False
        for path in self.directory.iterdir():
            orphan = path.suffix == ".pem" and path.stem not in live
            if orphan or path.name.startswith(_TEMP_PREFIX):
                path.unlink(missing_ok=True)
                removed = True
        if removed:
            _fsync_dir(self.directory)

    def _write(self, old: KeyRing | None, new: KeyRing) -> None:
        """New PEMs, then keyring.json (the commit point), then the PEMs of keys that left the ring."""
        before = set(old.pairs) if old is not None else set()
        for kid, pair in new.pairs.items():
            if kid not in before:
                self._atomic_write(self.directory / f"{kid}.pem", pair.private_pem(self._passphrase))
        self._atomic_write(self._ring_path, encode_ring(new))
        for kid in sorted(before - set(new.pairs)):
            path = self.directory / f"{kid}.pem"
            path.unlink(missing_ok=True)
            self._step("deleted", path)
        _fsync_dir(self.directory)

    def _atomic_write(self, path: Path, data: bytes) -> None:
        fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=self.directory)  # mode 0600
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        # No cleanup on failure on purpose: a crash leaves the temp file, and the next load removes it.
        self._step("written", path)
        os.replace(temp, path)
        _fsync_dir(self.directory)
        self._step("replaced", path)

    def _step(self, step: str, path: Path) -> None:
        if self._step_hook is not None:
            self._step_hook(step, path)
