"""Check a pickle's opcodes before anything unpickles it: size, nesting depth, memo indices, memory.

CPython's unpickler trusts the stream it reads, and so does every unpickler built on it (torch's
`weights_only` one included). A dict key of tuples nested 200,000 deep makes `hash` recurse in C until
the process segfaults (no recursion guard there); `LONG_BINPUT 2**27` makes the C unpickler grow its
memo list to 2**27 slots (2 GiB) for a 9-byte pickle; `set(x)` called a thousand times through REDUCE
on one large list copies it a thousand times. Both checkpoint readers (the restricted one for
official release files, `torch.load(weights_only=True)` for ours) call `scan` first, so none of that
reaches an unpickler: the refusal is one line and costs about what the pickle's bytes cost.

`scan` walks the opcodes with `pickletools.genops` (nothing is built, nothing imported) and keeps, for
each value on a simulated stack, its nesting depth and a rough size. Containers are shared through the
memo like the real objects, so items added later count where they land. What it bounds:

- the pickle's length and its number of opcodes;
- nesting depth (tuples, lists, dicts, sets, objects and their arguments): `MAX_DEPTH`, far above
  what a checkpoint holds (about 10) and far below Python's recursion limit, so neither C code without
  a guard (tuple hashing) nor our own recursive code (the digest, repr in messages) runs out of stack;
- memo indices: a pickler numbers its memo entries 0, 1, 2..., so no genuine index exceeds the number
  of opcodes before it;
- an estimate of the memory the objects take (`MAX_OBJECT_BYTES`), which counts the one-level copies
  a REDUCE/NEWOBJ/BUILD makes of its arguments.

Not tracked: a container deepened through the memo after it was put inside another (the outer one's
depth is not raised). Only lists, dicts and objects can be deepened that way, and every C routine that
walks them (repr, comparison) has a recursion guard; the readers turn a RecursionError into one line.
"""

from __future__ import annotations

import pickletools
from collections.abc import Iterable

MAX_PICKLE_BYTES = 64 << 20  # data.pkl of a checkpoint: names, small values, tensor records (<1 MiB)
MAX_OPCODES = 8_000_000  # a checkpoint: ~5k + 3 per report (600k reports after 500 epochs of 60k)
MAX_DEPTH = 100
MAX_OBJECT_BYTES = 512 << 20  # estimated; 500 epochs of report curves: ~90 MiB

_OBJECT = 64  # bytes an empty container or object takes, roughly
_ITEM = 16  # bytes one more item of a container takes, roughly
_NUMBER = 32  # bytes an int or a float takes


class PickleScanError(ValueError):
    """A pickle refused before unpickling: one line saying what is wrong (the caller names the file)."""


class _Value:
    """What the scan knows of one value: nesting depth, size, and the sizes of its items (for a
    REDUCE that copies them, like `set(args[0])`)."""

    __slots__ = ("depth", "inner", "size")

    def __init__(self, depth: int, size: int, inner: int = 0) -> None:
        self.depth, self.size, self.inner = depth, size, inner


_SCALAR = _Value(0, _NUMBER)  # every int, float, None, bool, global: shared, never changed

