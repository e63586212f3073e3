"""Output file names like dcm2niix's ``-f`` patterns, suffixes and sanitising.

dcm2niix names each volume from a pattern of ``%`` codes (``-f``), adds suffixes that tell
the parts of one series apart (``_e2`` echo, ``_ph`` phase, ``_real``, ``_imaginary``,
``_i00001`` non-parallel image, ``_c<coil>`` coil) and replaces characters that are unsafe in
file names with ``_``. Matching it keeps pipelines (BIDS converters, lab scripts) that expect
dcm2niix's names working when they switch converter.

Codes (as ``dcm2niix -h`` documents them): ``%a`` coil name, ``%b`` base name of the first
file, ``%c`` ImageComments, ``%d`` SeriesDescription, ``%e`` echo number, ``%f`` input folder
name, ``%g`` AccessionNumber, ``%i`` PatientID, ``%j`` SeriesInstanceUID, ``%k``
StudyInstanceUID, ``%l`` PerformedProcedureStepDescription, ``%m`` manufacturer (2 letters),
``%n`` PatientName, ``%o`` SOPInstanceUID, ``%p`` ProtocolName, ``%q`` ScanningSequence, ``%r``
InstanceNumber, ``%s`` SeriesNumber, ``%t`` study date and time, ``%u`` AcquisitionNumber,
``%v`` vendor, ``%x`` StudyID, ``%z`` SequenceName; ``%3s``/``%3r`` zero-pad to 3 digits.
A ``/`` in the pattern makes sub-folders (``%i/%s_%p``).
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .headers import Frame, Instance
    from .series import Series

__all__ = ["DEFAULT_PATTERN", "base_names", "output_names", "sanitize", "unique_names"]

#: dcm2niix's default in this project (dcm2niix itself defaults to ``%f_%p_%t_%s``)
DEFAULT_PATTERN = "%s_%p"

#: bytes of a name left for suffixes and ``.nii.gz`` within a file system's 255
NAME_BUDGET = 240

_UNSAFE = set('\\/ <>:;"$*|?`')

_VENDORS = {  # first two letters of Manufacturer -> (%m, %v), as dcm2niix
    "SI": ("Si", "Siemens"), "CP": ("Si", "Siemens"), "GE": ("GE", "GE"),
    "PH": ("Ph", "Philips"), "TO": ("To", "Toshiba"), "CA": ("Ca", "Canon"),
    "UI": ("UI", "UIH"), "BR": ("Br", "Bruker"), "HY": ("Hy", "Hyperfine"),
    "ME": ("Me", "Mediso"), "MR": ("MR", "MRsolutions"),
}


def sanitize(text: str) -> str:
    """``text`` made safe as one file-name component, as dcm2niix does.

    Path separators, spaces, the characters ``<>:;"$*|?``, the backquote and control
    characters become ``_``, runs of ``_`` collapse and a leading ``.`` becomes ``_``.
    Accented Latin letters lose their accent (dcm2niix maps ISO 8859-1 letters the same
    way); letters and digits of other scripts are kept, other non-ASCII symbols become ``_``.

    Parameters
    ----------
    text : str
        A header value or a pattern's expansion (anything else is converted with ``str``).

    Returns
    -------
    str
        The safe component (empty when ``text`` is empty).

    Examples
    --------
    >>> sanitize("T1 MPRAGE: sag/iso")
    'T1_MPRAGE_sag_iso'
    >>> sanitize("Pérfusion  (ASL)")
    'Perfusion_(ASL)'
    >>> sanitize("脳 T2 ＦＬＡＩＲ°")
    '脳_T2_FLAIR_'
    """
    out: list[str] = []
    for c in str(text):
        if ord(c) > 127:
            d = unicodedata.normalize("NFKD", c)
            if d[0].isascii() and all(unicodedata.combining(x) for x in d[1:]):
                c = d[0]  # é -> e, as dcm2niix maps ISO 8859-1 letters
            elif not c.isalnum():
                c = "_"  # other scripts' letters and digits stay
        if c in _UNSAFE or ord(c) < 32 or ord(c) == 127:
            c = "_"
        if c == "_" and out and out[-1] == "_":
            continue
        out.append(c)
    name = "".join(out)
    if name.startswith("."):
        name = "_" + name[1:]
    return name


def _echo_of(series: Series) -> int | None:
    fr = series.frames[0]
    echo: int | None = getattr(fr, "echo", None)
    if echo is None:
        echo = getattr(series.first, "echo_number", None)
    return echo


def _component_of(series: Series) -> str:
    from .series import image_component

    fr = series.frames[0]
    comp: str | None = getattr(fr, "component", None)
    return comp if comp is not None else image_component(series.first.image_type)


def _protocol(inst: Instance) -> str:
    """ProtocolName, else SeriesDescription, else SequenceName (not for Siemens, whose
    sequence name changes per volume), with ``_MoCo`` for Siemens motion-corrected series."""
    h = inst.header
    p = h.get("ProtocolName", "") or ""
    p = ("\\".join(p) if isinstance(p, (list, tuple)) else str(p)).strip()
    if not p:
        p = (inst.series_description or "").strip()
    if not p and not str(h.get("Manufacturer", "")).upper().startswith("SI"):
        p = str(h.get("SequenceName", "") or "").strip()
    if len(p) > 1 and "_MOCO_" in "_".join(inst.image_type).upper():
        p += "_MoCo"
    return p


def _date_time(inst: Instance) -> str:
    """dcm2niix's ``%t``: StudyDate x 10^6 + StudyTime, rounded to a whole second."""
    def num(v: object) -> float:
        try:
            return float(str(v).strip() or 0)
        except ValueError:
            return 0.0
    h = inst.header
    return f"{num(inst.study_date or h.get('StudyDate', '')) * 1e6 + num(h.get('StudyTime', '')):.0f}"


