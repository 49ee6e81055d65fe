"""Task ids that carry their A2A contextId (format version 1).

An agent that mints its task ids with :func:`encode` (or, with a2a-sdk, with
:class:`ContextTaskIdGenerator`) lets every a2a-affinity gateway route a
task-only call -- ``tasks/get``, cancel, resubscribe, push configs, a
follow-up that names only the taskId -- to the replica that holds the task,
with no shared store and across gateway restarts: the gateway reads the
contextId out of the id and hashes it as it hashes the conversation's turns.

Format (the Rust reader is ``crates/core/src/task_id.rs``)::

    c1.<kind><context>.<random>.<check>

``c1.`` is the format and its version. ``<kind><context>`` is the contextId:
``u`` and the 16 bytes of a canonical lower-case UUID in unpadded base64url
(22 characters), or ``s`` and the contextId's UTF-8 bytes in unpadded
base64url. ``<random>`` is 16 random bytes (22 characters). ``<check>`` is
FNV-1a 32 over every byte before the last ``.``, big endian, unpadded
base64url (6 characters). All characters are URL-unreserved.
"""

from __future__ import annotations

import base64
import re
import secrets
import uuid

__all__ = [
    'PREFIX',
    'MAX_LENGTH',
    'encode',
    'decode',
]

PREFIX = 'c1.'
# The gateway's default max_value_bytes: a longer task id is not read.
MAX_LENGTH = 256

_UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')
_B64 = re.compile(r'[A-Za-z0-9_-]*')


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode('ascii')


def _unb64(text: str) -> bytes | None:
    """Strict unpadded base64url, as the gateway reads it."""
    if not _B64.fullmatch(text) or len(text) % 4 == 1:
        return None
    data = base64.urlsafe_b64decode(text + '=' * (-len(text) % 4))
    # Unused bits of the last character must be zero: one text, one reading.
    return data if _b64(data) == text else None


def _fnv1a(data: bytes) -> bytes:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h.to_bytes(4, 'big')


def encode(context_id: str, random: bytes | None = None) -> str:
    """The task id for a task of ``context_id``.

    ``random`` (16 bytes) is drawn from :mod:`secrets` when not given; pass
    it only to reproduce an id (tests).
    """
    if not context_id:
        raise ValueError('context_id must be a non-empty string')
    if random is None:
        random = secrets.token_bytes(16)
    if len(random) != 16:
        raise ValueError('random must be 16 bytes')
    if _UUID.fullmatch(context_id):
        body = 'u' + _b64(uuid.UUID(context_id).bytes)
    else:
        body = 's' + _b64(context_id.encode('utf-8'))
    signed = f'{PREFIX}{body}.{_b64(random)}'
    return f'{signed}.{_b64(_fnv1a(signed.encode("ascii")))}'


def decode(task_id: str) -> str | None:
    """The contextId ``task_id`` carries, or ``None`` if it is not an id of
    this format (wrong prefix or shape, bad base64url, failed check)."""
    if not isinstance(task_id, str) or not task_id.startswith(PREFIX):
        return None
    parts = task_id[len(PREFIX):].split('.')
    if len(parts) != 3:
        return None
    body, random, check = parts
    signed = task_id[: task_id.rfind('.')]
    if len(check) != 6 or _unb64(check) != _fnv1a(signed.encode('utf-8')):
        return None
    if len(random) != 22 or _unb64(random) is None:
        return None
    kind, payload = body[:1], body[1:]
    data = _unb64(payload)
    if data is None:
        return None
    if kind == 'u' and len(payload) == 22:
        return str(uuid.UUID(bytes=data))
    if kind == 's':
        try:
            text = data.decode('utf-8')
        except UnicodeDecodeError:
            return None
        return text or None
    return None


try:
    from a2a.server.id_generator import IDGenerator, IDGeneratorContext
except ImportError:  # a2a-sdk not installed: encode/decode still work.
    pass
else:

    class ContextTaskIdGenerator(IDGenerator):
        """a2a-sdk task id generator: ids that carry the task's contextId.

        Give it to the request handler through the request context builder::

            from a2a.server.agent_execution import SimpleRequestContextBuilder
            handler = DefaultRequestHandler(
                agent_executor=..., task_store=..., agent_card=...,
                request_context_builder=SimpleRequestContextBuilder(
                    task_id_generator=ContextTaskIdGenerator()),
            )

        Without a contextId (the SDK makes the task id before it mints a
        context for a message that has none), or when the id would be longer
        than ``max_length`` (the gateway's ``max_value_bytes``), it returns a
        plain UUID, which gateways route by what they learned.
        """

        def __init__(self, max_length: int = MAX_LENGTH) -> None:
            self.max_length = max_length

        def generate(self, context: IDGeneratorContext) -> str:
            if context.context_id:
                task_id = encode(context.context_id)
                if len(task_id) <= self.max_length:
                    return task_id
            return str(uuid.uuid4())

    __all__.append('ContextTaskIdGenerator')