_LEAVES = {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "NONE", "NEWTRUE", "NEWFALSE", "STRING", "BINSTRING", "SHORT_BINSTRING", "BINBYTES",
    "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
    "BINUNICODE8", "GLOBAL", "PERSID", "NEXT_BUFFER", "EXT1", "EXT2", "EXT4",
}  # fmt: skip
_SCALARS = {"BININT", "BININT1", "BININT2", "BINFLOAT", "NONE", "NEWTRUE", "NEWFALSE"}
_EMPTY = {"EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "EMPTY_TUPLE"}
_FROM_MARK = {"TUPLE", "LIST", "DICT", "FROZENSET", "OBJ", "INST"}  # a new value from the marked items
_INTO_TOP = {"APPENDS", "SETITEMS", "ADDITEMS"}  # the marked items added to the value below the mark
_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET = {"GET", "BINGET", "LONG_BINGET"}
_NOTHING = {"PROTO", "FRAME", "STOP", "READONLY_BUFFER"}


def _new(items: Iterable[_Value], copied: int = 0) -> _Value:
    """A container (or object) holding `items`; `copied`: bytes its constructor copies."""
    items = list(items)
    depth = 1 + max((v.depth for v in items), default=0)
    return _Value(depth, _OBJECT + _ITEM * len(items) + copied, sum(v.size for v in items))


class _Scan:
    def __init__(self) -> None:
        self.stack: list[_Value] = []
        self.marks: list[int] = []
        self.memo: list[_Value | None] = []
        self.total = 0  # estimated bytes of every object built so far

    def push(self, value: _Value, cost: int) -> None:
        if value.depth > MAX_DEPTH:
            raise PickleScanError(
                f"nests containers more than {MAX_DEPTH} deep (a checkpoint nests about 10)"
            )
        self.stack.append(value)
        self.charge(cost)

    def charge(self, cost: int) -> None:
        self.total += cost
        if self.total > MAX_OBJECT_BYTES:
            raise PickleScanError(f"would build objects taking more than {MAX_OBJECT_BYTES >> 20} MiB")

    def pop(self, count: int = 1) -> list[_Value]:
        if count > len(self.stack) - (self.marks[-1] if self.marks else 0):
            raise PickleScanError("is malformed (an opcode reads below its stack)")
        items = self.stack[len(self.stack) - count :]
        del self.stack[len(self.stack) - count :]
        return items

    def pop_mark(self) -> list[_Value]:
        if not self.marks:
            raise PickleScanError("is malformed (an opcode needs a MARK that is not there)")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def add_to_top(self, items: list[_Value], copied: int = 0) -> None:
        """APPEND(S)/SETITEM(S)/ADDITEMS/BUILD: `items` go into the value on top (shared via the memo)."""
        target = self.pop()[0]
        self.stack.append(target)
        if target is not _SCALAR:  # adding to a scalar fails in the unpickler itself
            target.depth = max(target.depth, 1 + max((v.depth for v in items), default=0))
            target.size += _ITEM * len(items) + copied
            target.inner += sum(v.size for v in items)
            if target.depth > MAX_DEPTH:
                self.push(target, 0)  # refuses
        self.charge(_ITEM * len(items) + copied)

    def step(self, name: str, arg: object, index: int) -> None:
        if name in _LEAVES:
            sized = isinstance(arg, (str, bytes, bytearray)) and len(arg) > _NUMBER
            value = _Value(0, len(arg) + _OBJECT) if sized else _SCALAR  # type: ignore[arg-type]
            self.push(value, value.size)
        elif name in _EMPTY:
            self.push(_Value(1, _OBJECT), _OBJECT)
        elif name == "MARK":
            self.marks.append(len(self.stack))
        elif name in _FROM_MARK:
            items = self.pop_mark()
            value = _new(items, sum(v.size for v in items) if name in ("OBJ", "INST") else 0)
            self.push(value, value.size)
        elif name in _TUPLE_N:
            value = _new(self.pop(_TUPLE_N[name]))
            self.push(value, value.size)
        elif name in _INTO_TOP:
            self.add_to_top(self.pop_mark())
        elif name in ("APPEND", "SETITEM"):
            self.add_to_top(self.pop(1 if name == "APPEND" else 2))
        elif name == "BUILD":
            state = self.pop()[0]
            self.add_to_top([state], copied=state.size)  # setstate may copy the state's items
        elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX"):
            args = self.pop(3 if name == "NEWOBJ_EX" else 2)[1:]  # the callable or class is a scalar
            value = _new(args, copied=sum(v.inner for v in args))  # e.g. set(x) copies x's items
            self.push(value, value.size)
        elif name in ("STACK_GLOBAL", "BINPERSID"):
            self.pop(2 if name == "STACK_GLOBAL" else 1)
            self.push(_SCALAR, _NUMBER)
        elif name == "POP":
            if self.marks and self.marks[-1] == len(self.stack):
                self.marks.pop()
            else:
                self.pop()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            top = self.pop()[0]
            self.stack += [top, top]
        elif name in _PUT or name == "MEMOIZE":
            self.put(len(self.memo) if name == "MEMOIZE" else int(arg), index)  # type: ignore[call-overload]
        elif name in _GET:
            got = self.memo[arg] if isinstance(arg, int) and 0 <= arg < len(self.memo) else None
            if got is None:
                raise PickleScanError(f"is malformed (memo entry {arg} read before it is written)")
            self.push(got, _ITEM)
        elif name not in _NOTHING:
            raise PickleScanError(f"holds opcode {name}, which no checkpoint holds")

    def put(self, slot: int, index: int) -> None:
        if not 0 <= slot <= index:
            raise PickleScanError(
                f"puts memo index {slot} past the {index} opcodes before it (a memory bomb)"
            )
        if slot >= len(self.memo):
            self.memo.extend([None] * (slot + 1 - len(self.memo)))
        self.memo[slot] = self.pop()[0]
        self.stack.append(self.memo[slot])  # type: ignore[arg-type]


def scan(data: bytes | bytearray | memoryview) -> None:
    """Refuse (`PickleScanError`: one line, a predicate such as "nests containers more than 100 deep",
    for the caller to put after the file's name) a pickle that an unpickler should
    not be handed: too long, too many opcodes, nested too deep, a memo index past its length, objects
    that would take too much memory, or malformed. Returns when it is safe to unpickle."""
    if len(data) > MAX_PICKLE_BYTES:
        raise PickleScanError(f"is {len(data)} bytes, more than {MAX_PICKLE_BYTES >> 20} MiB")
    state = _Scan()
    stack = state.stack
    try:
        for index, (op, arg, _pos) in enumerate(
            pickletools.genops(data if isinstance(data, bytes) else bytes(data))
        ):
            if index >= MAX_OPCODES:
                raise PickleScanError(f"has more than {MAX_OPCODES} opcodes")
            if op.name in _SCALARS:  # the bulk of a long pickle (history curves): one append
                stack.append(_SCALAR)
                state.total += _NUMBER
            else:
                state.step(op.name, arg, index)
        state.charge(0)
    except PickleScanError:
        raise
    except (ValueError, TypeError, IndexError, OverflowError, UnicodeDecodeError) as exc:
        # genops on a truncated or invalid stream ("no more bytes", "at position N, opcode ... unknown")
        raise PickleScanError(f"is malformed ({str(exc).splitlines()[0][:120]})") from None


__all__ = ["MAX_DEPTH", "MAX_OBJECT_BYTES", "MAX_OPCODES", "MAX_PICKLE_BYTES", "PickleScanError", "scan"]