def _vendor(series: Series, which: int) -> str:
    manu = str(series.first.header.get("Manufacturer", "") or "").strip().upper()[:2]
    return _VENDORS.get(manu, ("NA", "NA"))[which]


#: a ``%`` code's value from a series and the input folder's name
_Code = Callable[["Series", str], Any]


def _header(kw: str) -> _Code:
    return lambda s, folder: s.first.header.get(kw, "")


#: code -> value(series, input folder name), as dcm2niix's nii_createFilename
_CODES: dict[str, _Code] = {
    "A": _header("CoilName"),
    "B": lambda s, folder: os.path.basename(_first_image(s).instance.path),
    "C": _header("ImageComments"),
    "D": lambda s, folder: s.first.series_description,
    "E": lambda s, folder: _echo_of(s) or 0,
    "F": lambda s, folder: folder,
    "G": _header("AccessionNumber"),
    "I": lambda s, folder: s.first.patient_id,
    "J": lambda s, folder: s.first.series_uid,
    "K": lambda s, folder: s.first.study_uid,
    "L": _header("PerformedProcedureStepDescription"),
    "M": lambda s, folder: _vendor(s, 0),
    "N": lambda s, folder: s.first.patient_name,
    "O": lambda s, folder: s.first.sop_uid,
    "P": lambda s, folder: _protocol(s.first),
    "Q": _header("ScanningSequence"),
    "R": lambda s, folder: _first_instance_number(s),
    "S": lambda s, folder: _series_number(s),
    "T": lambda s, folder: _date_time(s.first),
    "U": lambda s, folder: s.first.acquisition_number or 0,
    "V": lambda s, folder: _vendor(s, 1),
    "X": _header("StudyID"),
    "Z": _header("SequenceName"),
}


def _value(code: str, series: Series, folder: str) -> str:
    get = _CODES.get(code)
    v = get(series, folder) if get else ""
    if isinstance(v, (list, tuple)):
        return "\\".join(str(x) for x in v)
    return "" if v is None else str(v)


def _series_number(series: Series) -> int:
    """SeriesNumber, plus dcm2niix's 1000 for the reversed-polarity part of GE pepolar."""
    n = series.first.series_number
    offset: int = getattr(series.frames[0], "number_offset", 0)
    return (n if n is not None else 0) + offset


def _first_image(series: Series) -> Frame:
    """The frame with the lowest InstanceNumber (dcm2niix names a series after it)."""
    first: Frame = min(series.frames, key=lambda f: (f.instance.instance_number is None,
                                                     f.instance.instance_number or 0))
    return first


def _first_instance_number(series: Series) -> int:
    n = _first_image(series).instance.instance_number
    return 1 if n is None else n


