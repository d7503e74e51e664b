"""Machine instructions per request, counted by Valgrind's callgrind (issue 24).

CPU time per request moves with the machine: its clock, turbo, its cache, the other
guests on the host. The number of instructions a request executes does not: the same
code on the same libraries runs the same instructions on any x86-64 machine. Hardware
counters (`perf stat -e instructions`) would count them at full speed, but virtual
machines often hide them (this project's do: perf reports them "not supported"), so
bench/layers.py counts them under callgrind instead, about fifty times slower.

A process under Valgrind talks to it through "client requests": a fixed sequence of
instructions that does nothing on a real CPU and that Valgrind recognises. Python cannot
emit it, so this module writes the sequence (x86-64 only) into an executable page and
calls it through ctypes: ZERO_STATS before a measured stretch, DUMP_STATS_AT after it,
which writes the stretch's totals to a file named from `--callgrind-out-file`.
User-space instructions only: what the kernel does for a system call is not counted.
"""

import ctypes
import mmap
import platform
import re
from pathlib import Path

# mov rax, rdi (the argument block); xor edx, edx (the answer outside Valgrind: 0);
# Valgrind's amd64 preamble (rol rdi by 3, 13, 61, 51: no change); xchg rbx, rbx (the
# request); mov rax, rdx (its answer); ret.
_CODE = bytes.fromhex("4889f8 31d2 48c1c703 48c1c70d 48c1c73d 48c1c733 4887db 4889d0 c3")
_RUNNING_ON_VALGRIND = 0x1001
_CALLGRIND = (ord("C") << 24) | (ord("T") << 16)
_ZERO_STATS, _DUMP_STATS_AT = _CALLGRIND + 1, _CALLGRIND + 3  # callgrind.h's order
_keep: list[object] = []  # the page and the function, alive for the process


def _request_function() -> ctypes._CFuncPtr | None:
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(_CODE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    function = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)(address)
    _keep.extend((page, function))
    return function


_function = _request_function()


def _request(code: int, argument: int = 0) -> int:
    if _function is None:
        return 0
    block = (ctypes.c_uint64 * 6)(code, argument, 0, 0, 0, 0)
    return int(_function(ctypes.addressof(block)))


def under_callgrind() -> bool:
    """Whether this process runs under Valgrind (callgrind is the run's choice)."""
    return _request(_RUNNING_ON_VALGRIND) > 0


def zero() -> None:
    """Start a measured stretch: callgrind's counters back to zero."""
    _request(_ZERO_STATS)


def dump(label: str) -> None:
    """End a measured stretch: callgrind writes its totals, described by `label`."""
    text = ctypes.create_string_buffer(label.encode())
    _request(_DUMP_STATS_AT, ctypes.addressof(text))


_DESC = re.compile(r"^desc: Trigger: Client Request: (.*)$", re.MULTILINE)
# A dump's `summary:` is what ran between the zero and the dump. Its `totals:` line (the
# sum of the per-block lines below it) is not: in a stretch that follows heavy work, it
# also holds cost of that work that callgrind had not yet added to its per-block counters
# when they were zeroed (several million instructions on the first stretch of a run).
_SUMMARY = re.compile(r"^summary: (\d+)", re.MULTILINE)


def read_dumps(directory: Path) -> dict[str, int]:
    """Instructions of each labelled stretch, from callgrind's files in `directory`."""
    found: dict[str, int] = {}
    for path in directory.iterdir():
        text = path.read_text(errors="replace")
        label, summary = _DESC.search(text), _SUMMARY.search(text)
        if label and summary:
            found[label.group(1)] = int(summary.group(1))
    return found
