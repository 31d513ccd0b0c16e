"""Reading compiler output: SASS (``cuobjdump -sass``) into the main loop's instruction count and mix,
and ``ptxas -v`` logs into registers, spills and diagnostics. Pure text processing, no compiler run.

**The main loop** is read from the SASS: of the backward branches (``BRA`` to a lower address), the one
whose range holds the most MMA instructions (then the longest); its instructions (``NOP`` padding
excluded) are one iteration of the key-tile loop (forward, dq) or the query-tile loop (dk/dv, column
norms), as each warp executes it when no branch inside is taken. Opcodes are classed by
:func:`classify_opcode`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

_SASS_LINE = re.compile(
    r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P(?:T|\d+)\s+)?"  # address, guard predicate
    r"([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)[^;]*;"  # opcode with its modifiers, operands
)
_BRANCH_TARGET = re.compile(r"\bBRA\s+(?:\S+\s+)?`?\(?(?:\.L_x_\d+)?\)?\s*0x([0-9a-f]+)")

_OPCODE_CLASSES = {
    "mma": "HGMMA HMMA IMMA DMMA QGMMA IGMMA BGMMA",
    "mufu": "MUFU",
    "fp": "FFMA FADD FMUL FMNMX FSEL FSET FSWZADD FRND F2F F2FP F2I I2F I2FP F2IP HADD2 HMUL2 HFMA2 HMNMX2 "
          "HSET2 DADD DMUL DFMA",
    "int": "IADD3 IADD IADD32I IMAD IMUL LOP3 LOP SHF SHL SHR LEA IABS IMNMX VIADD VIMNMX SGXT BMSK BREV FLO "
           "POPC PRMT SEL IDP ISCADD",
    "pred": "ISETP FSETP PSETP PLOP3 P2R R2P HSETP2 DSETP VOTE VOTEU FCHK ELECT UP2UR UR2UP",
    "mem": "LDG STG LDS STS LDSM STSM LDGSTS LD ST LDL STL ATOM ATOMG ATOMS RED REDG LDC ULDC UTMALDG "
           "UTMASTG UTMAPF UTMACCTL UBLKCP CCTL",
    "sync": "BAR SYNCS WARPGROUP DEPBAR LDGDEPBAR MEMBAR WARPSYNC BSSY BSYNC ERRBAR FENCE ARRIVES "
            "UCGABAR_ARV UCGABAR_WAIT NANOSLEEP USETMAXREG",
}  # fmt: skip
_OPCODE_CLASS = {op: cls for cls, ops in _OPCODE_CLASSES.items() for op in ops.split()}
#: Instruction classes of the loop mix, in CSV order.
CLASSES = ("mma", "mufu", "fp", "int", "pred", "mem", "sync", "other")


def classify_opcode(opcode: str) -> str:
    """The class of a SASS opcode (modifiers ignored): ``mma`` (HGMMA, HMMA, ...), ``mufu``, ``fp`` (FFMA,
    FADD, FMUL, FMNMX, FSEL, conversions F2F/F2FP/I2F, half2 arithmetic), ``int`` (IADD3, IMAD, LOP3, SHF,
    LEA, SEL, PRMT, ...), ``pred`` (ISETP, FSETP, PLOP3, P2R/R2P, VOTE), ``mem`` (global/shared/constant
    loads and stores, LDGSTS, LDSM, TMA), ``sync`` (BAR, SYNCS mbarriers, WARPGROUP, DEPBAR, BSSY/BSYNC)
    or ``other`` (moves, shuffles, special registers, branches). Uniform-datapath opcodes (``U`` prefix)
    go with their vector twins (UIADD3 → int).

    Example:
        >>> ops = ("HGMMA.64x64x16.F32.BF16", "MUFU.EX2", "FMNMX", "UIADD3", "ISETP.GE.AND", "LDGSTS.E.128")
        >>> [classify_opcode(op) for op in ops]
        ['mma', 'mufu', 'fp', 'int', 'pred', 'mem']
        >>> [classify_opcode(op) for op in ("SYNCS.ARRIVE.TRANS64", "SHFL.BFLY", "MOV")]
        ['sync', 'other', 'other']
    """
    base = opcode.split(".", 1)[0]
    if base in _OPCODE_CLASS:
        return _OPCODE_CLASS[base]
    if base.startswith("U") and base[1:] in _OPCODE_CLASS:
        return _OPCODE_CLASS[base[1:]]
    return "other"


@dataclasses.dataclass(frozen=True)
class LoopStats:
    """The main loop of a kernel's SASS: its address range, instruction count (NOPs excluded) and mix.

    Example:
        >>> LoopStats(0x100, 0x120, 3, {"mma": 1, "mufu": 1, "other": 1}).classes["mma"]
        1
    """

    start: int
    end: int
    instructions: int
    classes: dict[str, int]
    async_copies: int = 0


#: Asynchronous global → shared copies (cp.async, TMA): in the main loop they show software pipelining.
_ASYNC_COPIES = ("LDGSTS", "UTMALDG", "UBLKCP")


def wide_loads(sass: str) -> int:
    """Number of 128-bit global loads (``LDG.E.128``, ``LDGSTS....128``) and TMA copies (``UTMALDG``) in
    ``cuobjdump -sass`` text: nonzero when the JIT's specialization let the loads vectorize.

    Example:
        >>> sass = '''
        ...   /*0010*/  LDGSTS.E.BYPASS.LTC128B.128 [R1], desc[UR4][R2.64] ;
        ...   /*0020*/  LDG.E.U16 R3, desc[UR4][R4.64] ;
        ... '''
        >>> wide_loads(sass)
        1
    """
    return sum(op.startswith("UTMALDG") or (op.split(".")[0] in ("LDG", "LDGSTS") and op.endswith(".128"))
               for _, op, _ in _sass_instructions(sass))  # fmt: skip


def _sass_instructions(sass: str) -> list[tuple[int, str, str]]:
    """(address, opcode with its modifiers, line) of each instruction of ``cuobjdump -sass`` text."""
    out = []
    for line in sass.splitlines():
        m = _SASS_LINE.search(line)
        if m:
            out.append((int(m.group(1), 16), m.group(2), line))
    return out


def analyze_sass(sass: str) -> LoopStats | None:
    """The main loop of ``cuobjdump -sass`` text: the backward branch whose range [target, branch] holds
    the most MMA instructions (then the longest range), with its instructions counted by class
    (:func:`classify_opcode`, ``NOP`` excluded). None if the code has no backward branch.

    Example:
        >>> sass = '''
        ...   /*0000*/  MOV R1, c[0x0][0x28] ;
        ...   /*0010*/  HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], RZ ;
        ...   /*0020*/  MUFU.EX2 R3, R2 ;
        ...   /*0030*/  NOP ;
        ...   /*0040*/  @P0 BRA 0x10 ;
        ...   /*0050*/  EXIT ;
        ... '''
        >>> loop = analyze_sass(sass)
        >>> loop.start, loop.end, loop.instructions
        (16, 64, 3)
        >>> loop.classes["mma"], loop.classes["mufu"], loop.classes["other"]
        (1, 1, 1)
        >>> analyze_sass("/*0000*/ EXIT ;") is None
        True
    """
    instrs = [(a, op.split(".")[0], op, line) for a, op, line in _sass_instructions(sass)]
    best: tuple[tuple[int, int], LoopStats] | None = None
    for addr, base, _, line in instrs:
        target = _BRANCH_TARGET.search(line) if base == "BRA" else None
        if target is None or int(target.group(1), 16) >= addr:  # forward, or the trap `BRA .` after EXIT
            continue
        start = int(target.group(1), 16)
        body = [(b, op) for a, b, op, _ in instrs if start <= a <= addr and b != "NOP"]
        classes = dict.fromkeys(CLASSES, 0)
        for _, op in body:
            classes[classify_opcode(op)] += 1
        copies = sum(b in _ASYNC_COPIES for b, _ in body)
        rank = (classes["mma"], addr - start)
        if best is None or rank > best[0]:
            best = (rank, LoopStats(start, addr, len(body), classes, copies))
    return None if best is None else best[1]


def parse_ptxas_log(log: str) -> dict[str, Any]:
    """Registers, spill bytes and diagnostics from ``ptxas -v`` output.

    Diagnostics are the ``ptxas warning`` messages and the coded performance advisories ptxas prints as
    ``info`` (e.g. ``(C7515) Potential Performance Loss: wgmma.mma_async instructions are serialized``).

    Returns:
        ``regs``, ``spill_stores``, ``spill_loads`` (bytes; None when absent), ``ptxas_warnings`` (the
        distinct diagnostic texts joined by `` | ``) and ``warning_codes`` (e.g. ``C7515``, space-separated).

    Example:
        >>> log = '''ptxas info    : (C7515) Potential Performance Loss: wgmma.mma_async instructions are
        ... serialized due to non wgmma instructions defining accumulator registers of a wgmma
        ... ptxas info    : Function properties for k
        ...     0 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
        ... ptxas info    : Used 255 registers, used 1 barriers'''
        >>> info = parse_ptxas_log(log)
        >>> info["regs"], info["spill_stores"], info["spill_loads"], info["warning_codes"]
        (255, 8, 12, 'C7515')
    """
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    warnings = []
    for block in re.split(r"(?=ptxas (?:info|warning|error|fatal))", log):
        text = " ".join(block.split())
        diagnostic = text.startswith("ptxas warning") or re.search(r"\(C\d{4}\)", text)
        if diagnostic and text not in warnings:
            warnings.append(text)
    codes = sorted({c for w in warnings for c in re.findall(r"\((C\d{4})\)", w)})
    return {
        "regs": int(regs.group(1)) if regs else None,
        "spill_stores": int(spills.group(1)) if spills else None,
        "spill_loads": int(spills.group(2)) if spills else None,
        "ptxas_warnings": " | ".join(warnings),
        "warning_codes": " ".join(codes),
    }