def _expand(pattern: str, series: Series, folder: str = "") -> tuple[str, set[str]]:
    """The pattern with its ``%`` codes replaced, and the set of codes used (upper case).

    Values are not sanitised yet; ``/`` in the pattern is kept as ``\\a`` so that a ``/``
    inside a value (``fMRI/bold``) does not make a folder.

    Parameters
    ----------
    pattern : str
        dcm2niix ``%`` codes and literal text (see the module's list of codes).
    series : Series
        The series the values come from (its first instance's headers).
    folder : str, optional
        Name of the input folder, for ``%f``.

    Returns
    -------
    name : str
        The expansion, with ``\\a`` where the pattern had ``/`` or ``\\``.
    used : set of str
        The codes the pattern used, upper case (``%3s`` counts as ``S``).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from napari_dicomtools.core import scan
    >>> from napari_dicomtools.core.synthetic import write_series
    >>> _ = write_series(os.path.join(tempfile.mkdtemp(), "ct"), np.zeros((2, 4, 4)),
    ...                  description="Chest CT", series_number=7)
    >>> series = scan(_.files[0])[0]
    >>> name, used = _expand("%i_%3s_%d", series)
    >>> name, sorted(used)
    ('SYN001_007_Chest CT', ['D', 'I', 'S'])
    """
    out: list[str] = []
    used: set[str] = set()
    i = 0
    pattern = pattern.replace("\\", "\a").replace("/", "\a")
    while i < len(pattern):
        c = pattern[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        code = pattern[i + 1].upper() if i + 1 < len(pattern) else "P"
        i += 2
        if code.isdigit() and i < len(pattern) and pattern[i].upper() in "SR":
            what = pattern[i].upper()
            i += 1
            used.add(what)
            num = _series_number(series) if what == "S" else _first_instance_number(series)
            out.append(f"{num:0{int(code)}d}")
            continue
        used.add(code)
        out.append(_value(code, series, folder))
    return "".join(out), used


def _suffixes(series: Series, used: set[str], multi_echo: bool) -> str:
    """dcm2niix's post-fixes for what the pattern does not already say, in its order:
    ``_c<coil>`` (uncombined coil images), ``_e<n>`` (echo), ``_i<nnnnn>`` (non-parallel images), ``_imaginary``, ``_real``,
    ``_ph``; then our own labels for parts dcm2niix would not separate (acquisitions,
    non-uniform parts, sizes, colour).

    Parameters
    ----------
    series : Series
        One part of a scanned series (``series.split`` says how it was split).
    used : set of str
        The codes the name pattern already used (from ``_expand``): ``%e`` drops the
        echo suffix, ``%a`` the coil suffix, ``%r`` the ``_i`` suffix.
    multi_echo : bool
        Other parts of the same SeriesInstanceUID hold other echoes: ``_e<n>`` even for echo 1.

    Returns
    -------
    str
        The suffixes joined (empty when nothing tells this part apart).

    Examples
    --------
    A single echo-1 magnitude series needs no suffix:

    >>> from pydicom.data import get_testdata_file
    >>> from napari_dicomtools.core import scan
    >>> series = scan(get_testdata_file("MR_small.dcm"))[0]
    >>> _suffixes(series, set(), multi_echo=False)
    ''
    """
    tail = []
    coil = _coil_of(series)
    if coil and "A" not in used:  # dcm2niix: _c<coil> first, unless %a names the coil
        tail.append(f"_c{coil}")
    echo = _echo_of(series)
    if "E" not in used and echo is not None and (multi_echo or echo > 1):
        tail.append(f"_e{echo}")
    split = [p.strip() for p in (series.split or "").split(",")
             if p.strip() and p.strip() != "reversed polarity"]  # said by the number
    labels = _split_labels(series, split)
    if "orientation" in labels and "R" not in used:
        tail.append(f"_i{_first_instance_number(series):05d}")
    comp = _component_of(series)
    if comp == "imaginary":
        tail.append("_imaginary")
    elif comp == "real":
        tail.append("_real")
    elif comp == "ph":
        tail.append("_ph")
    tail.extend("_" + sanitize(x.replace(" ", "")) for x in labels.get("other", []))
    return "".join(tail)


def _coil_of(series: Series) -> str | None:
    """The coil of a series split per coil element (uncombined images), else None."""
    parts = [p.strip() for p in (series.split or "").split(",")]
    return next((p[5:] for p in parts if p.startswith("coil ")), None)


def _split_labels(series: Series, split: list[str]) -> dict[str, Any]:
    """Sort the parts of ``series.split`` into the ones dcm2niix has a suffix for (echo,
    component: already said by the suffixes; orientation: ``_i``) and the others."""
    from .geometry import orientation_label

    out: dict[str, Any] = {"other": []}
    known = {f"e{_echo_of(series)}", _component_of(series), f"coil {_coil_of(series)}"}
    orient = orientation_label(series.orientation) if series.orientation else "no orientation"
    for part in split:
        if part in known:
            continue
        if part == orient:
            out["orientation"] = True
            continue
        out["other"].append(part)
    return out


def output_names(series: Sequence[Series], pattern: str | None = None,
                 folder: str = "") -> list[str]:
    """One name per series (without extension), as dcm2niix names them with ``-f pattern``.

    Parameters
    ----------
    series : sequence of Series
        The series to name, in output order (a ``SeriesList`` from ``scan``).
    pattern : str, optional
        dcm2niix ``%`` codes (default ``%s_%p``); ``/`` separates sub-folders.
    folder : str
        Name of the input folder, for ``%f``.

    Returns
    -------
    list of str
        Relative paths (``/``-separated when the pattern makes folders), unique within the
        list: a repeated name gets ``a``, ``b``, ... as dcm2niix appends, then ``_<n>``.
        Each component is cut to fit 255 bytes of UTF-8 with its suffixes and ``.nii.gz``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from napari_dicomtools.core import scan
    >>> from napari_dicomtools.core.synthetic import write_series
    >>> study = tempfile.mkdtemp()
    >>> for n in (2, 3):
    ...     _ = write_series(os.path.join(study, f"s{n}"), np.zeros((2, 4, 4)),
    ...                      description="T1 MPRAGE", series_number=n, study_uid="1.2.3")
    >>> output_names(scan(study))
    ['2_T1_MPRAGE', '3_T1_MPRAGE']
    >>> output_names(scan(study), "%i/%d")
    ['SYN001/T1_MPRAGE', 'SYN001/T1_MPRAGEa']
    """
    return unique_names(base_names(series, pattern, folder))


def base_names(series: Sequence[Series], pattern: str | None = None,
               folder: str = "") -> list[str]:
    """The names of :func:`output_names` before :func:`unique_names` makes them unique.

    A name depends on its series and on the other parts of its SeriesInstanceUID in
    ``series`` (``_e<n>`` when they hold other echoes), so the names of series grouped
    apart (by the workers of a batch job) are the same as of all series at once.

    Parameters
    ----------
    series : sequence of Series
        The series to name.
    pattern : str, optional
        dcm2niix ``%`` codes (default ``%s_%p``); ``/`` separates sub-folders.
    folder : str, optional
        Name of the input folder, for ``%f``.

    Returns
    -------
    list of str
        One sanitised relative name per series, possibly repeated.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from napari_dicomtools.core import scan
    >>> ct = scan(get_testdata_file("CT_small.dcm"))
    >>> base_names(list(ct) * 2, "%m_%s")
    ['GE_1', 'GE_1']
    """
    echoes: dict[str, set[int | None]] = {}
    for s in series:
        echoes.setdefault(s.uid, set()).add(_echo_of(s))
    return [_base_name(s, pattern, folder, len(echoes[s.uid] - {None}) > 1) for s in series]


def _base_name(series: Series, pattern: str | None, folder: str, multi_echo: bool) -> str:
    from .safety import fit_name

    raw, used = _expand(pattern or DEFAULT_PATTERN, series, folder)
    tail = fit_name(_suffixes(series, used, multi_echo), 64)
    parts = [sanitize(p) for p in raw.split("\a")]
    parts = ["_" if p in ("", ".", "..") else p for p in parts[:-1]] + [parts[-1]]
    parts = [fit_name(p, NAME_BUDGET) for p in parts]
    stem = fit_name(parts[-1], NAME_BUDGET - len(tail.encode("utf-8"))) + tail
    stem = sanitize(stem) or "dcm2nii_invalidName"
    return "/".join(parts[:-1] + [stem])


def unique_names(names: Iterable[str]) -> list[str]:
    """``names`` in order, a repeated one (case-insensitively) suffixed ``a``, ``b``, ...
    then ``_<n>``, as dcm2niix does.

    Parameters
    ----------
    names : iterable of str
        Names in output order.

    Returns
    -------
    list of str
        The names, each unique ignoring case; the first of each kept as it is.

    Examples
    --------
    >>> unique_names(["ct", "CT", "ct", "mr"])
    ['ct', 'CTa', 'ctb', 'mr']
    """
    out: list[str] = []
    seen: set[str] = set()
    for base in names:
        name, i = base, 0
        while name.lower() in seen:
            name = base + (chr(ord("a") + i) if i < 26 else f"_{i - 24}")
            i += 1
        seen.add(name.lower())
        out.append(name)
    return out
