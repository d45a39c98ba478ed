"""M3 field metadata: every field name the sandbox's transactions read or write, with type and length.

Types are M3's: ``A`` alphanumeric, ``N`` numeric, ``D`` date (``yyyyMMdd``) (infor.md §2.3). Lengths are
the ones infor.md names (CUOR A20, ORNO A10, MAIL A50, ETRN A30, LMTS N18, ...) and otherwise the usual
M3 sizes; a value longer than its field is refused with ``InputFieldTooLong``.
"""

from __future__ import annotations

from typing import NamedTuple


class FieldSpec(NamedTuple):
    """One M3 field: type (A, N or D) and maximum length."""

    type: str
    length: int


_A, _N, _D = "A", "N", "D"

FIELDS: dict[str, FieldSpec] = {
    name: FieldSpec(kind, length)
    for name, kind, length in (
        ("CONO", _N, 3), ("DIVI", _A, 3), ("LNCD", _A, 2), ("FACI", _A, 3), ("WHLO", _A, 3),
        ("CUNO", _A, 10), ("PYNO", _A, 10), ("CUTM", _A, 10), ("CUNM", _A, 36),
        ("CUA1", _A, 36), ("CUA2", _A, 36), ("CUA3", _A, 36), ("CUA4", _A, 36),
        ("PONO", _A, 10), ("TOWN", _A, 20), ("CSCD", _A, 3), ("ECAR", _A, 3), ("PHNO", _A, 16),
        ("MAIL", _A, 50), ("CUTP", _N, 1), ("ALCU", _A, 10), ("YREF", _A, 30), ("STAT", _A, 2),
        ("ERRM", _A, 50), ("CUCD", _A, 3), ("CUCL", _A, 3),
        ("ORNO", _A, 10), ("ORNR", _A, 10), ("ORTP", _A, 3), ("CUOR", _A, 20), ("ORDT", _D, 8),
        ("RLDT", _D, 8), ("CUDT", _D, 8), ("MODL", _A, 3), ("TEDL", _A, 3), ("TEPY", _A, 3),
        ("ADID", _A, 6), ("INRC", _A, 10), ("OREF", _A, 30), ("AGNT", _A, 10), ("SMCD", _A, 10),
        ("NREF", _A, 10), ("ADRT", _N, 1), ("CTYP", _N, 1), ("SQRY", _A, 256),
        ("ITNO", _A, 15), ("ITDS", _A, 30), ("FUDS", _A, 60), ("ORQT", _N, 15), ("SAPR", _N, 17),
        ("NEPR", _N, 17), ("NLAM", _N, 17), ("DWDT", _D, 8), ("CODT", _D, 8), ("DIP1", _N, 5),
        ("DIA1", _N, 17), ("ALUN", _A, 3), ("SPUN", _A, 3), ("CUPO", _N, 7), ("PONR", _N, 5), ("POSX", _N, 3),
        ("ATNR", _N, 17), ("ORSL", _A, 2), ("ORST", _A, 2), ("OBLC", _N, 1),
        ("ALQT", _N, 15), ("DLQT", _N, 15), ("IVQT", _N, 15), ("TRQT", _N, 15), ("PLQT", _N, 15),
        ("NTAM", _N, 17), ("ONET", _N, 17), ("BRAM", _N, 17), ("VTAM", _N, 17), ("TOAM", _N, 17),
        ("TOPY", _N, 17), ("TYPE", _N, 1), ("TYTR", _N, 1), ("PARM", _A, 60), ("CRID", _A, 10),
        ("CRAM", _N, 17),
        ("UNMS", _A, 3), ("ITGR", _A, 10), ("ITCL", _A, 10), ("ITTY", _A, 3), ("SALE", _N, 1),
        ("NEWE", _N, 11), ("GRWE", _N, 11), ("ITNE", _A, 40), ("LMDT", _D, 8), ("FLMD", _D, 8),
        ("TLMD", _D, 8), ("CSDS", _D, 8),
        ("STQT", _N, 15), ("AV01", _N, 15), ("AVAL", _N, 15), ("AV02", _N, 15), ("REQT", _N, 15),
        ("IDDT", _D, 8), ("ODDT", _D, 8), ("LTDT", _D, 8), ("PFDT", _D, 8), ("WHSL", _A, 10),
        ("BANO", _A, 20), ("CAMU", _A, 20), ("STAS", _A, 1), ("LMTS", _N, 18),
        ("DLIX", _N, 11), ("CONN", _N, 7), ("CONA", _A, 10), ("PUTP", _N, 1), ("PUSN", _A, 10),
        ("RIDN", _A, 10), ("RIDL", _N, 6), ("RIDX", _N, 3), ("RORC", _N, 1), ("PGRS", _A, 2),
        ("PIST", _A, 2), ("ETRN", _A, 30), ("NBOL", _A, 20), ("MBOL", _A, 20), ("FWNO", _A, 10),
        ("DSDT", _D, 8), ("DSHM", _N, 4), ("NRUL", _N, 5), ("GRW2", _N, 11),
        ("IVNO", _N, 9), ("IVDT", _D, 8), ("IDAT", _D, 8), ("YEA4", _N, 4), ("AMT1", _N, 17),
        ("AMT2", _N, 17), ("IVAV", _N, 17), ("RAFC", _N, 17), ("DUDT", _D, 8), ("INPX", _A, 2),
        ("EXIN", _A, 14),
        ("PBID", _N, 15), ("BOPE", _A, 3), ("BAAN", _A, 10), ("NADO", _N, 1), ("VONO", _N, 8),
        ("ACDT", _D, 8), ("BPYS", _N, 2), ("TRNO", _N, 7), ("CINO", _A, 15), ("INYR", _N, 4),
        ("PYAM", _N, 17), ("PYTP", _A, 3), ("LPDT", _D, 8), ("CKNO", _A, 25),
    )
}  # fmt: skip


def spec_of(name: str) -> FieldSpec | None:
    """The field's metadata, None for a name the sandbox does not know."""
    return FIELDS.get(name)
